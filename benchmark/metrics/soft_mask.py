"""Threshold-free mask scores from a method's stored soft mask (``soft_mask.npz``), against the GT mask.

Mask IoU depends on one threshold that each paper picks by hand; these values answer "which threshold?" with a curve
per method instead, and score the soft mask with no threshold at all:

- ``soft_iou@T`` (per sample, one value per threshold T): IoU of ``soft > T`` with the GT — the same binarisation as
  ``mask_iou`` with ``source: soft, threshold: T``, so a curve point equals that metric's ``iou``. Their per-method
  means are the IoU-versus-threshold curve (``summary.csv`` rows; the markdown pivot leaves them out, see
  ``benchmark.tables.CURVE_MARK``).
- ``soft_iou_mean`` (per sample): the mean of the sample's curve over the thresholds, i.e. the area under the
  IoU–threshold curve on [0, 1] by the midpoint rule with the default evenly spaced thresholds.
- ``soft_iou_best`` and ``soft_iou_best_threshold`` (per method, dataset-level): the highest point of the method's
  mean curve and its threshold — the one threshold that serves this method best on this data (an upper bound of what
  tuning one threshold can reach; it is fitted on the same samples it scores).
- ``soft_mask_ap`` (per sample): average precision of the soft mask's pixels as scores of the GT's pixels
  (torchmetrics' ``binary_average_precision``, exact: every distinct soft value is a threshold). NaN when the GT is
  empty (no positive pixel to find).

The soft mask is resized to the GT's size with ``resample`` (nearest by default, as ``mask_iou``), or both to
``resolution``×``resolution``. Values outside [0, 1] (a method's bug) are an error naming the method's sample.
A method that stores no soft mask gets no values. Empty union (empty GT, nothing above T) → IoU ``empty_union``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import binary_average_precision

from benchmark.metrics.base import Metric, ScoreItem
from benchmark.metrics.images import mask_at
from benchmark.metrics.mask_iou import RESAMPLE, resize_soft
from benchmark.registry import METRICS

# default thresholds: 19 evenly spaced inside (0, 1), 0.05 apart (ours: the papers use one hand-picked value)
DEFAULT_NUM_THRESHOLDS = 19


def curve_value_name(threshold: float, prefix: str = "") -> str:
    """The per-sample value of one curve point: ``soft_iou@0.35``."""
    return f"{prefix}soft_iou@{threshold:g}"


def evenly_spaced(count: int) -> list[float]:
    """``count`` thresholds k/(count+1), k = 1..count, rounded to 4 digits (0.05, 0.1, ... for 19)."""
    return [round(k / (count + 1), 4) for k in range(1, count + 1)]


def iou_curve(soft: torch.Tensor, gt: torch.Tensor, thresholds: torch.Tensor, empty_union: float) -> torch.Tensor:
    """IoU of ``soft > t`` with the bool ``gt`` for every t (one pass over the pixels per threshold, vectorised)."""
    pred = soft.reshape(1, -1) > thresholds.reshape(-1, 1)
    truth = gt.reshape(1, -1)
    tp = (pred & truth).sum(dim=1)
    union = (pred | truth).sum(dim=1)
    iou = tp.double() / union.clamp(min=1).double()
    return torch.where(union == 0, torch.full_like(iou, float(empty_union)), iou)


def soft_average_precision(soft: torch.Tensor, gt: torch.Tensor) -> float:
    """AP of the soft mask's pixels against the GT pixels; NaN without a positive pixel."""
    if not bool(gt.any()):
        return math.nan
    return float(binary_average_precision(soft.reshape(-1), gt.reshape(-1).long(), thresholds=None))


@METRICS.register("soft_mask")
class SoftMaskScores(Metric):
    higher_is_better = {"soft_iou": True, "soft_mask_ap": True}
    needs_mask = True
    supported_regions = ("whole",)  # the masks themselves are compared

    def __init__(
        self,
        region: str = "whole",
        thresholds: list[float] | None = None,
        num_thresholds: int = DEFAULT_NUM_THRESHOLDS,
        resample: str = "nearest",
        resolution: int | None = None,
        empty_union: float = 1.0,
        prefix: str = "",
    ) -> None:
        super().__init__(
            region,
            thresholds=thresholds,
            num_thresholds=num_thresholds,
            resample=resample,
            resolution=resolution,
            empty_union=empty_union,
            prefix=prefix,
        )
        if resample not in RESAMPLE:
            raise ValueError(f"soft_mask.resample='{resample}': use one of {', '.join(RESAMPLE)}")
        values = [float(t) for t in thresholds] if thresholds else evenly_spaced(int(num_thresholds))
        if not values or sorted(set(values)) != values:
            raise ValueError(f"soft_mask.thresholds={values}: give distinct thresholds in increasing order")
        self.thresholds = values
        self.resample, self.resolution = resample, resolution
        self.empty_union, self.prefix = float(empty_union), prefix
        self.curve_names = [curve_value_name(t, prefix) for t in values]
        self.reset()

    def reset(self) -> None:
        # this method's summed curve and its sample count: its mean curve's best point is a dataset-level value
        self.curve_sum = np.zeros(len(self.thresholds))
        self.curve_n = 0

    def directions(self) -> dict[str, bool]:
        p = self.prefix
        names = [*self.curve_names, f"{p}soft_iou_mean", f"{p}soft_iou_best", f"{p}soft_mask_ap"]
        return {name: True for name in names}

    def soft_and_gt(self, item: ScoreItem) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The soft mask at the GT's size (or ``resolution``) and the GT, or None when either is missing."""
        soft, gt = item.output.soft_mask, item.sample.mask
        if soft is None or gt is None:
            return None
        soft = np.asarray(soft, dtype=np.float32)
        if soft.ndim != 2 or not np.isfinite(soft).all() or soft.min() < 0 or soft.max() > 1:
            raise ValueError(
                f"sample {item.sample.id}: field 'soft_mask' must be a 2-D array of values in [0, 1] "
                f"(shape {soft.shape}, range {np.nanmin(soft):.3g}..{np.nanmax(soft):.3g})"
            )
        gt = gt.astype(bool)
        size = (int(self.resolution),) * 2 if self.resolution else (gt.shape[1], gt.shape[0])
        if self.resolution:
            gt = mask_at(gt, size)
        return torch.tensor(resize_soft(soft, size, self.resample)), torch.tensor(gt)

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        thresholds = torch.tensor(self.thresholds, dtype=torch.float32)
        rows = []
        for item in items:
            pair = self.soft_and_gt(item)
            if pair is None:
                rows.append({})  # no soft mask or no GT: nothing to score
                continue
            soft, gt = pair
            curve = iou_curve(soft, gt, thresholds, self.empty_union).numpy()
            self.curve_sum += curve
            self.curve_n += 1
            row = dict(zip(self.curve_names, curve.tolist(), strict=True))
            row[f"{self.prefix}soft_iou_mean"] = float(curve.mean())
            row[f"{self.prefix}soft_mask_ap"] = soft_average_precision(soft, gt)
            rows.append(row)
        return rows

    def compute(self) -> dict[str, float]:
        if not self.curve_n:
            return {}
        mean_curve = self.curve_sum / self.curve_n
        best = int(np.argmax(mean_curve))  # the lowest threshold among equal best points
        return {
            f"{self.prefix}soft_iou_best": float(mean_curve[best]),
            f"{self.prefix}soft_iou_best_threshold": self.thresholds[best],
        }
