"""Dataset loaders, one file each, registered by name (Hydra group ``dataset/``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from benchmark.datasets.base import EditDataset, SampleRef, checked, checked_ids, select

# keys every dataset config has, handled here rather than by the loader; ``loader`` (optional) picks the registered
# loader when ``name`` is the dataset's own name (the toy world's set is named toyworld, made by the synthetic loader)
COMMON_KEYS = ("name", "loader", "limit", "shard", "description")


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
    cls = DATASETS.get(params.get("loader") or params["name"])
    kwargs = {k: v for k, v in params.items() if k not in COMMON_KEYS}
    # a misspelt option is one clear line naming it, not a TypeError traceback
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        known = ", ".join(k for k in accepted if k != "self")
        raise ValueError(f"dataset '{params['name']}': unknown option(s) {', '.join(unknown)}; known: {known}")
    dataset = cls(**kwargs)
    dataset.name = params["name"]  # what describe() (results.json, reports) calls it
    return dataset


def iter_selected(dataset: EditDataset, cfg: Any, check_sizes: bool = True) -> Iterator[SampleRef]:
    """The configured slice of the dataset (limit, shard). A sample whose id is unsafe as a folder name or repeats an
    earlier one fails with one line (``checked_ids``; before the shard, so every shard agrees which one is first).
    ``check_sizes``: each sample's load also fails with one line when its mask or correct-result image has another
    size than its image or its GT mask is empty (``emb data check`` reports those among a sample's other problems
    instead)."""
    refs = select(checked_ids(dataset.refs()), cfg.get("limit"), cfg.get("shard"))
    return (checked(ref) for ref in refs) if check_sizes else refs


__all__ = ["EditDataset", "SampleRef", "build_dataset", "iter_selected", "select"]
