"""Reports: a run's numbers beside a paper's published ones (``reports/published/*.yaml``)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from benchmark.provenance import PROJECT_ROOT
from benchmark.rundir import RunFolder, find_run_dirs, valid_directions
from benchmark.tables import ARROWS, summary_keys

log = logging.getLogger("emb")
PUBLISHED_DIR = PROJECT_ROOT / "reports" / "published"


def load_published(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.exists():
        path = PUBLISHED_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PUBLISHED_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"{path}: no published table '{name_or_path}'; known: {known}")
    data = yaml.safe_load(path.read_text())
    for key in ("metrics", "results", "source"):
        if key not in data:
            raise ValueError(f"{path}: field '{key}': missing")
    return data


def compare(
    summary: pd.DataFrame,
    published: dict[str, Any],
    rename: dict[str, str] | None = None,
    directions: dict[str, bool] | None = None,
) -> pd.DataFrame:
    """Rows (method, metric): ours (scaled to the paper's unit, with its 95% CI and n), published, difference; with
    ``directions`` (our metric → higher is better, from the run's results.json) a ``better`` column (↑ / ↓) says
    which sign of the difference favours us."""
    rename = rename or {}
    directions = valid_directions(directions)
    unknown = sorted(set(rename) - set(published["results"]))
    if unknown:
        known = ", ".join(published["results"])
        raise ValueError(f"--rename {unknown[0]}=...: the published table has no method '{unknown[0]}' ({known})")
    s = summary[summary["edit_type"] == "all"]
    rows = []
    for paper_method, values in published["results"].items():
        ours_method = rename.get(paper_method, paper_method)
        for metric, spec in published["metrics"].items():
            if metric not in values:
                continue
            scale = float(spec.get("scale", 1))
            hit = s[(s["method"] == ours_method) & (s["metric"] == metric)]
            mean = float(hit["mean"].iloc[0]) * scale if len(hit) else math.nan
            ci = float(hit["ci95"].iloc[0]) * scale if len(hit) and pd.notna(hit["ci95"].iloc[0]) else math.nan
            rows.append(
                {
                    "method": paper_method,
                    "metric": spec.get("label", metric),
                    "unit": spec.get("unit", ""),
                    "better": ARROWS[directions[metric]] if metric in directions else "",
                    "ours": mean,
                    "ours_ci95": ci,
                    "n": int(hit["n"].iloc[0]) if len(hit) else 0,
                    "published": float(values[metric]),
                    "difference": mean - float(values[metric]),
                }
            )
    return pd.DataFrame(rows)


def dataset_caveat(
    published: dict[str, Any], run_dataset: str | None, run_dataset_cfg: dict[str, Any] | None = None
) -> str | None:
    """Why the run's numbers cannot be read against the published ones, if they are on other data: another
    dataset, or another part of it (a published table's ``dataset_config``, e.g. ``{subsets: [imagen]}``, names the
    dataset settings its numbers were computed with)."""
    wanted = published.get("dataset")
    if wanted and run_dataset != wanted:
        return (
            f"this run is on dataset `{run_dataset}`, the published numbers are on `{wanted}`; the differences below "
            "compare different data"
        )
    run_dataset_cfg = run_dataset_cfg or {}
    for key, value in (published.get("dataset_config") or {}).items():
        if run_dataset_cfg.get(key) != value:
            return (
                f"this run has dataset.{key}={_compact(run_dataset_cfg.get(key))}, the published numbers are for "
                f"dataset.{key}={_compact(value)}; the differences below compare different data (rerun with "
                f"dataset.{key}={_compact(value)})"
            )
    return None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).replace('"', "")


@dataclass(frozen=True)
class Comparison:
    """A run beside a published table: the rows (``compare``), why they may not compare, and the markdown."""

    title: str
    source: str
    caveat: str | None
    table: pd.DataFrame
    markdown: str


def refuse_merged_summary(folder: RunFolder, summary: pd.DataFrame) -> None:
    """A sweep's (or ``emb table``'s) merged summary holds one row per job, not one run's numbers: one line naming
    a job to report instead."""
    swept = [k for k in summary_keys(summary, varying_only=False) if k != "method"]
    if not swept and "runs" in summary.columns:  # a merge whose jobs differ by method only
        swept = ["method"]
    if swept:
        jobs = [p for p in find_run_dirs([folder.path]) if p != folder.path]
        example = f", e.g. `emb report {jobs[0]}`" if jobs else ""
        raise ValueError(
            f"{folder.summary_path}: a merged summary of several runs (one row per {', '.join(swept)}); report one "
            f"run's folder{example}"
        )


def published_comparison(run_dir: Path, published_name: str, rename: dict[str, str] | None = None) -> Comparison:
    published = load_published(published_name)
    folder = RunFolder(run_dir)
    folder.check_format()
    summary = folder.read_summary_strictly()
    refuse_merged_summary(folder, summary)
    results = folder.read_results_strictly()
    table = compare(summary, published, rename, results.get("higher_is_better"))
    prov = results.get("provenance", {})
    dataset = results.get("dataset", {})
    caveat = dataset_caveat(published, dataset.get("name"), (results.get("config") or {}).get("dataset"))
    if caveat:
        log.warning("%s: %s", run_dir, caveat)
    title = str(published.get("title", published_name))
    lines = [
        f"# {title}",
        "",
        f"Published: {published['source'].strip()}",
        "",
        *([f"**Not comparable:** {caveat}", ""] if caveat else []),
        f"Ours: run `{run_dir}`, dataset `{dataset.get('name')}` (checksum `{str(dataset.get('checksum'))[:16]}`), "
        f"git `{str((prov.get('git') or {}).get('commit'))[:12]}`, model `{(results.get('model') or {}).get('name')}`."
        " A missing value means the run did not produce that method or metric.",
        "",
        table.to_markdown(index=False, floatfmt=".3g") if not table.empty else "(nothing to compare)",
        "",
    ]
    return Comparison(title, published["source"].strip(), caveat, table, "\n".join(lines))


def write_report(run_dir: Path, published_name: str, rename: dict[str, str] | None = None) -> str:
    """``report.md`` and ``report.csv`` in the run directory; returns the markdown."""
    comparison = published_comparison(run_dir, published_name, rename)
    RunFolder(run_dir).write_report(comparison.markdown, comparison.table)
    return comparison.markdown
