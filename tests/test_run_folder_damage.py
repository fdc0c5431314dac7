"""Damaged run folders and changed datasets: one line naming the file, nothing already computed lost.

One real finished run (identity and gt_inpaint on 3 synthetic samples, made by the command line so it has Hydra's
``.hydra/``) is copied and damaged per test; ``emb score`` / ``table`` / ``report`` run through ``cli.main``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from benchmark.datasets.synthetic import SyntheticDataset, write_dataset
from benchmark.runner import run
from benchmark.store import load_records
from tests.conftest import cli_main, compose, emb

OUTPUTS = ("samples.parquet", "summary.csv", "summary.md", "results.json")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("finished")
    env = {"EMB_CACHE_DIR": str(root / "cache"), "EMB_MODEL_CACHE": str(model_cache)}
    emb(
        "run",
        "model=tiny",
        "dataset=synthetic",
        "metrics=default",
        "methods=[identity,{gt_inpaint:{num_inference_steps:2}}]",
        "dataset.limit=3",
        f"hydra.run.dir={root / 'run'}",
        cwd=root,
        env=env,
    )
    return root / "run"


@pytest.fixture
def copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run to damage (``cp -a``, as the reviewer did)."""
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest, symlinks=True)
    return dest


def _errors(err: str) -> list[str]:
    return [line for line in err.strip().splitlines() if line.startswith("error:")]


def _all(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "summary.csv").query("edit_type == 'all'").set_index(["method", "metric"])


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


# 1. records.jsonl


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_score_without_readable_records_is_one_line_and_writes_nothing(
    damage: str, copy: Path, capsys: pytest.CaptureFixture
) -> None:
    before = {name: (copy / name).read_bytes() for name in OUTPUTS}
    records = copy / "records.jsonl"
    if damage == "emptied":
        records.write_text("")
    else:
        records.unlink()
    assert cli_main("score", str(copy)) == 2
    assert _errors(capsys.readouterr().err) == [
        f"error: {records}: no readable records (file missing or empty); nothing to score, the run's tables are "
        "left as they were"
    ]
    assert {name: (copy / name).read_bytes() for name in OUTPUTS} == before


def test_unreadable_record_lines_are_named_and_rebuilt_from_the_sample_folders(
    copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = copy / "records.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    intact, summary = load_records(copy), pd.read_csv(copy / "summary.csv")
    no_method = json.loads(lines[2])
    del no_method["method"]
    lines[1] = lines[1][: len(lines[1]) // 2]  # a middle line cut in half
    lines[2] = json.dumps(no_method)  # readable JSON without a required key: unreadable too, not a KeyError
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # the last line cut off, as by kill -9
    with caplog.at_level(logging.INFO, logger="emb"):
        records = load_records(copy)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3
    assert warned[0].startswith(f"{path}:2: unreadable record") and "not JSON" in warned[0]
    assert warned[1] == f"{path}:3: unreadable record, left out: field 'method': missing"
    assert warned[2] == f"{path}: 3 record(s) rebuilt from samples/*/*/record.json"
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"{path}:6: cut off (the sample in flight when the run was stopped); left out"]
    # nothing finished is lost: the three damaged lines came back from the samples' record.json, field for field
    key = lambda r: (r["method"], r["sample_id"])  # noqa: E731
    assert sorted(records, key=key) == sorted(intact, key=key)
    # and the run's tables are what they were
    assert cli_main("score", str(copy)) == 0
    pd.testing.assert_frame_equal(pd.read_csv(copy / "summary.csv"), summary)


# 2. the dataset changed after the run


def test_rescore_after_the_dataset_changed_warns_and_counts_the_lost_sample(
    tmp_path: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "ds"
    write_dataset(SyntheticDataset(num_samples=3, seed=3), data)
    run_dir = tmp_path / "run"
    run(compose(["dataset=folder", f"dataset.path={data}", "method=identity"], tmp_path, model_cache), run_dir)
    assert _all(run_dir).loc[("identity", "iou"), "failures"] == 0
    entries = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    Image.new("L", (64, 64), 255).save(data / entries[0]["mask"])  # a GT mask overwritten
    (data / entries[1]["image"]).unlink()  # an image deleted
    caplog.clear()
    assert cli_main("score", str(run_dir)) == 0
    changed = _warnings(caplog, "changed since the run was scored")
    assert len(changed) == 1 and changed[0].startswith(f"sample {entries[0]['id']}: ")
    lost = _warnings(caplog, "cannot be scored")
    assert len(lost) == 1 and entries[1]["id"] in lost[0] and str(data / entries[1]["image"]) in lost[0]
    s = _all(run_dir)
    assert s.loc[("identity", "iou"), "n"] == 2 and s.loc[("identity", "iou"), "failures"] == 1
    # a second re-score still compares with the content the run was made from
    caplog.clear()
    assert cli_main("score", str(run_dir)) == 0
    assert len(_warnings(caplog, "changed since the run was scored")) == 1


# 3. damaged tables and artifacts


def test_truncated_results_json_falls_back_and_tables_go_on(
    copy: Path, finished_run: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    results = copy / "results.json"
    results.write_text(results.read_text()[:200])
    assert cli_main("table", str(finished_run), str(copy)) == 0
    out = capsys.readouterr().out
    assert "gt_inpaint" in out and "identity" in out
    assert len(_warnings(caplog, f"{results}: unreadable")) == 1
    assert cli_main("report", str(copy), "--published", "instdiffedit_editing_mask") == 2
    assert _errors(capsys.readouterr().err) == [
        f"error: {results}: unreadable (Expecting value: line 11 column 18 (char 200)); `emb score {copy}` rewrites it"
    ]
    # the config comes from .hydra/config.yaml; the re-score rewrites results.json
    assert cli_main("score", str(copy)) == 0
    assert json.loads(results.read_text())["config"]["dataset"]["limit"] == 3
    assert _all(copy).loc[("gt_inpaint", "iou"), "n"] == 3


def test_truncated_samples_parquet_is_one_line_with_the_way_back(
    copy: Path, finished_run: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    parquet = copy / "samples.parquet"
    parquet.write_bytes(parquet.read_bytes()[:300])
    assert cli_main("table", str(copy)) == 1
    assert _errors(capsys.readouterr().err) == [f"error: no readable samples.parquet found under {copy}"]
    (line,) = _warnings(caplog, str(parquet))
    assert line.endswith(f"run left out; `emb score {copy}` rebuilds it from records.jsonl")
    caplog.clear()
    assert cli_main("table", str(finished_run), str(copy)) == 1  # the good run's table, and a non-zero exit
    assert "gt_inpaint" in capsys.readouterr().out
    assert cli_main("score", str(copy)) == 0  # the hint is true
    assert cli_main("table", str(copy)) == 0


def test_corrupt_or_deleted_edited_image_fails_that_sample_only(copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    corrupt = copy / "samples" / "gt_inpaint" / "syn0-00001" / "edited.png"
    corrupt.unlink()  # a hard link into the cache: replace it, do not write through it
    corrupt.write_bytes(b"not a png")
    deleted = copy / "samples" / "identity" / "syn0-00002" / "edited.png"
    deleted.unlink()
    assert cli_main("score", str(copy)) == 0
    lost = _warnings(caplog, "cannot be scored")
    assert len(lost) == 2
    assert any(str(corrupt) in line and "syn0-00001 (gt_inpaint)" in line for line in lost)
    assert any(str(deleted) in line and "missing" in line for line in lost)
    s = _all(copy)
    for method in ("gt_inpaint", "identity"):
        assert s.loc[(method, "psnr_whole"), "n"] == 2 and s.loc[(method, "psnr_whole"), "failures"] == 1


# 4.–6. command-line errors


def test_score_with_an_unknown_metrics_preset_is_one_line(finished_run: Path, tmp_path: Path) -> None:
    bad = emb("score", str(finished_run), "metrics=nosuch", "--out", str(tmp_path / "o"), cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    (line,) = _errors(bad.stderr)
    assert line.startswith("error: In 'config': Could not find 'metrics/nosuch'") and "pie_bench" in line


def test_table_with_an_unknown_edit_type_is_one_line(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main("table", str(finished_run), "--edit-type", "nope") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _errors(captured.err) == [
        "error: --edit-type nope: not in these runs; edit types: all, change_background, change_colour, replace_shape"
    ]


def test_failed_rescore_leaves_no_out_folder(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    preset = tmp_path / "needs_weights.yaml"
    preset.write_text(json.dumps({"metrics": [{"name": "lpips", "backbone_weights": str(tmp_path / "none.pth")}]}))
    out = tmp_path / "rescore"
    assert cli_main("score", str(finished_run), "--metrics-file", str(preset), "--out", str(out)) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert str(tmp_path / "none.pth") in line
    assert not out.exists()


def test_rescore_prints_each_line_once(finished_run: Path, tmp_path: Path) -> None:
    """open_clip logs on the root logger, which (with no root handler) installs Python's default stderr handler:
    every INFO line of ours then printed twice, once as 'INFO:emb:...'."""
    proc = emb("score", str(finished_run), "--out", str(tmp_path / "toy"), "metrics=toyworld", cwd=tmp_path)
    assert "INFO:emb:" not in proc.stderr + proc.stdout
    assert (tmp_path / "toy" / "summary.csv").exists()


def test_rescore_with_two_entries_of_a_family(finished_run: Path, tmp_path: Path) -> None:
    """Two clip_score entries (other regions) both give the prompt-truncation flag, equal: scored. Two ssim
    entries giving `ssim_whole` different values: one line naming both entries, nothing written."""
    toy_clip = (
        "{name: clip_score, model: toyworld_clip, model_config: data/toyworld/clip/toyworld_clip.json, "
        "pretrained: data/toyworld/clip/open_clip_model.safetensors, scale: 100, region: [%s]}"
    )
    root = Path(__file__).resolve().parent.parent
    agree = tmp_path / "agree.yaml"
    agree.write_text(f"metrics:\n  - {toy_clip % 'whole'}\n  - {toy_clip % 'edit'}\n")
    emb("score", str(finished_run), "--out", str(tmp_path / "agree"), "--metrics-file", str(agree), cwd=root)
    metrics = set(pd.read_csv(tmp_path / "agree" / "summary.csv")["metric"])
    assert {"clip_score_whole", "clip_score_edit", "clip_prompt_truncated"} <= metrics
    clash = tmp_path / "clash.yaml"
    clash.write_text("metrics:\n  - {name: ssim, region: [whole]}\n  - {name: ssim, region: [whole], resolution: 16}\n")
    proc = emb(
        "score",
        str(finished_run),
        "--out",
        str(tmp_path / "clash"),
        "--metrics-file",
        str(clash),
        cwd=root,
        check=False,
    )
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1
    assert errors[0] == (
        "error: metrics: entries 0 (ssim) and 1 (ssim) both produce 'ssim_whole'; give one a `prefix` or another "
        "region/source so their values keep apart"
    )
    assert not (tmp_path / "clash").exists()
