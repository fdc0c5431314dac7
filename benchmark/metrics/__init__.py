"""Metric families, one file each, registered by name (Hydra group ``metrics/`` picks and configures them)."""

from __future__ import annotations

from typing import Any

from benchmark.metrics.base import Metric, ScoreItem


def build_metrics(cfg: Any) -> list[Metric]:
    """Instantiate the metric list of a ``metrics/`` preset: ``{metrics: [{name: iou, ...}, ...]}``."""
    from omegaconf import OmegaConf

    from benchmark.registry import METRICS

    items = (
        OmegaConf.to_container(cfg.get("metrics", []), resolve=True)
        if not isinstance(cfg, dict)
        else cfg.get("metrics", [])
    )
    out = []
    for spec in items or []:
        spec = dict(spec)
        out.append(METRICS.get(spec.pop("name"))(**spec))
    return out


__all__ = ["Metric", "ScoreItem", "build_metrics"]
