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
