"""``run.reuse_cache=false`` computes (and re-times) every sample; reused times are said to be old ones."""

from __future__ import annotations

from pathlib import Path

from benchmark.cli.run import ConsoleEvents
from benchmark.runner import run
from benchmark.store import load_records
from tests.conftest import compose


def test_reuse_cache_false_recomputes_and_retimes(tmp_path: Path, model_cache: Path, capsys) -> None:
    base = ["method=gt_inpaint", "dataset.limit=2", "method.num_inference_steps=2"]
    run(compose(base, tmp_path, model_cache), tmp_path / "a")
    run(compose(base, tmp_path, model_cache), tmp_path / "b", events=ConsoleEvents())
    assert "0 computed, reused 2 cached samples, 0 failed (their times are from when" in capsys.readouterr().out
    run(compose([*base, "run.reuse_cache=false"], tmp_path, model_cache), tmp_path / "c", events=ConsoleEvents())
    out = capsys.readouterr().out
    assert "2 computed, reused 0 cached samples, 0 failed\n" in out
    times = {d: [r["time_s"] for r in load_records(tmp_path / d)] for d in "abc"}
    assert times["b"] == times["a"] and times["c"] != times["a"]
    # the recomputed entries replaced the cached ones: the next default run reuses the new times
    run(compose(base, tmp_path, model_cache), tmp_path / "d")
    assert [r["time_s"] for r in load_records(tmp_path / "d")] == times["c"]


def test_a_run_into_an_earlier_runs_folder_sets_its_records_aside(tmp_path: Path, model_cache: Path) -> None:
    """A fixed hydra.run.dir used twice: the second run's tables hold only its own methods."""
    import pandas as pd

    run(compose(["method=identity", "dataset.limit=2"], tmp_path, model_cache), tmp_path / "run")
    run(
        compose(["method=gt_inpaint", "dataset.limit=2", "method.num_inference_steps=2"], tmp_path, model_cache),
        tmp_path / "run",
    )
    assert {r["method"] for r in load_records(tmp_path / "run")} == {"gt_inpaint"}
    assert set(pd.read_parquet(tmp_path / "run" / "samples.parquet")["method"]) == {"gt_inpaint"}
    earlier = (tmp_path / "run" / "records.previous-1.jsonl").read_text().splitlines()
    assert len(earlier) == 2 and all('"method": "identity"' in line for line in earlier)
    # its sample folders went with them: samples/ is this run's, so rebuilding lost lines from it is safe
    assert {p.name for p in (tmp_path / "run" / "samples").iterdir()} == {"gt_inpaint"}
    assert {p.name for p in (tmp_path / "run" / "samples.previous-1").iterdir()} == {"identity"}
