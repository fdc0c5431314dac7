"""Dataset loaders, one file each, registered by name (Hydra group ``dataset/``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from benchmark.datasets.base import EditDataset, SampleRef, checked, select

# keys every dataset config has, handled here rather than by the loader
COMMON_KEYS = ("name", "limit", "shard", "description")


def build_dataset(cfg: Any) -> EditDataset:
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from benchmark.registry import DATASETS

    try:
        if isinstance(cfg, dict):
            params = dict(cfg)
        else:
            params = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        key = str(getattr(err, "full_key", None) or "option")
        key = key if key.startswith("dataset.") else f"dataset.{key}"
        raise ValueError(f"{key}: required, e.g. {key}=/path/to/data (see data/README.md)") from err
    cls = DATASETS.get(params["name"])
    kwargs = {k: v for k, v in params.items() if k not in COMMON_KEYS}
    # a misspelt option is one clear line naming it, not a TypeError traceback
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        known = ", ".join(k for k in accepted if k != "self")
        raise ValueError(f"dataset '{params['name']}': unknown option(s) {', '.join(unknown)}; known: {known}")
    return cls(**kwargs)


def iter_selected(dataset: EditDataset, cfg: Any, check_sizes: bool = True) -> Iterator[SampleRef]:
    """The configured slice of the dataset (limit, shard). ``check_sizes``: each sample's load fails with one line
    when its mask or correct-result image has another size than its image (``emb data check`` reports that among a
    sample's other problems instead)."""
    refs = select(dataset.refs(), cfg.get("limit"), cfg.get("shard"))
    return (checked(ref) for ref in refs) if check_sizes else refs


__all__ = ["EditDataset", "SampleRef", "build_dataset", "iter_selected", "select"]
