"""``emb report``'s page and plots for a run or a sweep: which plots a summary gets, and the page that shows them.

A run: mask IoU vs threshold per method (the ``soft_mask`` metric's curve from the summary, else the same curve
computed from the stored soft masks), each quality metric against NFE and seconds
per image (one point per method, with its 95% intervals, and the Pareto front), each metric per edit type (bars with
95% intervals) and a grid of a few sample edits per method. A sweep (or any folder of runs): the merged summary, the
same plots with one series per job and method, and each metric against each swept setting.

A quality metric is any summary metric with a known better direction that is not a cost (time, NFE, calls,
speedups).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import plots
from benchmark.plots import IouCurve, Means, PlotWriter, SavedPlot
from benchmark.report_data import MaskData, collect_masks
from benchmark.report_html import PlotSection, ReportPage, SampleSection, Table, render
from benchmark.reports import Comparison, published_comparison, refuse_merged_summary
from benchmark.rundir import (
    RunFolder,
    find_run_dirs,
    read_sweep_best,
    read_sweep_jobs,
    run_directions,
    valid_directions,
)
from benchmark.tables import ARROWS, CURVE_MARK, mark_directions, merge_runs, pivot, summary_keys
from benchmark.types import SampleError, error_line

log = logging.getLogger("emb")

COSTS = ("time_s", "nfe", "denoiser_calls", "speedup_time", "speedup_nfe", "failed")
BOOKKEEPING = ("clip_prompt_truncated",)  # counts of how a metric ran, not how good an edit is
GRID_SAMPLES = 3  # samples per method in the grid of sample edits (ours)


@dataclass
class RunPlots:
    sections: list[PlotSection] = field(default_factory=list)
    samples: list[SampleSection] = field(default_factory=list)

    def all(self) -> list[SavedPlot]:
        return [p for s in self.sections for p in s.plots] + [s.plot for s in self.samples]


@dataclass(frozen=True)
class ReportOutcome:
    html: Path
    plots: list[SavedPlot]
    comparison: Comparison | None = None


# --- what the summary says ------------------------------------------------------------------------------------------


def quality_metrics(summary: pd.DataFrame, directions: dict[str, bool]) -> list[str]:
    """Metrics with a better direction and a finite mean that are neither a cost, bookkeeping nor a curve point."""
    rows = summary[(summary["edit_type"] == "all") & np.isfinite(pd.to_numeric(summary["mean"], errors="coerce"))]
    names = rows["metric"].astype(str).unique()
    plotted = (m for m in names if m in directions and m not in COSTS + BOOKKEEPING)
    return sorted(m for m in plotted if CURVE_MARK not in m)


def setting_text(row: pd.Series, keys: list[str]) -> str:
    """A summary row's values of ``keys``: ``metrics.metrics.0.threshold=0.3, seed=1``."""
    return ", ".join(f"{k}={row[k]}" for k in keys)


def labelled(summary: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """The summary with a ``label`` column: the method, then the values of the other keys (a sweep's job)."""
    others = [k for k in keys if k != "method"]

    def label(row: pd.Series) -> str:
        extra = setting_text(row, others)
        return f"{row['method']} [{extra}]" if extra else str(row["method"])

    return summary.assign(label=summary.apply(label, axis=1) if len(summary) else pd.Series(dtype=str))


def wide(rows: pd.DataFrame, index: str, columns: str) -> Means:
    mean = rows.pivot_table(index=index, columns=columns, values="mean", aggfunc="first", sort=True)
    ci95 = rows.pivot_table(index=index, columns=columns, values="ci95", aggfunc="first", sort=True)
    return Means(mean, ci95.reindex(index=mean.index, columns=mean.columns))


def summary_tables(summary: pd.DataFrame, keys: tuple[str, ...], directions: dict[str, bool]) -> list[Table]:
    """The pivot (mean ± 95% CI, metric headers marked with their better direction), all samples and per edit type."""
    tables = []
    for edit_type in ["all", *sorted(t for t in summary["edit_type"].astype(str).unique() if t != "all")]:
        table = pivot(summary, keys, edit_type=edit_type)
        if table.empty:
            continue
        frame = mark_directions(table, directions).reset_index()
        heading = "all samples" if edit_type == "all" else f"edit type {edit_type}"
        tables.append(Table(heading, frame, tuple(k for k in keys if k in frame.columns)))
    return tables


# --- plots ------------------------------------------------------------------------------------------------------------


CURVE_PREFIX = "soft_iou" + CURVE_MARK  # the soft_mask metric's curve points: soft_iou@0.35


def summary_curves(summary: pd.DataFrame, keys: tuple[str, ...]) -> dict[str, list[tuple[str, IouCurve]]]:
    """The IoU-vs-threshold curves the summary holds (the ``soft_mask`` metric's ``soft_iou@T`` rows), per method:
    (the other keys' values, e.g. a sweep job's, its curve)."""
    metric = summary["metric"].astype(str)
    rows = summary[(summary["edit_type"] == "all") & metric.str.startswith(CURVE_PREFIX)]
    if rows.empty:
        return {}
    others = [k for k in keys if k != "method"]
    rows = rows.assign(
        threshold=rows["metric"].str.slice(len(CURVE_PREFIX)).astype(float),
        setting=rows.apply(lambda row: setting_text(row, others), axis=1),
    )
    found: dict[str, list[tuple[str, IouCurve]]] = {}
    for (method, setting), points in rows.groupby(["method", "setting"], sort=True):
        points = points.sort_values("threshold")
        curve = IouCurve(
            str(method),
            points["threshold"].to_numpy(float),
            points["mean"].to_numpy(float),
            points["ci95"].to_numpy(float),
            int(points["n"].max()),
        )
        found.setdefault(str(method), []).append((str(setting), curve))
    return found


def one_curve_per_setting(by_method: dict[str, list[tuple[str, IouCurve]]]) -> list[IouCurve]:
    """Each method's curves, labelled with their setting (a sweep job's); a method whose curve is the same under every
    setting (a sweep over a setting that does not change the soft masks) keeps one, labelled by the method."""
    curves = []
    for method, found in sorted(by_method.items()):
        first = found[0][1]
        if all(c.n == first.n and np.allclose(c.mean, first.mean, equal_nan=True) for _, c in found):
            curves.append(replace(first, label=method))
        else:
            curves += [replace(c, label=f"{method} [{setting}]" if setting else method) for setting, c in found]
    return curves


def mask_section(curves: list[IouCurve], from_summary: bool, out: PlotWriter) -> PlotSection:
    source = (
        "the soft_mask metric's soft_iou@T values of the summary"
        if from_summary
        else "the stored soft masks against the GT masks (by the soft_mask metric's rule; the run's metric set has "
        "no soft_mask entry)"
    )
    note = f"Mean IoU of the soft mask above each threshold, from {source}; shaded: 95% CI."
    if not curves:
        return PlotSection("Mask IoU vs threshold", [], note)
    plot = out.save(plots.iou_vs_threshold(curves), "iou_vs_threshold", "mask IoU vs threshold")
    return PlotSection("Mask IoU vs threshold", [plot], note)


def cost_section(rows: pd.DataFrame, metrics: list[str], directions: dict[str, bool], out: PlotWriter) -> PlotSection:
    means = wide(rows[rows["edit_type"] == "all"], "label", "metric")
    section = PlotSection(
        "Quality vs cost", [], "One point per method (mean, 95% CI on both axes); dashed: the Pareto front."
    )
    if not any(c in means.mean.columns for c in plots.COST_AXES):
        return section
    for i, metric in enumerate(metrics):
        fig = plots.metric_vs_cost(means, metric, directions.get(metric))
        name = plots.file_stem(f"cost-{i:02d}", metric)
        section.plots.append(out.save(fig, name, f"{metric} vs NFE and seconds per image"))
    return section


def edit_type_section(
    rows: pd.DataFrame, metrics: list[str], directions: dict[str, bool], out: PlotWriter
) -> PlotSection:
    per_type = rows[rows["edit_type"] != "all"]
    section = PlotSection("Per edit type", [], "Mean per edit type and method, with 95% intervals.")
    if per_type.empty:
        return section
    for i, metric in enumerate(metrics):
        means = wide(per_type[per_type["metric"] == metric], "edit_type", "label")
        if means.mean.empty:
            continue
        fig = plots.edit_type_bars(means, metric, directions.get(metric))
        section.plots.append(out.save(fig, plots.file_stem(f"edit-types-{i:02d}", metric), f"{metric} per edit type"))
    return section


def swept_section(
    summary: pd.DataFrame, keys: tuple[str, ...], metrics: list[str], directions: dict[str, bool], out: PlotWriter
) -> PlotSection:
    """Each metric against each swept setting, one line per method (and the other swept settings)."""
    section = PlotSection("Against the swept settings", [], "Mean over the job's samples, with 95% intervals.")
    rows = summary[summary["edit_type"] == "all"]
    for k, key in enumerate(k for k in keys if k != "method"):
        lines = labelled(rows, tuple(x for x in keys if x != key))
        for i, metric in enumerate(metrics):
            means = wide(lines[lines["metric"] == metric], key, "label")
            if means.mean.empty:
                continue
            fig = plots.metric_vs_swept(means, metric, key, directions.get(metric))
            name = plots.file_stem(f"swept-{k}-{i:02d}", metric, key)
            section.plots.append(out.save(fig, name, f"{metric} vs {key}"))
    return section


def sample_sections(masks: MaskData, out: PlotWriter) -> list[SampleSection]:
    sections = []
    for i, (method, rows) in enumerate(sorted(masks.grids.items())):
        fig = plots.sample_grid(f"{method}: sample edits", rows)
        plot = out.save(fig, plots.file_stem(f"samples-{i:02d}", method), f"{method}: sample edits")
        sections.append(SampleSection(method, plot, masks.texts.get(method, [])))
    return sections


def summary_plots(
    summary: pd.DataFrame,
    keys: tuple[str, ...],
    directions: dict[str, bool],
    masks: MaskData,
    folder: RunFolder,
    svg: bool = True,
) -> RunPlots:
    """Every plot of a (run's or merged) summary and its mask data, written to the folder's ``plots/``."""
    folder.clear_plots()
    out = PlotWriter(folder.plots_dir, svg)
    metrics = quality_metrics(summary, directions)
    rows = labelled(summary, keys)
    scored = summary_curves(summary, keys)
    curves = one_curve_per_setting(scored) if scored else masks.curves
    sections = [mask_section(curves, bool(scored), out), cost_section(rows, metrics, directions, out)]
    if any(k != "method" for k in keys):
        sections.append(swept_section(summary, keys, metrics, directions, out))
    sections.append(edit_type_section(rows, metrics, directions, out))
    return RunPlots(sections, sample_sections(masks, out))


# --- mask data, which needs the run's dataset ------------------------------------------------------------------------


def run_masks(folder: RunFolder, per_method: int = GRID_SAMPLES) -> MaskData:
    """The run's IoU curves and sample grid; when its dataset cannot be read any more (moved, a plugin gone), one
    warning line and none (the tables and cost plots do not need it)."""
    from benchmark.plugins import PluginError, load_plugins

    try:
        cfg = folder.load_config()
        load_plugins(cfg.get("plugins"))
        return collect_masks(folder, cfg, per_method)
    except (PluginError, SampleError, ValueError, OSError, KeyError) as err:
        log.warning("%s: no mask plots or sample grid (%s)", folder.path, error_line(err))
        return MaskData()


def run_plots(run_dir: Path, svg: bool = True) -> RunPlots:
    """A finished run's plots (what ``emb report`` draws, and the W&B logger logs: PNG only)."""
    folder = RunFolder(run_dir)
    summary = folder.read_summary_strictly()
    return summary_plots(summary, ("method",), folder.directions(), run_masks(folder), folder, svg)


# --- pages --------------------------------------------------------------------------------------------------------


def run_facts(run_dir: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
    prov = results.get("provenance") or {}
    dataset = results.get("dataset") or {}
    git = prov.get("git") or {}
    return [
        ("run", str(run_dir)),
        ("dataset", f"{dataset.get('name')} (checksum {str(dataset.get('checksum'))[:16]})"),
        ("model", str((results.get("model") or {}).get("name"))),
        ("git", f"{str(git.get('commit'))[:12]}" + (" (dirty)" if git.get("dirty") else "")),
        ("directions", "↑ higher is better, ↓ lower is better"),
    ]


def published_table(comparison: Comparison) -> Table:
    frame = comparison.table.rename(columns={"ours_ci95": "ours ± (95% CI)"})
    return Table(comparison.title, frame, ("method", "metric", "unit", "better"))


def write_run_report(
    run_dir: Path, published_name: str | None = None, rename: dict[str, str] | None = None
) -> ReportOutcome:
    """``report.html`` and ``plots/`` in a run's folder (and, with a published table, ``report.md``/``.csv``)."""
    folder = RunFolder(run_dir)
    folder.check_format()
    summary = folder.read_summary_strictly()
    refuse_merged_summary(folder, summary)
    results = folder.read_results_strictly()
    directions = valid_directions(results.get("higher_is_better"))
    comparison = None
    if published_name:
        comparison = published_comparison(run_dir, published_name, rename)
        folder.write_report(comparison.markdown, comparison.table)
    made = summary_plots(summary, ("method",), directions, run_masks(folder), folder)
    page = ReportPage(f"emb report: {run_dir.name}", folder.path, facts=run_facts(run_dir, results))
    if comparison is not None:
        page.published = published_table(comparison)
        page.published_note = f"Published: {comparison.source}"
        if comparison.caveat:
            page.warnings.append(f"Not comparable: {comparison.caveat}")
    page.tables = summary_tables(summary, ("method",), directions)
    page.plot_sections, page.samples = made.sections, made.samples
    return ReportOutcome(folder.write_report_html(render(page)), made.all(), comparison)


def job_label(job: Path, keys: tuple[str, ...]) -> str:
    values = RunFolder(job).swept_values()
    return ", ".join(f"{k}={values[k]}" for k in keys if k != "method" and k in values)


def sweep_masks(jobs: list[Path], keys: tuple[str, ...]) -> MaskData:
    """The jobs' IoU curves from their stored soft masks (``one_curve_per_setting``) and the grid of each method's
    first job."""
    merged = MaskData()
    by_method: dict[str, list[tuple[str, IouCurve]]] = {}
    for job in jobs:
        data = run_masks(RunFolder(job))
        for c in data.curves:
            by_method.setdefault(c.label, []).append((job_label(job, keys), c))
        for method, rows in data.grids.items():
            if method not in merged.grids:
                merged.grids[method], merged.texts[method] = rows, data.texts.get(method, [])
    merged.curves = one_curve_per_setting(by_method)
    return merged


def write_sweep_report(root: Path) -> ReportOutcome:
    """``report.html`` and ``plots/`` at a sweep's root (or any folder of runs): the merged summary across its
    jobs (``sweep.json``'s, else every run below it) and the plots across them."""
    jobs = read_sweep_jobs(root) or find_run_dirs([root])
    if not jobs:
        raise FileNotFoundError(f"{root}: no run folders in it (emb report takes a run or a sweep folder)")
    merged = merge_runs(jobs, roots=[root])
    if merged.empty:
        raise ValueError(f"{root}: none of its {len(jobs)} run(s) has tables; `emb score RUN` writes them")
    keys = summary_keys(merged)
    directions = run_directions(jobs)
    folder = RunFolder(root)
    made = summary_plots(merged, keys, directions, sweep_masks(jobs, keys), folder)
    swept = ", ".join(k for k in keys if k != "method") or "method only"
    page = ReportPage(f"emb report: sweep {root.name}", folder.path)
    page.facts = [("sweep", str(root)), ("jobs", str(len(jobs))), ("swept", swept)]
    best = read_sweep_best(root)
    if best is not None:
        page.facts.append(("objective", best.line()))
    page.facts.append(("directions", f"{ARROWS[True]} higher is better, {ARROWS[False]} lower is better"))
    page.tables = summary_tables(merged, keys, directions)
    page.plot_sections, page.samples = made.sections, made.samples
    return ReportOutcome(folder.write_report_html(render(page)), made.all())
