"""The threshold-free mask scores (benchmark/metrics/soft_mask.py): values worked out by hand on small masks, the
curve against torchmetrics' Jaccard index and against mask_iou's own soft binarisation, and the scores in a real
`emb run` / `emb score` of the default preset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchmetrics.classification import BinaryJaccardIndex

from benchmark.metrics import build_metrics
from benchmark.metrics.base import ScoreItem
from benchmark.metrics.mask_iou import MaskIoU
from benchmark.metrics.soft_mask import SoftMaskScores, evenly_spaced
from benchmark.types import EditOutput, EditSample
from tests.conftest import emb

GT = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
# the GT's pixels score 0.9 and 0.6; the others 0.5 (exactly on a threshold), 0.2, 0.7, 0.0
SOFT = np.array([[0.9, 0.6, 0.5], [0.2, 0.7, 0.0]], dtype=np.float32)


def item(soft: np.ndarray | None, gt: np.ndarray | None, sample_id: str = "s") -> ScoreItem:
    h, w = (gt if gt is not None else soft).shape
    return ScoreItem(EditSample(id=sample_id, image=Image.new("RGB", (w, h)), mask=gt), EditOutput(soft_mask=soft))


def test_curve_mean_best_and_ap_by_hand() -> None:
    """By hand, thresholds 0.25, 0.5, 0.8 (a pixel counts when soft > T, as mask_iou binarises):
    T=0.25: predicted {0.9, 0.6, 0.5, 0.7}, 2 of them GT, union 4 → 1/2; T=0.5: {0.9, 0.6, 0.7} (0.5 is not above
    0.5) → 2/3; T=0.8: {0.9} → 1/2. Mean over thresholds 5/9. AP: pixels by score 0.9+ 0.7- 0.6+ 0.5- 0.2- 0.0-;
    precision at each GT pixel 1/1 and 2/3 → AP 5/6. A second sample whose soft mask is the GT scores 1 at every
    threshold: the method's mean curve is (3/4, 5/6, 3/4), best 5/6 at T=0.5.
    Checked to fail: with `>=` instead of `>` in iou_curve the T=0.5 point becomes 2/4; with roc-auc in place of
    average precision soft_mask_ap becomes 7/8."""
    metric = SoftMaskScores(thresholds=[0.25, 0.5, 0.8])
    first, second = metric.update([item(SOFT, GT), item(GT.astype(np.float32), GT)])
    assert [first[f"soft_iou@{t}"] for t in (0.25, 0.5, 0.8)] == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert first["soft_iou_mean"] == pytest.approx(5 / 9)
    assert first["soft_mask_ap"] == pytest.approx(5 / 6)
    assert second["soft_iou_mean"] == 1.0 and second["soft_mask_ap"] == 1.0
    assert metric.compute() == pytest.approx({"soft_iou_best": 5 / 6, "soft_iou_best_threshold": 0.5})
    # a fork starts its own curve (one per method in a scoring run)
    twin = metric.fork()
    assert twin.compute() == {} and metric.compute()["soft_iou_best"] == pytest.approx(5 / 6)


def test_default_thresholds_and_edge_cases() -> None:
    """19 thresholds 0.05 apart; an empty GT has no AP (NaN) and the empty-union IoU where nothing is predicted; a
    method without a soft mask or a sample without GT gets no values; a soft mask outside [0, 1] is one error naming
    the sample."""
    assert evenly_spaced(19)[:3] == [0.05, 0.1, 0.15] and evenly_spaced(19)[-1] == 0.95
    metric = SoftMaskScores(thresholds=[0.3, 0.6], empty_union=1.0)
    empty_gt = np.zeros_like(GT)
    [row] = metric.update([item(np.array([[0.5, 0, 0], [0, 0, 0]], np.float32), empty_gt)])
    assert row["soft_iou@0.3"] == 0.0 and row["soft_iou@0.6"] == 1.0 and math.isnan(row["soft_mask_ap"])
    assert metric.update([item(None, GT), item(SOFT, None)]) == [{}, {}]
    with pytest.raises(ValueError, match="sample bad: field 'soft_mask' must be .* in \\[0, 1\\]"):
        metric.update([item(SOFT * 2, GT, "bad")])
    with pytest.raises(ValueError, match="increasing"):
        SoftMaskScores(thresholds=[0.5, 0.2])


def test_curve_equals_torchmetrics_jaccard_and_mask_iou_on_soft_masks() -> None:
    """On random soft masks at another resolution than the GT (resized nearest, as mask_iou does), each curve point
    equals torchmetrics' BinaryJaccardIndex at that threshold and mask_iou's iou with source=soft at it; the AP
    equals torchmetrics' BinaryAveragePrecision class."""
    from torchmetrics.classification import BinaryAveragePrecision

    rng = np.random.default_rng(3)
    gt = np.zeros((48, 64), dtype=bool)
    gt[10:30, 20:50] = True
    soft = np.clip(rng.random((12, 16)) * 0.6 + gt[::4, ::4] * 0.4, 0, 1).astype(np.float32)
    thresholds = [0.2, 0.4, 0.55, 0.8]
    [row] = SoftMaskScores(thresholds=thresholds).update([item(soft, gt)])
    big = torch.from_numpy(np.kron(soft, np.ones((4, 4), np.float32)))  # nearest upsampling ×4
    for t in thresholds:
        theirs = float(BinaryJaccardIndex(threshold=t)(big, torch.from_numpy(gt).long()))
        [ours_iou] = MaskIoU(source="soft", threshold=t).update([item(soft, gt)])
        assert row[f"soft_iou@{t}"] == pytest.approx(theirs, abs=1e-6)  # torchmetrics counts in float32
        assert row[f"soft_iou@{t}"] == pytest.approx(ours_iou["iou"], abs=1e-12)
    ap = float(BinaryAveragePrecision()(big.flatten(), torch.from_numpy(gt).flatten().long()))
    assert row["soft_mask_ap"] == pytest.approx(ap, abs=1e-6)


def test_presets_hold_the_soft_mask_scores() -> None:
    from tests.conftest import compose

    for preset in ("default", "toyworld"):
        names = [m.name for m in build_metrics(compose([f"metrics={preset}"]).metrics)]
        assert "soft_mask" in names, preset


def test_emb_run_and_emb_score_give_the_curve_from_stored_soft_masks(tmp_path: Path, model_cache: Path) -> None:
    """gt_inpaint's soft mask is the GT itself: every curve point is 1 and so are its AP and best; identity's soft
    mask is empty: IoU 0 at every threshold, AP = the GT's share of pixels. The curve is in summary.csv, not in the
    markdown pivot; `emb score` recomputes the same values from the stored soft masks without running a method."""
    run_dir = tmp_path / "run"
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(model_cache)}
    world = ["model=tiny", "dataset=synthetic", "metrics=default", "dataset.limit=2", "methods=[identity,gt_inpaint]"]
    emb("run", *world, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    summary = pd.read_csv(run_dir / "summary.csv").query("edit_type == 'all'").set_index(["method", "metric"])["mean"]
    curve = [f"soft_iou@{t:g}" for t in evenly_spaced(19)]
    assert all(summary[("gt_inpaint", name)] == 1.0 for name in curve)
    assert summary[("gt_inpaint", "soft_mask_ap")] == 1.0 and summary[("gt_inpaint", "soft_iou_best")] == 1.0
    assert all(summary[("identity", name)] == 0.0 for name in curve)
    long = pd.read_parquet(run_dir / "samples.parquet")
    ids = long.query("method == 'identity' and metric == 'soft_mask_ap'")
    assert 0 < ids["value"].min() < 0.5  # the GT's share of the image's pixels
    markdown = (run_dir / "summary.md").read_text()
    assert "soft_iou_mean" in markdown and "soft_mask_ap" in markdown and "@" not in markdown
    before = pd.read_csv(run_dir / "summary.csv")
    emb("score", str(run_dir), "--out", str(tmp_path / "rescored"), cwd=tmp_path, env=env)
    after = pd.read_csv(tmp_path / "rescored" / "summary.csv")
    pd.testing.assert_frame_equal(
        before.query("metric.str.startswith('soft_')").reset_index(drop=True),
        after.query("metric.str.startswith('soft_')").reset_index(drop=True),
    )
    assert "soft_iou_best" in json.loads((tmp_path / "rescored" / "results.json").read_text())["higher_is_better"]
