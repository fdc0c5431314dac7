"""What the report draws from a run's stored samples: the mask IoU at every threshold of each method's soft masks
(against the dataset's GT masks) and a few samples per method for the grid. Everything is read through the run
folder (``RunFolder``) and the run's own dataset config; no method runs.

The curve is the ``soft_mask`` metric's (``soft_iou@T``), computed here for a run whose metric set has no
``soft_mask`` entry (an older run, another preset): its rule (``iou_curve``: ``soft > T``, the soft mask resized to
the GT's size) with the run's ``soft_mask`` settings, else its ``mask_iou`` resample and empty union.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.metrics.mask_iou import resize_soft
from benchmark.metrics.soft_mask import DEFAULT_NUM_THRESHOLDS, evenly_spaced, iou_curve
from benchmark.plots import GridRow, IouCurve
from benchmark.rundir import RunFolder, SampleRecord
from benchmark.tables import ci95_half_width
from benchmark.types import EditSample, SampleError, error_line

log = logging.getLogger("emb")


@dataclass(frozen=True)
class MaskProtocol:
    """How a soft mask is compared with the GT: resize filter, IoU of two empty masks, the curve's thresholds."""

    resample: str = "nearest"
    empty_union: float = 1.0
    thresholds: tuple[float, ...] = tuple(evenly_spaced(DEFAULT_NUM_THRESHOLDS))


@dataclass(frozen=True)
class SampleText:
    """A sample's texts as the dataset gives them (untrusted: the page escapes them)."""

    sample_id: str
    edit_type: str
    source_prompt: str
    target_prompt: str
    instruction: str | None


@dataclass
class MaskData:
    """The IoU curves (one per method with soft masks), grid rows and sample texts per method."""

    curves: list[IouCurve] = field(default_factory=list)
    grids: dict[str, list[GridRow]] = field(default_factory=dict)
    texts: dict[str, list[SampleText]] = field(default_factory=dict)


def mask_protocol(cfg: Any) -> MaskProtocol:
    """The run's ``soft_mask`` settings (its first entry), else its ``mask_iou``'s resample and empty union with
    ``soft_mask``'s default thresholds, else both metrics' defaults."""
    entries = list((cfg.get("metrics") or {}).get("metrics") or [])
    for name in ("soft_mask", "mask_iou"):
        entry = next((e for e in entries if e.get("name") == name), None)
        if entry is None:
            continue
        thresholds = entry.get("thresholds") if name == "soft_mask" else None
        count = int(entry.get("num_thresholds", DEFAULT_NUM_THRESHOLDS)) if name == "soft_mask" else None
        return MaskProtocol(
            str(entry.get("resample", "nearest")),
            float(entry.get("empty_union", 1.0)),
            tuple(float(t) for t in thresholds)
            if thresholds
            else tuple(evenly_spaced(count or DEFAULT_NUM_THRESHOLDS)),
        )
    return MaskProtocol()


def iou_at_thresholds(
    soft: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, protocol: MaskProtocol = MaskProtocol()
) -> np.ndarray:
    """IoU of ``soft > t`` against the GT mask for each threshold t (the soft mask resized to the GT's size), by the
    ``soft_mask`` metric's own rule (``iou_curve``)."""
    size = (gt.shape[1], gt.shape[0])
    resized = torch.tensor(resize_soft(np.asarray(soft, dtype=np.float32), size, protocol.resample))  # a copy
    target = torch.from_numpy(np.asarray(gt, dtype=bool))
    ts = torch.tensor(np.asarray(thresholds, dtype=np.float32))
    return iou_curve(resized, target, ts, protocol.empty_union).numpy()


def curve(label: str, per_sample: list[np.ndarray], thresholds: np.ndarray) -> IouCurve:
    """Mean IoU over the samples at each threshold, with Student-t 95% half-widths (the tables' ``ci95``)."""
    values = pd.DataFrame(np.vstack(per_sample), columns=range(len(thresholds)))
    return IouCurve(
        label=label,
        thresholds=thresholds,
        mean=values.mean().to_numpy(float),
        ci95=np.array([ci95_half_width(values[c]) for c in values.columns]),
        n=len(per_sample),
    )


def sample_text(sample: EditSample) -> SampleText:
    return SampleText(sample.id, sample.edit_type, sample.source_prompt, sample.target_prompt, sample.instruction)


def stored_samples(folder: RunFolder, cfg: Any) -> Any:
    """(sample, its ok records) for every sample the run finished, in dataset order; a sample that cannot be loaded
    any more is one warning line and left out."""
    from benchmark.datasets import build_dataset, iter_selected

    wanted: dict[str, list[SampleRecord]] = {}
    for rec in folder.records():
        if rec.ok:
            wanted.setdefault(rec.sample_id, []).append(rec)
    if not wanted:
        return
    dataset = build_dataset(cfg.dataset)
    for ref in iter_selected(dataset, cfg.dataset):
        records = wanted.pop(ref.id, None)
        if records is None:
            continue
        try:
            yield ref.load(), records
        except SampleError as err:
            log.warning("%s: left out of the report's mask plots (%s)", ref.id, error_line(err))
        if not wanted:
            return  # no need to stream the rest of the dataset


def collect_masks(folder: RunFolder, cfg: Any, per_method: int = 3) -> MaskData:
    """The run's IoU curves (at its ``soft_mask`` thresholds) and grid samples. A stored output that cannot be read is
    one warning line and left out."""
    protocol = mask_protocol(cfg)
    thresholds = np.array(protocol.thresholds)
    ious: dict[str, list[np.ndarray]] = {}
    data = MaskData()
    for sample, records in stored_samples(folder, cfg):
        for rec in records:
            try:
                out = folder.read_output(rec)
            except SampleError as err:
                log.warning("%s/%s: left out of the report's mask plots (%s)", rec.method, rec.sample_id, err)
                continue
            if out.soft_mask is not None and sample.mask is not None:
                iou = iou_at_thresholds(out.soft_mask, sample.mask, thresholds, protocol)
                ious.setdefault(rec.method, []).append(iou)
            grid = data.grids.setdefault(rec.method, [])
            if len(grid) < per_method:
                grid.append(GridRow(sample.id, sample.image, out.image, sample.mask, out.mask))
                data.texts.setdefault(rec.method, []).append(sample_text(sample))
    data.curves = [curve(method, values, thresholds) for method, values in sorted(ious.items())]
    return data
