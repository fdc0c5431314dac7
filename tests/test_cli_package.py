"""The command line as a package: each command in its module, both entry points, the shared one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import build_parser
from benchmark.types import SampleError, error_line
from tests.conftest import ROOT, cli_main


def test_python_m_benchmark_is_the_run_app() -> None:
    """``python -m benchmark`` is ``emb run``: Hydra's own --cfg job prints the composed config without running."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "--cfg", "job", "method=identity", "model=tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: identity" in proc.stdout and "methods:" in proc.stdout


def test_toyworld_train_passes_stages_only_when_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--stage NAME`` (repeatable) becomes ``train(stages=(...))``; without it ``train`` gets no ``stages`` and
    trains every stage (its own default). ``train`` is replaced by a recorder: the training itself is tested in
    test_toyworld.py."""
    from benchmark.toyworld import train as toy_train

    calls: list[dict] = []
    monkeypatch.setattr(toy_train, "train", lambda out, **kwargs: calls.append(kwargs) or out / "model")
    assert cli_main("toyworld", "train", "--out", str(tmp_path), "--stage", "clip", "--stage", "vae") == 0
    assert cli_main("toyworld", "train", "--out", str(tmp_path)) == 0
    assert calls[0]["stages"] == ("clip", "vae") and "stages" not in calls[1]


def test_every_command_is_in_the_parser() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    assert list(sub.choices) == [
        "run",
        "score",
        "report",
        "table",
        "data",
        "toyworld",
        "submit",
        "leaderboard",
        "convert",
    ]
    args = build_parser().parse_args(["score", "RUN", "metrics=pie_bench", "--out", "o"])
    assert (args.run_dir, args.overrides, args.out) == ("RUN", ["metrics=pie_bench"], "o")


def test_one_error_line_function_for_every_call_site() -> None:
    """The three former helpers' outputs: types.error_line (first line), runner.first_line (with the type, except
    for a SampleError), cli._one_line (all lines joined, Hydra's search path listing cut)."""
    err = ValueError("bad input\nsecond line")
    assert error_line(err) == "bad input"
    assert error_line(ValueError("")) == "ValueError"
    assert error_line(err, with_type=True) == "ValueError: bad input"
    assert error_line(SampleError("a.png: field 'image': cannot decode"), with_type=True) == (
        "a.png: field 'image': cannot decode"
    )
    hydra = ValueError("In 'config': Could not find 'metrics/nosuch'\n\nAvailable options: a\nConfig search path:\n\tx")
    assert error_line(hydra, joined=True) == "In 'config': Could not find 'metrics/nosuch' Available options: a"
