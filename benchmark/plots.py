"""The report's plots, one function each; each returns a matplotlib ``Figure`` (no pyplot: no global state, no
display) and ``save`` writes it as PNG and SVG.

Text from the data (method names, metric names, sample ids) is drawn as it is: ``text.parse_math`` is off while a
figure is built, so a ``$`` in a name is a dollar sign, not mathtext.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

# the cost axes of the quality-versus-cost (Pareto) view: summary metric → axis label
COST_AXES = {"nfe": "NFE (denoiser evaluations per image)", "time_s": "seconds per image"}
GT_COLOUR, PRED_COLOUR = (0, 255, 0), (255, 0, 0)
STYLE = {"text.parse_math": False, "svg.hashsalt": "emb", "figure.dpi": 100, "font.size": 9}
GRID_COLUMNS = ("source", "edited", "GT mask", "predicted mask")


@dataclass(frozen=True)
class IouCurve:
    """Mean mask IoU of one method (or one job's method) at each threshold of its soft masks, with the 95% CI."""

    label: str
    thresholds: np.ndarray
    mean: np.ndarray
    ci95: np.ndarray
    n: int


@dataclass(frozen=True)
class GridRow:
    """One sample of one method in the grid of sample edits (masks bool, of any size: drawn over the image)."""

    sample_id: str
    source: Image.Image
    edited: Image.Image | None
    gt_mask: np.ndarray | None
    pred_mask: np.ndarray | None


@dataclass(frozen=True)
class Means:
    """Summary values as label × column tables: means and 95% CI half-widths (NaN where there is none)."""

    mean: pd.DataFrame
    ci95: pd.DataFrame


@dataclass(frozen=True)
class SavedPlot:
    name: str
    title: str
    png: Path
    svg: Path | None


def plain_text(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure with the report's style: data text is never parsed as mathtext."""

    @wraps(build)
    def styled(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(STYLE):
            return build(*args, **kwargs)

    return styled


def legend_label(label: str) -> str:
    return f" {label}" if label.startswith("_") else label  # matplotlib hides labels starting with "_"


def file_stem(*parts: str) -> str:
    """A file name from plot parts (metric and method names may hold anything)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts)).strip("-.") or "plot"


def overlay(image: Image.Image, mask: np.ndarray | None, colour: tuple[int, int, int]) -> Image.Image:
    """The image with the mask tinted in ``colour`` (half opacity); a mask of another size is resized to the image."""
    if mask is None:
        return image
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != base.shape[:2]:
        mask = (
            np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)) > 127
        )
    tint = base.copy()
    tint[mask] = 0.5 * base[mask] + 0.5 * np.array(colour, dtype=np.float32)
    return Image.fromarray(tint.astype(np.uint8))


def pareto_front(cost: np.ndarray, quality: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Indices of the points no other point beats: no other is at most as costly and at least as good, and strictly
    one of the two. Ordered by cost (the front's line)."""
    q = quality if higher_is_better else -quality
    keep = [
        i
        for i in range(len(cost))
        if not any(cost[j] <= cost[i] and q[j] >= q[i] and (cost[j] < cost[i] or q[j] > q[i]) for j in range(len(cost)))
    ]
    return np.array(sorted(keep, key=lambda i: (cost[i], -q[i])), dtype=int)


def direction_note(higher_is_better: bool | None) -> str:
    return {True: " (higher is better)", False: " (lower is better)"}.get(higher_is_better, "")


@plain_text
def iou_vs_threshold(curves: Sequence[IouCurve]) -> Figure:
    """Mean mask IoU against the threshold the soft mask is binarised at, one line (and 95% band) per method."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for curve in curves:
        (line,) = ax.plot(curve.thresholds, curve.mean, marker=".", label=legend_label(f"{curve.label} (n={curve.n})"))
        low, high = curve.mean - np.nan_to_num(curve.ci95), curve.mean + np.nan_to_num(curve.ci95)
        ax.fill_between(curve.thresholds, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set(xlabel="threshold on the soft mask", ylabel="mask IoU (mean, 95% CI)", ylim=(-0.02, 1.02))
    ax.set_title("Mask IoU vs threshold")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return fig


def _cost_panel(ax: Axes, means: Means, metric: str, cost: str, higher_is_better: bool | None) -> None:
    both = means.mean[[cost, metric]].replace([np.inf, -np.inf], np.nan).dropna()
    for label in both.index:
        ax.errorbar(
            both.at[label, cost],
            both.at[label, metric],
            xerr=_ci(means, label, cost),
            yerr=_ci(means, label, metric),
            fmt="o",
            capsize=3,
            label=legend_label(str(label)),
        )
    if higher_is_better is not None and len(both) > 1:
        front = pareto_front(both[cost].to_numpy(float), both[metric].to_numpy(float), higher_is_better)
        x, y = both[cost].to_numpy()[front], both[metric].to_numpy()[front]
        ax.plot(x, y, "k--", lw=0.8, marker="o", ms=11, mfc="none", label="Pareto front")
    ax.set(xlabel=COST_AXES[cost], ylabel=metric + direction_note(higher_is_better))
    ax.grid(alpha=0.3)


def _ci(means: Means, label: Any, column: str) -> float | None:
    value = means.ci95.at[label, column] if column in means.ci95.columns else math.nan
    return None if pd.isna(value) or not math.isfinite(value) else float(value)


@plain_text
def metric_vs_cost(means: Means, metric: str, higher_is_better: bool | None) -> Figure:
    """One quality metric against NFE and against seconds per image, one point per method with its 95% intervals
    on both axes, and the Pareto front (the methods nothing beats on both). Methods without a finite value (PSNR of
    an unchanged image is inf) are left out."""
    costs = [c for c in COST_AXES if c in means.mean.columns]
    fig = Figure(figsize=(5.2 * max(len(costs), 1), 4.2), layout="constrained")
    axes = fig.subplots(1, max(len(costs), 1), squeeze=False)[0]
    for ax, cost in zip(axes, costs, strict=False):
        _cost_panel(ax, means, metric, cost, higher_is_better)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle(f"{metric} vs cost")
    return fig


@plain_text
def edit_type_bars(means: Means, metric: str, higher_is_better: bool | None) -> Figure:
    """One metric per edit type (rows of ``means``), one bar per method (columns) with its 95% interval."""
    values = means.mean.replace([np.inf, -np.inf], np.nan)
    fig = Figure(figsize=(max(5.0, 1.2 * len(values.index) * max(len(values.columns), 1) / 2 + 2), 4.0))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(values.columns), 1)
    x = np.arange(len(values.index))
    for k, label in enumerate(values.columns):
        errors = means.ci95[label].reindex(values.index) if label in means.ci95.columns else None
        errors = None if errors is None else errors.where(np.isfinite(errors), np.nan).fillna(0).to_numpy(float)
        offset = (k - (len(values.columns) - 1) / 2) * width
        heights = values[label].to_numpy(float)  # NaN (no value, or inf) draws no bar
        ax.bar(x + offset, heights, width, yerr=errors, capsize=2, label=legend_label(str(label)))
    ax.set_xticks(x, [str(t) for t in values.index], rotation=20, ha="right")
    ax.set(ylabel=metric + direction_note(higher_is_better))
    ax.set_title(f"{metric} per edit type (mean, 95% CI)")
    ax.grid(axis="y", alpha=0.3)
    if len(values.columns):
        ax.legend(fontsize=8)
    return fig


@plain_text
def metric_vs_swept(means: Means, metric: str, key: str, higher_is_better: bool | None) -> Figure:
    """A sweep: one metric against a swept setting (rows of ``means``: its values, numeric when they all are),
    one line per method (columns) with 95% intervals."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    numeric = pd.to_numeric(pd.Series(means.mean.index), errors="coerce")
    x = numeric.to_numpy(float) if numeric.notna().all() else np.arange(len(means.mean.index))
    order = np.argsort(x, kind="stable")
    for label in means.mean.columns:
        y = means.mean[label].replace([np.inf, -np.inf], np.nan).to_numpy(float)[order]
        err = means.ci95[label].to_numpy(float)[order] if label in means.ci95.columns else None
        ax.errorbar(x[order], y, yerr=err, marker="o", capsize=3, label=legend_label(str(label)))
    if not numeric.notna().all():
        ax.set_xticks(x, [str(v) for v in means.mean.index], rotation=20, ha="right")
    ax.set(xlabel=key, ylabel=metric + direction_note(higher_is_better))
    ax.set_title(f"{metric} vs {key}")
    ax.grid(alpha=0.3)
    if len(means.mean.columns):
        ax.legend(fontsize=8)
    return fig


@plain_text
def sample_grid(title: str, rows: Sequence[GridRow]) -> Figure:
    """A few samples of one method: source, edited image, GT mask over the source, the method's mask over its
    edit; one row per sample."""
    fig = Figure(figsize=(7.2, 1.9 * max(len(rows), 1) + 0.4), layout="constrained")
    axes = fig.subplots(max(len(rows), 1), len(GRID_COLUMNS), squeeze=False)
    for r, row in enumerate(rows):
        edited = row.edited or row.source
        predicted = overlay(edited, row.pred_mask, PRED_COLOUR) if row.pred_mask is not None else None
        panels = (row.source, row.edited, overlay(row.source, row.gt_mask, GT_COLOUR), predicted)
        for c, image in enumerate(panels):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="grey")
            else:
                ax.imshow(np.asarray(image.convert("RGB")))
            if r == 0:
                ax.set_title(GRID_COLUMNS[c])
        axes[r][0].set_ylabel(row.sample_id, fontsize=8)
    fig.suptitle(title)
    return fig


def save(fig: Figure, folder: Path, name: str, title: str, svg: bool = True) -> SavedPlot:
    """``folder/name.png`` and (with ``svg``) ``folder/name.svg``."""
    folder.mkdir(parents=True, exist_ok=True)
    png_path, svg_path = folder / f"{name}.png", folder / f"{name}.svg"
    with matplotlib.rc_context(STYLE):
        fig.savefig(png_path, format="png")
        if svg:
            fig.set_layout_engine("none")  # laid out once for the PNG: the SVG keeps those positions (half the cost)
            fig.savefig(svg_path, format="svg", metadata={"Date": None})
    return SavedPlot(name, title, png_path, svg_path if svg else None)


@dataclass(frozen=True)
class PlotWriter:
    """Where a report's plots go and in which formats (PNG always; SVG for the page's links)."""

    folder: Path
    svg: bool = True

    def save(self, fig: Figure, name: str, title: str) -> SavedPlot:
        return save(fig, self.folder, name, title, self.svg)
