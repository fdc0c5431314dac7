"""Mask accuracy: IoU, precision, recall and F1 of the method's mask against the ground truth.

Protocol (REFERENCE.md; the InstDiffEdit paper does not publish one, so every choice is explicit config):
the predicted mask is resized to the GT's size (``resample``: nearest by default), or, with ``resolution: N``, both
masks are resized to N×N (the GT always with nearest neighbour). A soft mask is binarised at
``threshold`` when ``source: soft``; ``source: binary`` (default) uses the method's own binary mask.
Empty union (both masks empty): IoU = ``empty_union`` (default 1.0: the prediction is exactly right); precision
is NaN when nothing is predicted, recall NaN when the GT is empty; NaN values are left out of means.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from benchmark.metrics.base import Metric, ScoreItem
from benchmark.metrics.images import mask_at
from benchmark.registry import METRICS

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def resize_soft(mask: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """Resize a float mask to (width, height) with the named filter."""
    if mask.shape[::-1] == tuple(size):
        return mask.astype(np.float32)
    im = Image.fromarray(mask.astype(np.float32), mode="F")
    return np.asarray(im.resize(size, RESAMPLE[resample]), dtype=np.float32)


def binarise(
    item: ScoreItem, source: str, threshold: float, resample: str, resolution: int | None = None
) -> np.ndarray | None:
    gt = item.sample.mask
    size = (int(resolution), int(resolution)) if resolution else (gt.shape[1], gt.shape[0])
    out = item.output
    if source == "soft" and out.soft_mask is not None:
        return resize_soft(out.soft_mask, size, resample) > threshold
    if out.mask is not None:
        return resize_soft(out.mask.astype(np.float32), size, resample) > 0.5
    if out.soft_mask is not None:
        return resize_soft(out.soft_mask, size, resample) > threshold
    return None


def mask_scores(pred: torch.Tensor, gt: torch.Tensor, empty_union: float = 1.0) -> dict[str, float]:
    """Scores of one bool mask pair (same shape)."""
    tp = int((pred & gt).sum())
    fp = int((pred & ~gt).sum())
    fn = int((~pred & gt).sum())
    union = tp + fp + fn
    nan = math.nan
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    if union == 0:
        iou = float(empty_union)
    else:
        iou = tp / union
    f1 = 2 * tp / (2 * tp + fp + fn) if union else float(empty_union)
    return {"iou": iou, "precision": precision, "recall": recall, "f1": f1}


@METRICS.register("mask_iou")
class MaskIoU(Metric):
    name = "mask_iou"
    higher_is_better = {"iou": True, "precision": True, "recall": True, "f1": True}
    needs_mask = True
    # the masks themselves are compared: background/edit regions do not apply
    supported_regions = ("whole",)

    def __init__(
        self,
        region: str = "whole",
        source: str = "binary",
        threshold: float = 0.5,
        resample: str = "nearest",
        empty_union: float = 1.0,
        resolution: int | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__(
            region,
            source=source,
            threshold=threshold,
            resample=resample,
            empty_union=empty_union,
            resolution=resolution,
            prefix=prefix,
        )
        self.resolution = resolution
        if resample not in RESAMPLE:
            raise ValueError(f"mask_iou.resample='{resample}': use one of {', '.join(RESAMPLE)}")
        if source not in ("binary", "soft"):
            raise ValueError(f"mask_iou.source='{source}': use 'binary' or 'soft'")
        self.source, self.threshold, self.resample = source, float(threshold), resample
        self.empty_union, self.prefix = float(empty_union), prefix

    def directions(self) -> dict[str, bool]:
        return {f"{self.prefix}{k}": v for k, v in self.higher_is_better.items()}

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        rows = []
        for item in items:
            if item.sample.mask is None:
                rows.append({})  # no ground truth: nothing to score
                continue
            pred = binarise(item, self.source, self.threshold, self.resample, self.resolution)
            if pred is None:
                rows.append({})  # the method makes no mask: nothing to score
                continue
            gt = item.sample.mask.astype(bool)
            if self.resolution:
                gt = mask_at(gt, (int(self.resolution), int(self.resolution)))
            scores = mask_scores(torch.from_numpy(pred), torch.from_numpy(gt), self.empty_union)
            rows.append({f"{self.prefix}{k}": v for k, v in scores.items()})
        return rows
