"""Experiment loggers (Hydra group ``logger/``): ``none`` or ``wandb``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_logger(cfg: Any, run_dir: Path):
    if cfg is None or cfg.get("name", "none") in (None, "none"):
        return None
    if cfg.name == "wandb":
        from benchmark.loggers.wandb_logger import WandbLogger

        return WandbLogger(cfg)
    raise ValueError(f"logger.name='{cfg.name}': unknown; use none or wandb")
