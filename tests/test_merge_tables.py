"""Merging runs (`emb table`, a sweep's merged summary) counts each sample once, keeps dataset-level values, names
the run folders of every row, and refuses what it cannot read as one line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.tables import merge_runs, pivot, summary_keys
from tests.conftest import cli_main, emb


def _fake_run(
    folder: Path, overrides: list[str], values: list[float], fid: float | None = None, first: int = 0
) -> Path:
    """A finished run folder as `emb run` leaves it, for the parts merging reads: per-sample rows, the summary's
    dataset-level values, and Hydra's overrides."""
    folder.mkdir(parents=True)
    rows = [
        {
            "method": "m",
            "sample_id": f"s{i}",
            "edit_type": "t",
            "status": "ok",
            "warmup": False,
            "metric": "iou",
            "value": v,
        }
        for i, v in enumerate(values, start=first)
    ]
    pd.DataFrame(rows).to_parquet(folder / "samples.parquet")
    summary = [
        {"method": "m", "edit_type": "all", "metric": "iou", "mean": sum(values) / len(values), "n": len(values)}
    ]
    if fid is not None:
        summary.append({"method": "m", "edit_type": "all", "metric": "fid", "mean": fid, "n": len(values)})
    pd.DataFrame(summary).to_csv(folder / "summary.csv", index=False)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "results.json").write_text("{}")
    (folder / "records.jsonl").write_text("")  # how a sweep's jobs are found
    return folder


def test_the_same_samples_in_two_runs_are_counted_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = _fake_run(tmp_path / "a", ["method=m"], [0.1, 0.5, 0.9])
    shutil.copytree(a, tmp_path / "b")  # a rerun into another folder that reused every cached sample
    alone = merge_runs([a]).query("metric == 'iou' and edit_type == 'all'").iloc[0]
    with caplog.at_level(logging.WARNING, logger="emb"):
        both = merge_runs([a, tmp_path / "b"]).query("metric == 'iou' and edit_type == 'all'").iloc[0]
    assert (both["n"], both["ci95"]) == (alone["n"], alone["ci95"]) == (3, alone["ci95"])
    assert [r.getMessage() for r in caplog.records] == [
        "3 sample(s) are in more than one of the merged runs under the same settings (e.g. m/s0 in a and b); each is "
        "counted once, from the first run where it finished"
    ]
    # the same folder named twice (a sweep and one of its jobs) is one run, silently
    caplog.clear()
    assert merge_runs([a, a]).query("metric == 'iou' and edit_type == 'all'").iloc[0]["n"] == 3
    assert not caplog.records


def test_a_rerun_that_finished_a_failed_sample_counts_it_once_as_finished(tmp_path: Path) -> None:
    """Run A failed s0; its rerun B (another folder) finished it: s0 is scored (B's rows), not also a failure."""
    a = _fake_run(tmp_path / "a", ["method=m"], [0.1, 0.5])
    long = pd.read_parquet(a / "samples.parquet")
    failed = {"method": "m", "sample_id": "s0", "edit_type": "t", "status": "failed", "warmup": False}
    long = pd.concat([long[long["sample_id"] != "s0"], pd.DataFrame([{**failed, "metric": "failed", "value": 1.0}])])
    long.to_parquet(a / "samples.parquet")
    _fake_run(tmp_path / "b", ["method=m"], [0.3, 0.5])
    row = merge_runs([a, tmp_path / "b"]).query("metric == 'iou' and edit_type == 'all'").iloc[0]
    assert (row["n"], row["failures"], row["mean"]) == (2, 0, 0.4)


def test_runs_of_two_sweeps_are_labelled_apart(tmp_path: Path) -> None:
    _fake_run(tmp_path / "sweep_a" / "0", ["method=m", "metrics.threshold=0.1"], [0.2])
    _fake_run(tmp_path / "sweep_b" / "0", ["method=m", "metrics.threshold=0.3"], [0.3])
    merged = merge_runs([tmp_path / "sweep_a", tmp_path / "sweep_b"])
    assert set(merged["runs"]) == {"sweep_a/0", "sweep_b/0"}


def test_shards_still_pool_and_every_row_names_its_runs(tmp_path: Path) -> None:
    _fake_run(tmp_path / "sweep" / "0", ["method=m", "dataset.shard=0/2"], [0.0, 1.0])
    _fake_run(tmp_path / "sweep" / "1", ["method=m", "dataset.shard=1/2"], [0.5, 0.5], first=2)  # samples s2, s3
    merged = merge_runs([tmp_path / "sweep"])
    row = merged.query("metric == 'iou' and edit_type == 'all'").iloc[0]
    assert row["n"] == 4 and row["runs"] == "0;1"
    assert summary_keys(merged) == ("method",)  # `runs` traces rows, it is not a key
    assert pivot(merged, ("method",)).loc["m", "runs"] == "0;1"


def test_dataset_level_values_survive_merging_runs_with_other_override_keys(tmp_path: Path) -> None:
    """A sweep over a threshold beside a run without that override: the FID of each stays in the printed table."""
    _fake_run(tmp_path / "sweep" / "0", ["method=m", "metrics.threshold=0.1"], [0.2, 0.4], fid=1.25)
    _fake_run(tmp_path / "sweep" / "1", ["method=m", "metrics.threshold=0.3"], [0.3, 0.5], fid=1.21)
    _fake_run(tmp_path / "other", ["method=m"], [0.6, 0.8], fid=1.26)
    merged = merge_runs([tmp_path / "sweep", tmp_path / "other"])
    table = pivot(merged, summary_keys(merged))
    assert sorted(table["fid"].tolist()) == ["1.21", "1.25", "1.26"]


def test_table_and_report_refuse_what_they_cannot_read_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _fake_run(tmp_path / "sweep" / "0", ["method=m", "metrics.threshold=0.1"], [0.2, 0.4])
    _fake_run(tmp_path / "sweep" / "1", ["method=m", "metrics.threshold=0.3"], [0.3, 0.5])
    merged = merge_runs([tmp_path / "sweep"])
    merged.to_csv(tmp_path / "sweep" / "summary.csv", index=False)  # what the sweep's end writes
    paper = tmp_path / "paper.yaml"
    paper.write_text(json.dumps({"title": "t", "source": "s", "metrics": {"iou": {}}, "results": {"m": {"iou": 0.3}}}))

    def error(*argv: str) -> list[str]:
        assert cli_main(*argv) == 2
        return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]

    assert error("table", str(tmp_path / "sweep"), str(tmp_path / "nope")) == [
        f"error: {tmp_path / 'nope'}: no such folder (emb table takes run or sweep folders)"
    ]
    assert error("report", str(tmp_path / "sweep"), "--published", str(paper)) == [
        f"error: {tmp_path / 'sweep'}/summary.csv: a merged summary of several runs (one row per "
        f"metrics.threshold); report one run's folder, e.g. `emb report {run}`"
    ]
    assert error("report", str(run), "--published", str(paper), "--rename", "m") == [
        "error: --rename m: expected PAPER_METHOD=OUR_METHOD"
    ]
    assert error("report", str(run), "--published", str(paper), "--rename", "mm=m") == [
        "error: --rename mm=...: the published table has no method 'mm' (m)"
    ]


def test_a_sweep_into_an_earlier_sweeps_folder_merges_only_its_own_jobs(tmp_path: Path) -> None:
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    sweep = tmp_path / "sweep"
    base = ["run", "-m", "method=identity", "model=tiny", "dataset=synthetic", "metrics=default"]
    emb(*base, "dataset.limit=1,2,3", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env)
    again = emb(*base, "dataset.limit=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env)
    assert f"sweep {sweep}: 1 earlier sweep folder(s) left out of the merge: 2" in again.stderr
    merged = pd.read_csv(sweep / "summary.csv")
    assert sorted(set(merged["dataset.limit"])) == [1, 2] and set(merged["runs"]) == {0, 1}
    record = json.loads((sweep / "sweep.json").read_text())
    assert [j["run"] for j in record["jobs"]] == ["0", "1"]
    assert record["jobs"][1]["overrides"] == {
        "method": "identity",
        "model": "tiny",
        "dataset": "synthetic",
        "metrics": "default",
        "dataset.limit": "2",
    }
    assert {"versions", "git"} <= set(record["provenance"])


def test_report_refuses_a_merge_whose_runs_differ_by_method_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fake_run(tmp_path / "sweep" / "0", ["method=m"], [0.2])
    _fake_run(tmp_path / "sweep" / "1", ["method=n"], [0.3])
    merge_runs([tmp_path / "sweep"]).to_csv(tmp_path / "sweep" / "summary.csv", index=False)
    paper = tmp_path / "paper.yaml"
    paper.write_text(json.dumps({"title": "t", "source": "s", "metrics": {"iou": {}}, "results": {"m": {"iou": 0.3}}}))
    assert cli_main("report", str(tmp_path / "sweep"), "--published", str(paper)) == 2
    assert "a merged summary of several runs (one row per method)" in capsys.readouterr().err
