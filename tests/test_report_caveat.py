"""A report on another dataset than the published numbers' says so, in the report and on stderr."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmark.reports import write_report
from benchmark.runner import run
from tests.conftest import compose


def test_report_on_another_dataset_says_not_comparable(tmp_path: Path, model_cache: Path, caplog) -> None:
    run_dir = tmp_path / "run"
    run(compose(["method=identity", "dataset.limit=2"], tmp_path, model_cache), run_dir)
    paper = {"title": "t", "source": "s", "metrics": {"iou": {"scale": 100}}, "results": {"identity": {"iou": 1.0}}}
    for dataset, caveat in (("synthetic", False), ("editing_mask", True)):
        table = tmp_path / f"{dataset}.yaml"
        table.write_text(yaml.safe_dump({**paper, "dataset": dataset}))
        caplog.clear()
        text = write_report(run_dir, str(table))
        line = "**Not comparable:** this run is on dataset `synthetic`, the published numbers are on `editing_mask`"
        assert (line in text) is caveat
        assert any("compare different data" in r.getMessage() for r in caplog.records) is caveat


def test_report_on_another_subset_says_not_comparable(tmp_path: Path, model_cache: Path) -> None:
    """A published table for part of a dataset (`dataset_config`) against a run over another part."""
    run_dir = tmp_path / "run"
    run(compose(["method=identity", "dataset.limit=2"], tmp_path, model_cache), run_dir)
    paper = {"title": "t", "source": "s", "dataset": "synthetic", "metrics": {"iou": {"scale": 100}}}
    paper["results"] = {"identity": {"iou": 1.0}}
    for limit, caveat in ((2, False), (5, True)):
        table = tmp_path / f"limit{limit}.yaml"
        table.write_text(yaml.safe_dump({**paper, "dataset_config": {"limit": limit, "num_samples": 200}}))
        text = write_report(run_dir, str(table))
        line = (
            "**Not comparable:** this run has dataset.limit=2, the published numbers are for dataset.limit=5; the "
            "differences below compare different data (rerun with dataset.limit=5)"
        )
        assert (line in text) is caveat


def test_the_paper_subset_tables_name_their_subset_and_metrics_the_preset_computes() -> None:
    from benchmark.reports import load_published
    from tests.conftest import compose as compose_cfg

    preset = compose_cfg(["experiment=instdiffedit_editing_mask", "dataset.root=/data/x"]).metrics
    computed = {"lpips": "lpips_whole", "clip_score": "clip_score_whole", "fid": "fid", "mask_iou": "iou"}
    names = {computed[m.name] for m in preset.metrics if m.name in computed} | {"time_s"}
    for subset in ("imagen", "imagenet"):
        table = load_published(f"instdiffedit_editing_mask_{subset}")
        assert table["dataset"] == "editing_mask" and table["dataset_config"] == {"subsets": [subset]}
        assert set(table["metrics"]) <= names
