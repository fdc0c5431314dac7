"""Boards: re-scoring submissions through the harness and building leaderboard.json, the parquet and the site.

The figures checked are worked out by hand from what each submission is: a copy of the source image with an empty
mask (the identity method: IoU 0 against a non-empty GT mask, background PSNR infinite) and the dataset's own correct
edit with the GT mask (IoU 1, PSNR against the correct edit infinite). Checked to fail by leaving the submitted
masks out of the re-scored run folder (``write_run_folder``): the figures test then found no IoU at all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.leaderboard.board import BoardError, load_board, read_score
from benchmark.leaderboard.build import build_board
from benchmark.leaderboard.problems import SubmissionError
from benchmark.leaderboard.score import score_submission
from benchmark.leaderboard.validate import opened_submission
from tests.leaderboard_fixtures import BOARD_LIMIT, dataset_submission, write_board


def score(path: Path, board: Path):
    with opened_submission(path) as sub:
        return score_submission(sub, board)


def cell(entry, metric: str, edit_type: str = "all"):
    return next(c for c in entry.score.summary if c.metric == metric and c.edit_type == edit_type)


@pytest.fixture(scope="module")
def scored_board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("board")
    board = write_board(root / "board")
    for kind, name in (("copy", "copy source"), ("correct", "correct edit")):
        score(dataset_submission(root / f"{kind}.zip", kind, name, description="<script>x()</script>"), board)
    return board


def test_rescored_figures_are_the_ones_worked_out_by_hand(scored_board: Path) -> None:
    entries = {
        read_score(p / "score.json").entry_id: read_score(p / "score.json") for p in scored_board.glob("entries/*")
    }
    by_name = {
        json.loads((scored_board / "entries" / i / "submission.json").read_text())["method"]["name"]: s
        for i, s in entries.items()
    }
    copy, correct = by_name["copy source"], by_name["correct edit"]

    def mean(score, metric):
        return next(c.mean for c in score.summary if c.metric == metric and c.edit_type == "all")

    assert mean(copy, "iou") == 0.0 and mean(correct, "iou") == 1.0
    assert mean(copy, "psnr_background") == "inf"  # the source itself: no pixel changed
    assert mean(correct, "psnr_whole_vs_target") == "inf"  # the correct edit itself
    assert copy.samples_expected == BOARD_LIMIT and copy.samples_missing == []
    assert {c.edit_type for c in copy.summary} >= {"all"} and len({c.edit_type for c in copy.summary}) > 1


def test_build_ranks_verified_entries_and_keeps_every_row(scored_board: Path) -> None:
    built = build_board(scored_board)
    board_json = json.loads((scored_board / "leaderboard.json").read_text())
    assert [e["method"]["name"] for e in board_json["entries"]] == ["correct edit", "copy source"]
    assert [e["rank"] for e in board_json["entries"]] == [1, 2]
    assert all(e["verified"] for e in board_json["entries"])
    assert board_json["entries"][1]["values"]["m:psnr_background"] == "inf"
    assert board_json["entries"][0]["self_reported"]["nfe_per_image"] == 50
    rows = pd.read_parquet(scored_board / "samples.parquet")
    assert set(rows["entry_id"]) == {e.entry_id for e in built.entries}
    assert rows.groupby("entry_id")["sample_id"].nunique().tolist() == [BOARD_LIMIT, BOARD_LIMIT]
    index = (scored_board / "site" / "index.html").read_text()
    block = index.split('<script type="application/json" id="board-data">')[1].split("</script>")[0]
    assert json.loads(block)["rows"][0][1] == "correct edit"
    page = next((scored_board / "site" / "entries").glob("copy-source-*.html")).read_text()
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>x()" not in page
    media = list((scored_board / "site" / "media").glob("*/*.png"))
    assert len(media) == 2 * 2 * 3  # two entries, two grid samples, source / edited / mask overlay


def test_a_changed_metric_preset_unverifies_older_scores(scored_board: Path, tmp_path: Path) -> None:
    import shutil

    board = tmp_path / "board"
    shutil.copytree(scored_board, board)
    write_board(board, metrics={"preset": "editing_mask"})
    built = build_board(board)
    assert [e.verified for e in built.entries] == [False, False]
    assert all("another metric preset" in (e.unverified_reason or "") for e in built.entries)
    assert [e.rank for e in built.entries] == [None, None]


def test_rescoring_the_same_submission_replaces_its_entry(tmp_path: Path) -> None:
    board = write_board(tmp_path / "board")
    path = dataset_submission(tmp_path / "copy.zip", "copy", "copy source")
    first = score(path, board)
    second = score(path, board)
    assert first.entry_id == second.entry_id
    assert [p.name for p in (board / "entries").iterdir()] == [first.entry_id]


def test_missing_samples_are_failures_under_fail(tmp_path: Path) -> None:
    board = write_board(tmp_path / "board", missing_samples="fail")
    entry = score(dataset_submission(tmp_path / "c.zip", "correct", "partial", skip=("syn0-00001",)), board)
    assert entry.score.samples_missing == ["syn0-00001"]
    iou = cell(entry, "iou")
    assert (iou.n, iou.failures, iou.mean) == (BOARD_LIMIT - 1, 1, 1.0)
    rows = pd.read_parquet(entry.folder / "samples.parquet")
    failed = rows[rows["status"] == "failed"]
    assert failed["sample_id"].tolist() == ["syn0-00001"]


def test_missing_samples_refused_under_refuse(tmp_path: Path) -> None:
    board = write_board(tmp_path / "board", missing_samples="refuse")
    with pytest.raises(SubmissionError) as refused:
        score(dataset_submission(tmp_path / "c.zip", "correct", "partial", skip=("syn0-00001",)), board)
    assert refused.value.problems == ("edited/syn0-00001.png: missing (this board refuses incomplete submissions)",)
    assert not (board / "entries").exists()  # nothing written to the board


def test_board_whose_data_changed_is_refused(tmp_path: Path) -> None:
    board = write_board(tmp_path / "board")
    config = (board / "board.yaml").read_text()
    (board / "board.yaml").write_text(config.replace("limit: 3", "limit: 3\n    size: 32"))
    with pytest.raises(BoardError, match=r"board.yaml: field 'dataset.checksum': the dataset built here has checksum"):
        score(dataset_submission(tmp_path / "c.zip", "copy", "copy"), board)


def test_board_yaml_errors_name_the_field(tmp_path: Path) -> None:
    board = write_board(tmp_path / "board", ranking={"metric": "iou", "direction": "up"})
    with pytest.raises(BoardError, match=r"board.yaml: field 'ranking.direction': Input should be 'higher' or 'lower'"):
        load_board(board)
    write_board(board, edit_type_columns=["lpips"])
    with pytest.raises(BoardError, match="field 'edit_type_columns': lpips is not one of columns"):
        load_board(board)


def test_inf_and_nan_survive_the_round_trip(scored_board: Path) -> None:
    from benchmark.leaderboard.board import as_float, json_number

    assert [json_number(v) for v in (math.inf, -math.inf, math.nan, 1.5)] == ["inf", "-inf", None, 1.5]
    assert math.isinf(as_float("inf")) and math.isnan(as_float(None))


def test_json_in_the_page_cannot_close_its_script_block() -> None:
    from benchmark.leaderboard.site import json_for_script

    data = {"name": "</script><script>alert(1)</script><!-- \u2028 & é"}
    text = json_for_script(data)
    assert not set("<>&\u2028") & set(text)
    assert json.loads(text) == data
