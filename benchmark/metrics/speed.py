"""Speed: time and NFE per sample (recorded by the runner) and speedup against a reference method.

``time_s`` (wall clock of ``method.edit`` with device synchronisation; the warm-up sample is left out of means),
``nfe`` (denoiser evaluations) and ``denoiser_calls`` are per-sample rows of every run (``nfe_backward``, backward
passes through the denoiser, of methods guided by its gradient). The speedup is a summary
row per method and edit type, the ratio of the summary means: ``speedup_time = mean time_s(reference) / mean
time_s(method)`` and ``speedup_nfe = mean nfe(reference) / mean nfe(method)`` (> 1: faster than the reference; the
reference itself gets 1). It is a ratio of means, as papers report it ("10.8 s vs 64.0 s"), not a mean of per-sample
ratios. The reference is ``reference_method`` in the metrics preset (``emb table --reference-method`` for merged
tables); when several runs are merged it is matched within the same run/sweep point, else the unique reference.
"""

from __future__ import annotations

import logging
import math

import pandas as pd

log = logging.getLogger("emb")

SPEEDUPS = {"speedup_time": "time_s", "speedup_nfe": "nfe"}
HIGHER_IS_BETTER = {
    "speedup_time": True,
    "speedup_nfe": True,
    "time_s": False,
    "nfe": False,
    "denoiser_calls": False,
    "nfe_backward": False,
}


def add_speedup(summary: pd.DataFrame, reference_method: str | None, by: tuple[str, ...] = ("method",)) -> pd.DataFrame:
    """The summary with ``speedup_time`` / ``speedup_nfe`` rows added (unchanged when no reference is set)."""
    if not reference_method or summary.empty or "method" not in summary.columns:
        return summary
    if reference_method not in set(summary["method"].astype(str)):
        log.warning("speedup: reference method '%s' is not in these results; no speedup rows", reference_method)
        return summary
    context = [c for c in by if c != "method" and c in summary.columns]
    frames = []
    for out_name, source in SPEEDUPS.items():
        part = summary[summary["metric"] == source]
        ref = part[part["method"].astype(str) == reference_method]
        if part.empty or ref.empty:
            continue
        exact = ref[[*context, "edit_type", "mean"]].rename(columns={"mean": "reference_mean"})
        merged = part.merge(exact, on=[*context, "edit_type"], how="left")
        # a reference from another run of a merged table: use it when it is the only one for that edit type
        unique = ref.groupby("edit_type")["mean"].agg(["first", "count"])
        unique = unique[unique["count"] == 1]["first"]
        missing = merged["reference_mean"].isna()
        if missing.any():
            merged.loc[missing, "reference_mean"] = merged.loc[missing, "edit_type"].map(unique).astype(float)
        merged = merged.dropna(subset=["reference_mean"])
        ratio = [
            r / m if m else (math.nan if not r else math.inf)
            for r, m in zip(merged["reference_mean"], merged["mean"], strict=True)
        ]
        frames.append(
            merged.drop(columns=["reference_mean"]).assign(metric=out_name, mean=ratio, std=math.nan, ci95=math.nan)
        )
    if not frames:
        return summary
    return pd.concat([summary, *frames], ignore_index=True)
