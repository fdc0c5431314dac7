"""A scoring pass decodes each dataset sample once for all methods, and still keeps each method's dataset-level
values (FID) its own and every per-sample value as scoring one method at a time gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from benchmark.datasets import build_dataset
from benchmark.datasets import synthetic as synthetic_loader
from benchmark.rundir import RunFolder
from benchmark.runner import run
from benchmark.scoring import score
from tests.conftest import compose

METHODS = "methods=[identity,{gt_inpaint:{num_inference_steps:2}}]"


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("two_methods")
    run(compose([METHODS, "dataset.limit=3"], tmp, model_cache), tmp / "run")
    return tmp / "run"


def test_a_scoring_pass_decodes_each_sample_once(two_methods: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic loader's own sample renderer, counted: 3 samples held by 2 methods are rendered 3 times, not
    6 (checked to fail: scoring method by method, as before, rendered each twice)."""
    cfg = RunFolder(two_methods).load_config()
    loads: Counter[str] = Counter()
    render = synthetic_loader.make_sample

    def counted(*args, **kwargs):
        sample = render(*args, **kwargs)
        loads[sample.id] += 1
        return sample

    monkeypatch.setattr(synthetic_loader, "make_sample", counted)
    result = score(two_methods, build_dataset(cfg.dataset), cfg.dataset, cfg.metrics)
    assert loads == Counter({f"syn0-{i:05d}": 1 for i in range(3)})
    # the same per-sample values as the run's own scoring
    stored = pd.read_parquet(two_methods / "samples.parquet")
    pd.testing.assert_frame_equal(result.long.reset_index(drop=True), stored)


def test_dataset_level_values_stay_per_method(two_methods: Path) -> None:
    """FID (the toy world's preset: toy CLIP features, real = the rendered correct edits) of each method scored
    alongside the other equals its FID scored alone: the methods' edited images never pool (checked to fail with a
    ``Metric.fork`` that returns the metric itself: identity's FID then counts gt_inpaint's images too)."""
    folder = RunFolder(two_methods)
    cfg = folder.load_config()
    metrics = compose(["metrics=toyworld"]).metrics
    dataset = build_dataset(cfg.dataset)
    records = folder.records()
    together = score(two_methods, dataset, cfg.dataset, metrics, records=records)
    fid = together.dataset_values.set_index(["method", "metric"]).loc[:, "mean"]
    assert fid[("identity", "fid")] != fid[("gt_inpaint", "fid")]
    for method in ("identity", "gt_inpaint"):
        alone = score(two_methods, dataset, cfg.dataset, metrics, records=[r for r in records if r.method == method])
        assert alone.dataset_values.set_index("metric").loc["fid", "mean"] == fid[(method, "fid")]
        per_sample = together.long[together.long["method"] == method].reset_index(drop=True)
        pd.testing.assert_frame_equal(per_sample, alone.long.reset_index(drop=True))
