"""Dataset loaders, one file each, registered by name (Hydra group ``dataset/``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from benchmark.datasets.base import EditDataset, SampleRef, select

# keys every dataset config has, handled here rather than by the loader
COMMON_KEYS = ("name", "limit", "shard", "description")


def build_dataset(cfg: Any) -> EditDataset:
    from omegaconf import OmegaConf

    from benchmark.registry import DATASETS

    params = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    cls = DATASETS.get(params["name"])
    return cls(**{k: v for k, v in params.items() if k not in COMMON_KEYS})


def iter_selected(dataset: EditDataset, cfg: Any) -> Iterator[SampleRef]:
    return select(dataset.refs(), cfg.get("limit"), cfg.get("shard"))


__all__ = ["EditDataset", "SampleRef", "build_dataset", "iter_selected", "select"]
