"""The run folder has one owner (benchmark/rundir.py): its file names appear nowhere else, its records keep their
JSON keys, and its format version is read (an unversioned folder is format 1) or refused in one line."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from benchmark.rundir import FORMAT_FILE, FORMAT_VERSION, RunFolder, SampleRecord, failed_record
from benchmark.runner import run
from tests.conftest import ROOT, cli_main, compose

# every name of a file or folder inside a run folder (or a sweep root)
RUN_FOLDER_NAMES = (
    "records.jsonl",
    "results.json",
    "samples.parquet",
    "summary.csv",
    "summary.md",
    "summary.tex",
    "sample_fingerprints.json",
    "report.md",
    "report.csv",
    "report.html",
    "score.log",
    "job_error.txt",
    "sweep.json",
    "run_format.json",
    "edited.png",
    "mask.png",
    "soft_mask.npz",
    "record.json",
    ".previous-",  # records.previous-N.jsonl, samples.previous-N/, scores.previous-N/
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def run_folder_names_outside_the_owner(root: Path) -> list[str]:
    """``file:line name`` for every string literal of ``root/benchmark/**/*.py`` (docstrings aside, f-string parts
    included) outside rundir.py that holds a run-folder file name, and every ``... / "samples"`` path."""
    hits = []
    for path in sorted((root / "benchmark").rglob("*.py")):
        if path.name == "rundir.py" and path.parent.name == "benchmark":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        where = path.relative_to(root)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                hits += [f"{where}:{node.lineno} {name}" for name in RUN_FOLDER_NAMES if name in node.value]
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                if isinstance(node.right, ast.Constant) and node.right.value == "samples":
                    hits.append(f"{where}:{node.lineno} samples/")
    return hits


def test_run_folder_file_names_appear_only_in_rundir() -> None:
    """Checked to fail: on the tree before rundir.py existed (f1e0d49) it lists 75 literals in runner.py, store.py,
    tables.py, cli.py, app.py, reports.py, hydra_callbacks.py and the W&B logger."""
    assert run_folder_names_outside_the_owner(ROOT) == []


def test_the_check_sees_a_name_in_an_fstring_and_a_samples_path(tmp_path: Path) -> None:
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "x.py").write_text(
        '"""records.jsonl in a docstring is documentation."""\n'
        'def f(d, n):\n    """So is mask.png here."""\n    return f"{d}/results.json", d / "samples" / n\n'
    )
    assert run_folder_names_outside_the_owner(tmp_path) == [
        "benchmark/x.py:4 results.json",
        "benchmark/x.py:4 samples/",
    ]


# lines as the runner wrote them before records were typed: an ok sample and a sample that failed to load
OK_LINE = (
    '{"method": "gt_inpaint", "sample_id": "syn0-00000", "edit_type": "replace_shape", "seed": 372297385, '
    '"config_hash": "e7cd", "code_version": "0.1.0+01d043b5f19f", "key": "f290", "status": "ok", "error": null, '
    '"time_s": 1.687, "warmup": true, "nfe": 4, "denoiser_calls": 2, "has_image": true, "has_mask": true, '
    '"extras": {"mask_origin": "gt"}, "artifacts": "samples/gt_inpaint/syn0-00000"}'
)
FAILED_LINE = (
    '{"method": "identity", "sample_id": "s1", "edit_type": "unknown", "seed": null, "config_hash": "ab", '
    '"code_version": "0.1.0", "status": "failed", "error": "images/s1.png: field \'image\': cannot decode", '
    '"time_s": null, "warmup": false, "nfe": null, "denoiser_calls": null}'
)


@pytest.mark.parametrize("line", [OK_LINE, FAILED_LINE], ids=["ok", "failed"])
def test_a_record_line_reads_and_writes_back_key_for_key(line: str) -> None:
    data = json.loads(line)
    record = SampleRecord.from_json(data)
    assert record.to_json() == data and list(record.to_json()) == list(data)  # same keys, same order


def test_a_failure_record_has_the_keys_of_a_failure_line() -> None:
    known = SampleRecord(method="identity", sample_id="s1", status="failed", config_hash="ab", code_version="0.1.0")
    line = failed_record(known, "images/s1.png: field 'image': cannot decode").to_json()
    assert line == json.loads(FAILED_LINE)


def test_a_record_field_of_the_wrong_type_is_named() -> None:
    with pytest.raises(ValueError, match=r"^field 'nfe': not a number \('four'\)$"):
        SampleRecord.from_json({**json.loads(OK_LINE), "nfe": "four"})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("format")
    run(compose(["method=identity", "dataset.limit=2"], tmp, model_cache), tmp / "run")
    return tmp / "run"


def test_a_run_stamps_its_format_version(finished: Path) -> None:
    assert json.loads((finished / FORMAT_FILE).read_text()) == {"format_version": FORMAT_VERSION}
    assert json.loads((finished / "results.json").read_text())["format_version"] == FORMAT_VERSION


def test_an_unversioned_run_folder_is_read_as_format_1(finished: Path, tmp_path: Path) -> None:
    """A folder written before versions were stamped (no marker, no results.json key) is read as it was."""
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    (old / FORMAT_FILE).unlink()
    results = json.loads((old / "results.json").read_text())
    del results["format_version"]
    (old / "results.json").write_text(json.dumps(results, indent=2))
    assert RunFolder(old).format_version() == 1
    assert cli_main("score", str(old)) == 0
    assert cli_main("table", str(old)) == 0


def test_a_run_folder_of_another_format_is_refused_in_one_line(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    newer = tmp_path / "newer"
    shutil.copytree(finished, newer)
    (newer / FORMAT_FILE).write_text(json.dumps({"format_version": 99}))
    line = (
        f"{newer}: run folder format 99, this emb reads {FORMAT_VERSION}; read it with the emb version that wrote "
        "it (results.json's provenance names it)"
    )
    before = (newer / "samples.parquet").read_bytes()
    assert cli_main("score", str(newer)) == 2
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")] == [f"error: {line}"]
    assert (newer / "samples.parquet").read_bytes() == before  # nothing rewritten
    assert cli_main("report", str(newer), "--published", "instdiffedit_editing_mask") == 2
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")] == [f"error: {line}"]
    caplog.clear()
    assert cli_main("table", str(newer)) == 1  # left out of the merge with the same line, as a damaged run is
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [line]
