"""The W&B logger in offline mode writes a real run on disk (no server), one per job, named and grouped per sweep,
with its images inside the offline run folder."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from benchmark.datasets.synthetic import SyntheticDataset, write_dataset
from benchmark.loggers.wandb_logger import FOLDER_VARS, run_identity
from benchmark.runner import run
from benchmark.store import load_records
from tests.conftest import compose, emb

IMAGE_COLUMNS = ["source", "edited", "gt_mask", "pred_mask"]
NO_PLOTS = "logger.plots=false"  # the report's plots in W&B: tests/test_report_plots.py (they cost ~30 figures a run)
ENV_WARNING = "environment variables will be ignored"


def wandb_records(path: Path) -> Iterator:
    """The protobuf records of an offline run's ``run-*.wandb`` file (W&B's LevelDB-style log: 32 KiB blocks of
    chunks with a 7-byte header (crc, length, type: 1 full, 2 first, 3 middle, 4 last) after a 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, parts = path.read_bytes(), 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block  # block trailer padding
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def offline_run(wandb_dir: Path) -> tuple[Path, dict]:
    """The one offline run folder under ``wandb_dir``, with its run record and its history: step -> {key: path}."""
    (folder,) = wandb_dir.glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    run_record, history = None, {}
    for rec in wandb_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_record = rec.run
        elif kind == "history":
            items = {tuple(i.nested_key) or (i.key,): json.loads(i.value_json) for i in rec.history.item}
            history[items[("_step",)]] = {k[0]: v for k, v in items.items() if len(k) == 2 and k[1] == "path"}
    return folder, {"name": run_record.display_name, "group": run_record.run_group, "history": history}


def table(folder: Path, name: str) -> list[dict]:
    (path,) = folder.glob(f"files/media/table/{name}_*.table.json")
    content = json.loads(path.read_text())
    return [dict(zip(content["columns"], row, strict=True)) for row in content["data"]]


def test_offline_wandb_run_files(tmp_path: Path, model_cache: Path, capfd: pytest.CaptureFixture) -> None:
    before = {var: os.environ.get(var) for var, _ in FOLDER_VARS}
    cfg = compose(["method=identity", "dataset.limit=3", "logger=wandb", NO_PLOTS], tmp_path, model_cache)
    run_dir = tmp_path / "run"
    run(cfg, run_dir)
    folder, info = offline_run(run_dir / "wandb")
    assert list(folder.glob("run-*.wandb"))  # the run's event log (config, summary, history)
    assert (info["name"], info["group"]) == ("run", "")  # a single run: its run folder's name, no group
    assert {p.name.split("_")[0] for p in folder.glob("files/media/table/*.table.json")} == {"summary", "samples"}
    rows = table(folder, "samples")
    assert [r["sample_id"] for r in rows] == ["syn0-00000", "syn0-00001", "syn0-00002"]
    assert [(r["status"], r["warmup"], r["error"]) for r in rows] == [("ok", True, None)] + [("ok", False, None)] * 2
    # every row's images are PNG files of the offline run folder (what `wandb sync` uploads wherever the folder is),
    # logged at the history step the row names
    for r in rows:
        paths = info["history"][r["image_step"]]
        keys = ["samples/source", "samples/gt_mask", "samples/identity/edited", "samples/identity/pred_mask"]
        assert sorted(paths) == sorted(keys)
        for key in keys:
            png = folder / "files" / paths[key]
            assert png.read_bytes()[:4] == b"\x89PNG" and png.name.startswith(
                f"{key.split('/')[-1]}_{r['image_step']}_"
            )
    # a second job in the same process is a separate W&B run (finish() was called) with its own W&B folders
    run(cfg, tmp_path / "run2")
    offline_run(tmp_path / "run2" / "wandb")
    for d in (run_dir, tmp_path / "run2"):
        assert len(list((d / "wandb_files" / "cache").rglob("core-debug-*.log"))) == 1, d
    assert ENV_WARNING not in capfd.readouterr().err
    assert {var: os.environ.get(var) for var, _ in FOLDER_VARS} == before  # the process's environment as it was


def test_wandb_dir_is_honoured(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    cfg = compose(["method=identity", "dataset.limit=1", "logger=wandb", NO_PLOTS], tmp_path, model_cache)
    run(cfg, tmp_path / "run")
    offline_run(tmp_path / "wb" / "wandb")
    assert not (tmp_path / "run" / "wandb").exists()
    assert list((tmp_path / "run" / "wandb_files" / "cache").rglob("core-debug-*.log"))  # W&B's folders: per run


def test_failed_samples_are_rows_with_their_error(tmp_path: Path, model_cache: Path) -> None:
    root = tmp_path / "ds"
    write_dataset(SyntheticDataset(num_samples=3, seed=5), root)
    bad = json.loads((root / "manifest.jsonl").read_text().splitlines()[1])
    (root / bad["image"]).write_bytes(b"not a png")  # the 2nd sample cannot be loaded
    overrides = ["dataset=folder", f"dataset.path={root}", "method=identity", "logger=wandb", NO_PLOTS]
    run(compose(overrides, tmp_path, model_cache), tmp_path / "run")
    errors = {r["sample_id"]: r["error"] for r in load_records(tmp_path / "run")}
    folder, _ = offline_run(tmp_path / "run" / "wandb")
    rows = table(folder, "samples")
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    failed = rows[1]
    assert failed["error"] == errors[failed["sample_id"]] and "field 'image'" in failed["error"]
    assert [failed[c] for c in IMAGE_COLUMNS] == [None] * 4 and failed["image_step"] is None
    assert all(rows[i][c] is not None for i in (0, 2) for c in IMAGE_COLUMNS)


def test_run_identity_names_and_groups_multirun_jobs() -> None:
    job = OmegaConf.create(
        {"sweep": {"dir": "outputs/sweeps/2026-11-21_12-00-00"}, "job": {"num": 2, "override_dirname": "t=0.3"}}
    )
    default = OmegaConf.create({"run_name": None, "group": None})
    assert run_identity(default, Path("outputs/sweeps/2026-11-21_12-00-00/2"), job) == (
        "2026-11-21_12-00-00/2 t=0.3",
        "2026-11-21_12-00-00",
    )
    assert run_identity(default, Path("outputs/runs/2026-11-21_13-00-00"), None) == ("2026-11-21_13-00-00", None)
    own = OmegaConf.create({"run_name": "mine", "group": "ablation"})
    assert run_identity(own, Path("x/2"), job) == ("mine", "ablation")
    assert run_identity(OmegaConf.create({"group": "ablation"}), Path("x/2"), job)[1] == "ablation"


def test_multirun_jobs_are_separate_grouped_runs(tmp_path: Path) -> None:
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    proc = emb(
        "run",
        "-m",
        "method=identity",
        "model=tiny",
        "dataset=synthetic",
        "metrics=default",
        "dataset.limit=1,2",
        "logger=wandb",
        NO_PLOTS,
        cwd=tmp_path,
        env=env,
    )
    assert ENV_WARNING not in proc.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    names = []
    for job in ("0", "1"):
        folder, info = offline_run(sweep / job / "wandb")
        assert info["group"] == sweep.name
        names.append(info["name"])
        # each job's W&B folders are its own, though both jobs ran in one process
        assert len(list((sweep / job / "wandb_files" / "cache").rglob("core-debug-*.log"))) == 1
    assert names[0].startswith(f"{sweep.name}/0 ") and "dataset.limit=1" in names[0]
    assert names[1].startswith(f"{sweep.name}/1 ") and "dataset.limit=2" in names[1]
