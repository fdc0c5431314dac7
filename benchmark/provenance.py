"""What stamps every results file: package versions, git hash, host, time."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "editing-mask-bench",
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "torchmetrics",
    "torch-fidelity",
    "lpips",
    "open_clip_torch",
    "timm",
    "datasets",
    "pandas",
    "numpy",
    "hydra-core",
    "wandb",
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"  # the Hydra config folder of `emb run` (and of every other command's composition)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def git_state() -> dict[str, str | bool | None]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def stamp() -> dict:
    import torch

    return {
        "versions": package_versions(),
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
