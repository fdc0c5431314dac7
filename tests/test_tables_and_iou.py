"""Tables against independent computations; the IoU protocol's edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torchmetrics.functional.classification import binary_jaccard_index, binary_precision, binary_recall

from benchmark.metrics.base import ScoreItem
from benchmark.metrics.mask_iou import MaskIoU, mask_scores
from benchmark.rundir import SampleRecord
from benchmark.tables import long_rows, pivot, summarize
from benchmark.types import EditOutput, EditSample


def test_mask_scores_match_torchmetrics() -> None:
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.random((37, 53)) > 0.6)
    gt = torch.from_numpy(rng.random((37, 53)) > 0.5)
    ours = mask_scores(pred, gt)
    assert ours["iou"] == pytest.approx(float(binary_jaccard_index(pred.int(), gt.int())), rel=1e-6)
    assert ours["precision"] == pytest.approx(float(binary_precision(pred.int(), gt.int())), rel=1e-6)
    assert ours["recall"] == pytest.approx(float(binary_recall(pred.int(), gt.int())), rel=1e-6)


def test_empty_union_rule_and_nan_precision() -> None:
    empty = torch.zeros(4, 4, dtype=torch.bool)
    assert mask_scores(empty, empty)["iou"] == 1.0
    assert mask_scores(empty, empty, empty_union=0.0)["iou"] == 0.0
    gt = empty.clone()
    gt[0, 0] = True
    s = mask_scores(empty, gt)
    assert s["iou"] == 0.0 and math.isnan(s["precision"]) and s["recall"] == 0.0


def _sample(mask: np.ndarray) -> EditSample:
    from PIL import Image

    return EditSample(id="s", image=Image.new("RGB", mask.shape[::-1]), mask=mask)


def test_predicted_mask_is_resized_nearest_to_gt_size() -> None:
    gt = np.zeros((64, 64), dtype=bool)
    gt[16:48, 16:48] = True
    low = np.zeros((8, 8), dtype=bool)
    low[2:6, 2:6] = True  # the same square at 1/8 resolution
    metric = MaskIoU()
    [row] = metric.update([ScoreItem(_sample(gt), EditOutput(mask=low))])
    assert row["iou"] == 1.0
    # a soft mask re-binarised at another threshold (the post-hoc sweep path)
    soft = np.where(low, 0.4, 0.1).astype(np.float32)
    [row] = MaskIoU(source="soft", threshold=0.3).update([ScoreItem(_sample(gt), EditOutput(soft_mask=soft))])
    assert row["iou"] == 1.0
    [row] = MaskIoU(source="soft", threshold=0.5).update([ScoreItem(_sample(gt), EditOutput(soft_mask=soft))])
    assert row["iou"] == 0.0


def test_summary_mean_ci_and_failures_match_scipy() -> None:
    values = [0.1, 0.5, 0.4, 0.9]
    records = [
        {
            "method": "m",
            "sample_id": f"s{i}",
            "edit_type": "a" if i < 2 else "b",
            "status": "ok",
            "warmup": i == 0,
            "time_s": 10.0 if i == 0 else 1.0,
            "nfe": 4,
        }
        for i in range(4)
    ]
    records.append({"method": "m", "sample_id": "s9", "edit_type": "b", "status": "failed"})
    scores = {("m", f"s{i}"): {"iou": v} for i, v in enumerate(values)}
    summary = summarize(long_rows([SampleRecord.from_json(r) for r in records], scores))
    row = summary.query("edit_type == 'all' and metric == 'iou'").iloc[0]
    x = np.array(values)
    assert row["mean"] == pytest.approx(x.mean())
    assert row["std"] == pytest.approx(x.std(ddof=1))
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2)
    assert row["n"] == 4 and row["failures"] == 1
    # the warm-up sample's time is left out of the time mean
    t = summary.query("edit_type == 'all' and metric == 'time_s'").iloc[0]
    assert t["mean"] == 1.0 and t["n"] == 3
    per_type = summary.query("metric == 'iou'").set_index("edit_type")
    assert per_type.loc["a", "mean"] == pytest.approx(0.3) and per_type.loc["b", "failures"] == 1
    table = pivot(summary)
    assert isinstance(table, pd.DataFrame) and table.loc["m", "failures"] == 1


def test_table_headers_show_each_metrics_better_direction(tmp_path: Path) -> None:
    """summary.md / summary.tex headers carry ↑ / ↓ from the metrics' higher_is_better (scaled columns too);
    columns of no direction (n, failures) and pivot's own column names stay bare."""
    from benchmark.tables import pivot_latex, pivot_markdown, run_directions, write_tables

    summary = pd.DataFrame(
        [
            {"method": "m_a", "edit_type": "all", "metric": m, "mean": v, "std": 0.0, "ci95": 0.0}
            | {"n": 2, "failures": 0}
            for m, v in (("iou", 0.5), ("lpips_background", 0.01), ("time_s", 1.5), ("mystery", 3.0))
        ]
    )
    directions = {"iou": True, "lpips_background": False, "time_s": False}
    md = write_tables(tmp_path, summary, scales={"lpips_background": 1000}, directions=directions)
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    assert header == ["method", "iou ↑", "lpips_background ×1000 ↓", "mystery", "time_s ↓", "n", "failures"]
    assert (tmp_path / "summary.md").read_text().startswith(md)
    tex = (tmp_path / "summary.tex").read_text()
    assert r"iou $\uparrow$" in tex and r"time\_s $\downarrow$" in tex and r"m\_a" in tex
    table = pivot(summary)
    assert "iou" in table.columns  # programmatic access keeps the bare names
    assert pivot_markdown(table, None) == table.to_markdown() and "EMB" not in pivot_latex(table, directions)
    # a merge's directions: from the runs' results.json; a metric two runs disagree on is left unmarked
    for name, better in (("a", True), ("b", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"higher_is_better": {"iou": True, "x": better}}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text("{truncated")
    (tmp_path / "d").mkdir()  # not a mapping, and values that are not true/false: no mark, no traceback
    (tmp_path / "d" / "results.json").write_text(json.dumps({"higher_is_better": ["iou"]}))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "results.json").write_text(json.dumps({"higher_is_better": {"y": "false", "z": None}}))
    runs = [tmp_path / name for name in ("a", "b", "c", "d", "e", "none")]
    assert run_directions(runs) == {"iou": True}
    odd = pivot_markdown(table, {"mystery": None, "iou": "higher"})  # type: ignore[dict-item]
    assert "| iou " in odd and "| mystery " in odd and "↑" not in odd
