"""The W&B logger in offline mode writes a real run on disk (no server), one per job."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.runner import run
from tests.conftest import compose


def test_offline_wandb_run_files(tmp_path: Path, model_cache: Path) -> None:
    cfg = compose(["method=identity", "dataset.limit=3", "logger=wandb"], tmp_path, model_cache)
    run_dir = tmp_path / "run"
    run(cfg, run_dir)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((run_dir).iterdir())
    assert list(runs[0].glob("run-*.wandb"))  # the run's event log (config, summary, history)
    tables = {p.name.split("_")[0]: p for p in runs[0].glob("files/media/table/*.table.json")}
    assert set(tables) == {"summary", "samples"}
    samples = json.loads(tables["samples"].read_text())
    assert samples["columns"][:7] == ["method", "sample_id", "edit_type", "source", "edited", "gt_mask", "pred_mask"]
    assert [row[1] for row in samples["data"]] == ["syn0-00000", "syn0-00001", "syn0-00002"]
    # the table's images (source, edit, 2 overlays per sample) are real PNG files under the run directory, not $HOME
    staged = [p for p in (run_dir / "wandb_files").rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x89PNG"]
    assert len(staged) >= 3 * 4
    # a second job in the same process is a separate W&B run (finish() was called)
    run(cfg, tmp_path / "run2")
    assert len(list((tmp_path / "run2" / "wandb").glob("offline-run-*"))) == 1
