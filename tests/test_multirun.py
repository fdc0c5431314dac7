"""A Hydra multirun where one job cannot run: the others finish, the merge is written, the sweep exits 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import emb


def test_a_failed_job_leaves_the_sweep_going_and_is_named_at_its_end(tmp_path: Path) -> None:
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    proc = emb(
        "run",
        "-m",
        "method=gt_inpaint,identity",
        "model=tiny",
        "model.inpaint=null",  # gt_inpaint's job has no weights to load
        "dataset=synthetic",
        "metrics=default",
        "dataset.limit=1,2",
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    # each failed job's line as it fails, then one line at the sweep's end
    assert len(errors) == 3 and errors[-1].startswith("error: 2 job(s) of the sweep failed: 0, 1 (")
    assert all("model.inpaint is empty" in ln for ln in errors[:2])
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    merged = pd.read_csv(sweep / "summary.csv")
    assert set(merged["method"]) == {"identity"} and sorted(set(merged["dataset.limit"])) == [1, 2]
    # the markdown merge names its key columns (not a tuple index)
    header = (sweep / "summary.md").read_text().splitlines()[0]
    assert header.replace(" ", "").startswith("|dataset.limit|method|")
    assert "| iou ↑" in header and "| denoiser_calls ↓" in header  # the jobs' metric directions


def test_a_job_that_failed_in_an_earlier_sweep_and_now_runs_is_not_reported_failed(tmp_path: Path) -> None:
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    base = ["run", "-m", "model=tiny", "dataset=synthetic", "metrics=default", "dataset.limit=1"]
    sweep = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    failed = emb(*base, "method=gt_inpaint", "model.inpaint=null", sweep, cwd=tmp_path, env=env, check=False)
    assert failed.returncode == 2 and (tmp_path / "sweep" / "0" / "job_error.txt").exists()
    again = emb(*base, "method=identity", sweep, cwd=tmp_path, env=env, check=False)
    assert again.returncode == 0 and "error:" not in again.stderr


def test_a_sweep_over_a_scoring_threshold_generates_once(tmp_path: Path) -> None:
    """DESIGN's threshold sweep as a plain multirun (the form an Optuna sweeper takes): the jobs differ in the mask
    threshold of scoring only, so the second job reuses the first one's cached samples and re-binarises their soft
    masks; the merged table has the threshold as a column."""
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    sweep = tmp_path / "sweep"
    emb(
        "run", "-m", "model=tiny", "dataset=synthetic", "metrics=default", "dataset.limit=3", "method=diffedit",
        "method.num_inference_steps=2", "metrics.metrics.0.source=soft", "metrics.metrics.0.threshold=0.0,1.1",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert "diffedit: 3 computed, 0 reused" in (sweep / "0" / "app.log").read_text()
    assert "diffedit: 0 computed, 3 reused from cache" in (sweep / "1" / "app.log").read_text()
    merged = pd.read_csv(sweep / "summary.csv").query("metric == 'recall' and edit_type == 'all'")
    recall = merged.set_index("metrics.metrics.0.threshold")["mean"]
    assert recall[0.0] == 1.0 and recall[1.1] == 0.0  # every pixel above 0, none above 1.1: the soft masks were used
