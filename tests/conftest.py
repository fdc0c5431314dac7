"""Shared fixtures: the real Hydra configs composed and shrunk, tiny models built once per session, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"

# never reach for a hub: tests are offline by construction
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# Tests run tiny models: a second thread buys nothing there, and on shared cores OpenMP threads waiting for each other
# turn a 10 ms UNet call into seconds. Subprocesses (the CLI tests) inherit the setting through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of built-from-config tiny models for the whole session (built on first use)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_bundle(model_cache: Path):
    from benchmark.models import ModelBundle

    return ModelBundle(compose([]).model, cache_dir=model_cache)


# The plumbing tests' world: the synthetic set, the tiny model built from config, the default metric preset and the
# floor/oracle methods. A test that names one of these groups itself keeps its own choice.
TEST_BASE = {"dataset": "synthetic", "model": "tiny", "metrics": "default", "methods": "[identity,gt_inpaint]"}


def compose(overrides: list[str], tmp: Path | None = None, model_cache: Path | None = None) -> DictConfig:
    """The project's config exactly as ``emb run`` composes it (on the tests' base world, see ``TEST_BASE``), with
    the run paths made concrete."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    if any(o.startswith("experiment=") for o in overrides):
        named |= set(TEST_BASE)  # an experiment picks its own world
    base = [f"{k}={v}" for k, v in TEST_BASE.items() if k not in named]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[*base, *overrides])
    with open_dict(cfg):
        if tmp is not None:
            cfg.run.cache_dir = str(tmp / "cache")
        else:
            cfg.run.cache_dir = "/nonexistent-cache"
        cfg.run.model_cache = str(model_cache or (tmp / "models" if tmp else "/nonexistent-models"))
    OmegaConf.resolve(cfg.dataset)
    return cfg


def emb(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real command line (``python -m benchmark.cli``) in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"emb {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def cli_main(*argv: str) -> int:
    """``emb ARGV`` in this process (``cli.main``), its exit code whether it returns or exits."""
    from benchmark import cli

    try:
        return cli.main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
