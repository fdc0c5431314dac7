"""Issue 20's done-when, through the command line: ``emb run`` two methods, ``emb submit pack`` each, ``emb
leaderboard score`` each and ``emb leaderboard build`` give a board whose numbers are the run's own summary.csv
for the same metric preset; and the commands' one-line errors.

Checked to fail: with ``edit_output`` (score.py) flipping each submitted image left to right, the equality test
failed on the first image metric it compared (identity's background MSE, 0.094 instead of 0).
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import cli_main, emb
from tests.leaderboard_fixtures import files, write_board, write_zip

METHODS = ("identity", "gt_inpaint")
LIMIT = 3
RECORD_METRICS = ("time_s", "nfe", "denoiser_calls")  # from the run's records: self-reported on a board


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("run")
    env = {"EMB_CACHE_DIR": str(root / "cache"), "EMB_MODEL_CACHE": str(model_cache), "OMP_NUM_THREADS": "1"}
    run = root / "run"
    emb(
        "run",
        f"methods=[{','.join(METHODS)}]",
        "model=tiny",
        "dataset=synthetic",
        "metrics=default",
        f"dataset.limit={LIMIT}",
        f"hydra.run.dir={run}",
        cwd=root,
        env=env,
    )
    return run


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_board_numbers_equal_the_runs_own_summary(run_dir: Path, tmp_path: Path, capsys) -> None:
    board = write_board(tmp_path / "board", limit=LIMIT)
    for method in METHODS:
        zip_path = tmp_path / f"{method}.zip"
        assert cli_main("submit", "pack", str(run_dir), str(zip_path), "--method", method) == 0
        assert cli_main("leaderboard", "validate", str(zip_path), "--board", str(board)) == 0
        assert cli_main("leaderboard", "score", str(zip_path), "--board", str(board)) == 0
    assert cli_main("leaderboard", "build", str(board)) == 0
    out = capsys.readouterr().out
    assert f"{LIMIT} samples of identity" in out and "2 entries (2 verified)" in out

    summary = pd.read_csv(run_dir / "summary.csv")
    board_json = json.loads((board / "leaderboard.json").read_text())
    entries = {e["method"]["name"]: e for e in board_json["entries"]}
    assert set(entries) == set(METHODS)
    for method in METHODS:
        run_rows = summary[(summary["method"] == method) & ~summary["metric"].isin(RECORD_METRICS)]
        cells = {(c["metric"], c["edit_type"]): c for c in entries[method]["summary"]}
        assert set(cells) == {(r.metric, r.edit_type) for r in run_rows.itertuples()}
        for r in run_rows.itertuples():
            cell = cells[(r.metric, r.edit_type)]
            mean = math.nan if cell["mean"] is None else float(cell["mean"])
            assert same(mean, float(r.mean)), (method, r.metric, r.edit_type, mean, r.mean)
            assert (cell["n"], cell["failures"]) == (r.n, r.failures)
        for metric in ("time_s", "nfe"):  # carried as self-reported, equal to the run's means
            run_mean = summary[(summary.method == method) & (summary.edit_type == "all") & (summary.metric == metric)]
            reported = entries[method]["self_reported"][f"{metric}_per_image"]
            assert same(reported, float(run_mean["mean"].iloc[0]))
        psnr = summary[
            (summary.method == method) & (summary.edit_type == "all") & (summary.metric == "psnr_background")
        ]
        shown = entries[method]["values"]["m:psnr_background"]
        assert same(float(shown), float(psnr["mean"].iloc[0]))
    rows = pd.read_parquet(board / "samples.parquet")
    run_long = pd.read_parquet(run_dir / "samples.parquet")
    assert len(rows) == len(run_long[~run_long["metric"].isin(RECORD_METRICS)])
    assert (board / "site" / "index.html").exists()


def test_pack_needs_a_method_when_the_run_has_several(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert cli_main("submit", "pack", str(run_dir), str(tmp_path / "x.zip")) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {run_dir}: 2 methods (gt_inpaint, identity); choose one with --method"
    assert not (tmp_path / "x.zip").exists()


def test_packed_zip_holds_only_the_format(run_dir: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "gt.zip"
    assert cli_main("submit", "pack", str(run_dir), str(zip_path), "--method", "gt_inpaint") == 0
    names = zipfile.ZipFile(zip_path).namelist()
    assert names[0] == "submission.json"
    folders = {n.split("/")[0] for n in names[1:]}
    assert folders == {"edited", "masks", "soft_masks"} and len(names) == 1 + 3 * LIMIT
    manifest = json.loads(zipfile.ZipFile(zip_path).read("submission.json"))
    results = json.loads((run_dir / "results.json").read_text())
    assert manifest["dataset"] == {"name": "synthetic", "checksum": results["dataset"]["checksum"]}
    assert manifest["harness"]["method_config"]["name"] == "gt_inpaint" and manifest["seed"] == 0


def test_validate_prints_one_line_per_problem_and_exits_1(tmp_path: Path, capsys) -> None:
    zip_path = write_zip(tmp_path / "bad.zip", {**files(), "../evil.png": b"x", "C:/evil.png": b"x"})
    assert cli_main("leaderboard", "validate", str(zip_path)) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "../evil.png: '..' in the path (it would write outside the folder)",
        "C:/evil.png: absolute path",
    ]
    assert not (tmp_path / "evil.png").exists()


def test_score_refuses_another_dataset_with_one_line(tmp_path: Path, capsys) -> None:
    board = write_board(tmp_path / "board")
    zip_path = write_zip(tmp_path / "sub.zip", files(ids=("syn0-00000",)))  # its checksum is not synthetic's
    assert cli_main("leaderboard", "score", str(zip_path), "--board", str(board)) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("submission.json: field 'dataset.checksum': cccccccccccc… (synthetic) is not this board's")
    assert not (board / "entries").exists()


def test_board_errors_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    zip_path = write_zip(tmp_path / "sub.zip", files())
    assert cli_main("leaderboard", "score", str(zip_path), "--board", str(tmp_path / "nowhere")) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'nowhere' / 'board.yaml'}: missing (a board is a folder with board.yaml)"
    )


def test_schema_is_the_manifest_model(capsys) -> None:
    assert cli_main("leaderboard", "schema") == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "SubmissionManifest"
    assert set(schema["required"]) == {"format", "format_version", "method", "dataset"}
