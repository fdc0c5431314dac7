"""pandas tables: per-sample long rows → summaries (mean, std, 95% CI, n, failures) → CSV / markdown / LaTeX.

Long format is the source of truth: one row per (method, sample, metric). Every summary cell is a groupby over
those rows, so it can be traced back to the samples (and their artifacts) that made it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.rundir import RunFolder, SampleRecord, find_run_dirs
from benchmark.rundir import run_directions as run_directions  # re-exported: the tables' readers take it from here
from benchmark.rundir import valid_directions as valid_directions
from benchmark.types import error_line

log = logging.getLogger("emb")

LONG_COLUMNS = ["method", "sample_id", "edit_type", "status", "warmup", "metric", "value"]
# metrics measured per sample from the record rather than by a metric module
RECORD_METRICS = ("time_s", "nfe", "denoiser_calls")
TIME_METRICS = ("time_s",)
# a metric name holding this marks one point of a curve (``soft_iou@0.35``): kept in the per-sample rows and the
# summary CSV (a plot reads them there), left out of the pivot tables, which would get a column per point
CURVE_MARK = "@"


def long_rows(records: Iterable[SampleRecord], scores: dict[tuple[str, str], dict[str, float]]) -> pd.DataFrame:
    """Per-sample long table from the run's records and the metric values keyed by (method, sample_id)."""
    rows = []
    for rec in records:
        base = {
            "method": rec.method,
            "sample_id": rec.sample_id,
            "edit_type": rec.edit_type,
            "status": rec.status,
            "warmup": bool(rec.warmup),
        }
        if not rec.ok:
            rows.append({**base, "metric": "failed", "value": 1.0})
            continue
        for m in RECORD_METRICS:
            if getattr(rec, m) is not None:
                rows.append({**base, "metric": m, "value": float(getattr(rec, m))})
        for metric, value in scores.get((rec.method, rec.sample_id), {}).items():
            rows.append({**base, "metric": metric, "value": float(value) if value is not None else math.nan})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def ci95_half_width(x: pd.Series) -> float:
    """Half-width of the Student-t 95% interval of the mean (NaN below 2 values): the tables' ``ci95``."""
    n = x.count()
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))


def summarize(
    long: pd.DataFrame,
    by: tuple[str, ...] = ("method",),
    per_edit_type: bool = True,
    dataset_values: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """mean, std, 95% CI (Student t), n and failures per group and metric; edit_type 'all' plus each type."""
    if long.empty:
        return pd.DataFrame(columns=[*by, "edit_type", "metric", "mean", "std", "ci95", "n", "failures"])
    ok = long[(long["status"] == "ok") & (long["metric"] != "failed")]
    # the first (warm-up) sample's time includes one-off costs: kernel selection, lazy loading
    ok = ok[~(ok["warmup"] & ok["metric"].isin(TIME_METRICS))]
    frames = []
    views = [("all", ok, long)]
    if per_edit_type:
        views += [
            (t, ok[ok["edit_type"] == t], long[long["edit_type"] == t]) for t in sorted(long["edit_type"].unique())
        ]
    for label, part, everything in views:
        if part.empty and everything.empty:
            continue
        g = part.groupby([*by, "metric"])["value"]
        with np.errstate(invalid="ignore"):  # std of values with inf (PSNR of identical images) is NaN, quietly
            s = g.agg(mean="mean", std="std", n="count").reset_index()
            s["ci95"] = g.apply(ci95_half_width).values if len(s) else []
        fails = (
            everything[everything["status"] != "ok"]
            .drop_duplicates([*by, "sample_id"])
            .groupby(list(by))
            .size()
            .rename("failures")
        )
        s = s.merge(fails, left_on=list(by), right_index=True, how="left") if len(s) else s
        if len(s):
            s["failures"] = s["failures"].fillna(0).astype(int)
        else:  # every sample failed: still report the failures
            s = fails.reset_index().assign(metric="failed", mean=np.nan, std=np.nan, n=0, ci95=np.nan)
        s.insert(len(by), "edit_type", label)
        frames.append(s)
    out = pd.concat(frames, ignore_index=True)
    if dataset_values is not None and not dataset_values.empty:
        out = pd.concat([out, dataset_values.assign(edit_type="all")], ignore_index=True)
    cols = [*by, "edit_type", "metric", "mean", "std", "ci95", "n", "failures"]
    return out[[c for c in cols if c in out.columns] + [c for c in out.columns if c not in cols]]


def objective_value(summary: pd.DataFrame, objective: str) -> float:
    """A run's value of the summary metric ``objective`` (all edit types; the mean over the run's methods): what a
    job returns to a sweeper such as Optuna. NaN when the run has no such value."""
    rows = summary[(summary["edit_type"] == "all") & (summary["metric"] == objective)]
    return float(rows["mean"].mean()) if len(rows) else math.nan


# ``runs``: in a merged summary, the run folders each row was computed from (traceability, not a key)
SUMMARY_VALUE_COLUMNS = ("edit_type", "metric", "mean", "std", "ci95", "n", "failures", "runs")


def summary_keys(summary: pd.DataFrame, varying_only: bool = True) -> tuple[str, ...]:
    """The grouping columns of a (merged) summary: overrides and method. With ``varying_only``, overrides that
    have one value across all runs are left out (they label nothing; the CSV keeps them)."""
    keys = [c for c in summary.columns if c not in SUMMARY_VALUE_COLUMNS]
    if varying_only:
        keys = [c for c in keys if c == "method" or summary[c].nunique(dropna=False) > 1]
    return tuple(keys)


def pivot(
    summary: pd.DataFrame,
    by: tuple[str, ...] = ("method",),
    edit_type: str = "all",
    digits: int = 3,
    scales: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Methods as rows, metrics as columns, cells 'mean ± ci95'; plus n and failures. Curve points (metric names
    with ``CURVE_MARK``) are left out.

    ``scales`` (metric → factor, e.g. a paper's LPIPS ×10³) multiplies the displayed cells only and marks the
    column ``lpips_background ×1000``; CSV summaries and per-sample rows keep the raw values.
    """
    s = summary[(summary["edit_type"] == edit_type) & ~summary["metric"].astype(str).str.contains(CURVE_MARK)]
    if s.empty:
        return pd.DataFrame()
    if scales:
        s = s.copy()
        for metric, factor in scales.items():
            rows = s["metric"] == metric
            s.loc[rows, ["mean", "ci95"]] = s.loc[rows, ["mean", "ci95"]] * float(factor)
            s.loc[rows, "metric"] = f"{metric} ×{float(factor):g}"

    def cell(r: pd.Series) -> str:
        if pd.isna(r["mean"]):
            return "–"
        return f"{r['mean']:.{digits}g}" + ("" if pd.isna(r["ci95"]) else f" ± {r['ci95']:.2g}")

    s = s.assign(cell=s.apply(cell, axis=1))
    table = s.pivot_table(index=list(by), columns="metric", values="cell", aggfunc="first").fillna("–")
    # n: the most samples any metric of the row has (time_s has one fewer: the warm-up sample is left out)
    counts = s.groupby(list(by)).agg(n=("n", "max"), failures=("failures", "max"))
    if "runs" in s.columns:
        counts = counts.join(s.groupby(list(by))["runs"].first())
    return table.join(counts)


ARROWS = {True: "↑", False: "↓"}  # higher / lower is better, as lm-evaluation-harness marks its columns
_LATEX_ARROW_TOKENS = {True: "EMBHIGHERISBETTER", False: "EMBLOWERISBETTER"}  # survive to_latex's escaping
_LATEX_ARROWS = {True: r"$\uparrow$", False: r"$\downarrow$"}


def mark_directions(table: pd.DataFrame, directions: dict[str, bool] | None, marks: dict[bool, str] = ARROWS):
    """The table with each metric column's header followed by its better direction (``iou ↑``, ``time_s ↓``, a
    scaled ``lpips_background ×1000 ↓``); columns of unknown direction (n, failures, runs, keys) are left as they are.
    For display only: ``pivot``'s own columns stay the bare metric names."""
    known = valid_directions(directions)
    if not known or table.empty:
        return table

    def name(col: Any) -> Any:
        better = known.get(str(col).split(" ×")[0])  # pivot's scaled column: "metric ×factor"
        return col if better is None else f"{col} {marks[better]}"

    return table.rename(columns=name)


def pivot_markdown(table: pd.DataFrame, directions: dict[str, bool] | None = None) -> str:
    """A ``pivot`` table as markdown, one named column per key (a swept override, method) rather than a tuple;
    with ``directions`` (metric → higher is better) each metric's header shows its better direction."""
    table = mark_directions(table, directions)
    if isinstance(table.index, pd.MultiIndex):
        return table.reset_index().to_markdown(index=False)
    return table.to_markdown()


def pivot_latex(table: pd.DataFrame, directions: dict[str, bool] | None = None) -> str:
    r"""A ``pivot`` table as LaTeX (escaped), metric headers with ``$\uparrow$`` / ``$\downarrow$``."""
    text = mark_directions(table, directions, _LATEX_ARROW_TOKENS).to_latex(escape=True)
    for better, token in _LATEX_ARROW_TOKENS.items():
        text = text.replace(token, _LATEX_ARROWS[better])
    return text


def write_tables(
    out_dir: Path,
    summary: pd.DataFrame,
    by: tuple[str, ...] = ("method",),
    scales: dict[str, float] | None = None,
    directions: dict[str, bool] | None = None,
) -> str:
    """The run folder's summary tables: all numbers (CSV), the pivot as markdown and LaTeX (metric headers marked
    with ``directions``); returns the markdown text."""
    table = pivot(summary, by, scales=scales)
    md = pivot_markdown(table, directions) if not table.empty else "(no results)"
    RunFolder(out_dir).write_summary(summary, md, pivot_latex(table, directions) if not table.empty else None)
    return md


def run_label(run: Path, roots: list[Path]) -> str:
    """A run folder as short as it stays clear: relative to the path it was found under (a sweep's job: ``3``)."""
    for root in roots:
        try:
            rel = run.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        return str(rel) if str(rel) != "." else str(run)
    return str(run)


def merge_runs(
    paths: Iterable[Path], unreadable: list[Path] | None = None, roots: list[Path] | None = None
) -> pd.DataFrame:
    """One summary from several finished runs / sweeps, recomputed from their per-sample rows.

    Each job's overrides become columns (``dataset.shard`` excepted: shards of one config are pooled into one
    table); the ``runs`` column names the run folders of each row. Dataset-level values (FID, KID) are taken from
    unsharded runs only: they cannot be pooled across shards (re-score the merged samples instead). ``runs`` names
    folders relative to ``roots`` (default: the one path given, or the folder the given paths share). A sample that
    two merged runs both hold under the same keys (the same run given twice, a run and its copy) is counted once,
    with one warning: pooled twice it would narrow the CI. A run whose ``samples.parquet`` cannot be read is one
    warning line and left out (appended to ``unreadable`` when given); the others are merged.
    """
    paths = [Path(p) for p in paths]
    if not roots:  # labels relative to the one path given, or to the folder all given paths share
        resolved = [str(p.resolve()) for p in paths]
        roots = paths if len(paths) == 1 else [Path(os.path.commonpath(resolved))] if resolved else []
    longs, dataset_rows, keys = [], [], set()
    for run in find_run_dirs(paths):
        folder = RunFolder(run)
        try:
            folder.check_format()
            long = folder.read_long_table()
        except ValueError as err:  # another format, or a truncated or foreign samples.parquet
            log.warning("%s", err)
            if unreadable is not None:
                unreadable.append(folder.long_table_path)
            continue
        if long is None:
            continue
        overrides = {k: v for k, v in folder.swept_values().items() if k != "method"}
        sharded = overrides.pop("dataset.shard", None) not in (None, "null")
        keys |= set(overrides)
        label = run_label(run, roots)
        long = long.assign(**overrides, run=label)
        longs.append(long)
        summary = folder.read_summary() if not sharded else None
        if summary is not None:
            try:
                extra = summary[(summary["edit_type"] == "all") & ~summary["metric"].isin(long["metric"].unique())]
            except KeyError as err:  # only its dataset-level values (FID) are lost
                log.warning(
                    "%s: unreadable (%s); its dataset-level values left out", folder.summary_path, error_line(err)
                )
                continue
            dataset_rows.append(extra.assign(**overrides, run=label))
    if not longs:
        return pd.DataFrame()
    by = (*sorted(keys), "method")
    long = pd.concat(longs, ignore_index=True)
    extra = pd.concat(dataset_rows, ignore_index=True).drop(columns=["edit_type"]) if dataset_rows else None
    for frame in (long, extra):
        for k in keys if frame is not None else ():
            # a run without this override: "" in every frame, or its rows fall out of the pivot
            frame[k] = frame[k].fillna("") if k in frame.columns else ""
    long = _count_each_sample_once(long, by)
    if extra is not None:  # a dataset-level value of the same group from a repeated run: the first one
        extra = extra.drop_duplicates([*by, "metric"])
    runs = pd.concat([long[[*by, "run"]], extra[[*by, "run"]] if extra is not None else None])
    labels = runs.groupby(list(by))["run"].agg(lambda r: ";".join(sorted(set(r)))).rename("runs").reset_index()
    dataset_values = None if extra is None else extra.drop(columns="run")
    summary = summarize(long.drop(columns="run"), by=by, dataset_values=dataset_values)
    return summary.merge(labels, on=list(by), how="left")


def _count_each_sample_once(long: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """A sample that several merged runs hold under the same keys keeps the rows of one run only: the first run
    where it finished (a rerun that completed a failed sample wins over the failure), else the first. One warning
    names an example and the runs involved."""
    sample = [*by, "sample_id"]
    holders = long[[*sample, "run", "status"]].drop_duplicates([*sample, "run"])
    if not holders.duplicated(sample).any():
        return long
    holders = holders.assign(_order=range(len(holders)), _failed=holders["status"] != "ok")
    chosen = holders.sort_values(["_failed", "_order"]).drop_duplicates(sample)[[*sample, "run"]]
    several = holders[holders.duplicated(sample, keep=False)]
    example = several.iloc[0]
    runs = several[(several[sample] == example[sample]).all(axis=1)]["run"].tolist()
    log.warning(
        "%d sample(s) are in more than one of the merged runs under the same settings (e.g. %s/%s in %s); each is "
        "counted once, from the first run where it finished",
        several.drop_duplicates(sample).shape[0],
        example["method"],
        example["sample_id"],
        " and ".join(runs),
    )
    return long.merge(chosen, on=[*sample, "run"], how="inner")
