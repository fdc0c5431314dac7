"""Hydra's own sweeper and launcher plugins on the real command line: an Optuna search over a post-hoc threshold
(conf/hparams_search/) and the shard pattern on the submitit launcher's local executor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import emb

TINY_WORLD = ["model=tiny", "dataset=synthetic", "metrics=default"]


def test_optuna_search_of_a_post_hoc_threshold_reuses_the_samples_and_names_the_best(
    tmp_path: Path, model_cache: Path
) -> None:
    """4 Optuna trials of mask_iou's scoring threshold on DiffEdit's stored soft masks (tiny model, offline): the first
    trial generates, the other three re-score the cached samples; each job returns its iou to Optuna, whose best
    value is the best iou of the merged summary and is named at its end and in sweep.json.
    Checked to fail: with `min` in place of `max` in hydra_callbacks.best_job the best line names another job."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(model_cache)}
    sweep = tmp_path / "sweep"
    proc = emb(
        "run", "hparams_search=mask_threshold_optuna", *TINY_WORLD, "dataset.limit=3", "method=diffedit",
        "method.num_inference_steps=2", "hydra.sweeper.n_trials=4", "metrics.metrics.0.threshold=interval(0.05,0.4)",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert "diffedit: 3 computed, 0 reused from cache" in (sweep / "0" / "app.log").read_text()
    for job in ("1", "2", "3"):
        assert "diffedit: 0 computed, 3 reused from cache" in (sweep / job / "app.log").read_text()
    merged = pd.read_csv(sweep / "summary.csv").query("metric == 'iou' and edit_type == 'all'")
    by_threshold = merged.set_index("metrics.metrics.0.threshold")["mean"]
    assert len(by_threshold) == 4 and by_threshold.nunique() > 1  # the threshold changes the score
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert optuna["best_value"] == pytest.approx(by_threshold.max())
    best = json.loads((sweep / "sweep.json").read_text())["best"]
    assert best["objective"] == "iou" and best["direction"] == "maximize"
    assert best["value"] == pytest.approx(optuna["best_value"])
    threshold = float(best["overrides"]["metrics.metrics.0.threshold"])
    assert threshold == pytest.approx(optuna["best_params"]["metrics.metrics.0.threshold"])
    assert by_threshold[threshold] == pytest.approx(best["value"])
    last = (sweep / "summary.md").read_text().strip().splitlines()[-1]
    assert last.startswith(f"Best iou (maximize): {best['value']:.6g} in job {best['run']} (metrics.metrics.0.thr")
    assert last in proc.stdout


def test_submitit_local_runs_two_shards_merged_into_one_table(tmp_path: Path, model_cache: Path) -> None:
    """The shard pattern on Hydra's submitit launcher (its local executor: one fresh process per job, as on SLURM):
    dataset.shard=0/2,1/2 of 4 samples, merged by the sweep callback into one row per method holding all 4."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(model_cache)}
    sweep = tmp_path / "sweep"
    emb(
        "run", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20", *TINY_WORLD, "method=identity",
        "dataset.limit=4", "dataset.shard=0/2,1/2", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert (sweep / ".submitit").is_dir()  # the jobs ran through submitit
    shards = [pd.read_parquet(sweep / job / "samples.parquet")["sample_id"].unique().tolist() for job in ("0", "1")]
    assert len(shards[0]) == len(shards[1]) == 2 and not set(shards[0]) & set(shards[1])
    merged = pd.read_csv(sweep / "summary.csv").query("edit_type == 'all'")
    assert "dataset.shard" not in merged.columns and set(merged["method"]) == {"identity"}
    psnr = merged.query("metric == 'psnr_whole_vs_target'")
    assert len(psnr) == 1 and int(psnr["n"].iloc[0]) == 4 and psnr["runs"].iloc[0] == "0;1"


def test_the_slurm_launcher_config_composes_with_the_gpu_keys() -> None:
    """conf/hydra/launcher/slurm.yaml extends Hydra's submitit_slurm with the keys a GPU cluster asks for."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
