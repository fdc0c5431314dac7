"""Metric families, one file each, registered by name (Hydra group ``metrics/`` picks and configures them)."""

from __future__ import annotations

import logging
from typing import Any

from benchmark.metrics.base import Metric, ScoreContext, ScoreItem

log = logging.getLogger("emb")


def metric_specs(cfg: Any) -> list[dict[str, Any]]:
    from omegaconf import OmegaConf

    items = (
        OmegaConf.to_container(cfg.get("metrics", []), resolve=True)
        if not isinstance(cfg, dict)
        else cfg.get("metrics", [])
    )
    return [dict(spec) for spec in items or []]


def build_metrics(cfg: Any) -> list[Metric]:
    """Instantiate the metric list of a ``metrics/`` preset: ``{metrics: [{name: iou, ...}, ...]}``.

    ``optional: true`` on an entry: when its weights are missing it is skipped with one warning line instead of
    stopping the run (the default preset marks its network metrics optional so it runs anywhere).
    """
    from benchmark.registry import METRICS

    out = []
    for spec in metric_specs(cfg):
        optional = bool(spec.pop("optional", False))
        name = spec.pop("name")
        cls = METRICS.get(name)
        known = accepted_keys(cls)
        unknown = sorted(set(spec) - known)
        if unknown:  # the metric classes pass **params up to their base, which would keep a misspelt key silently
            raise ValueError(f"metric '{name}': unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        metric = cls(**spec)
        metric.optional = optional
        out.append(metric)
    return out


def accepted_keys(cls: type) -> set[str]:
    """The named constructor parameters of a metric class and of every class it passes ``**params`` up to."""
    import inspect

    keys: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                keys.add(param.name)
    return keys


def missing_weights(metrics: list[Metric]) -> list[str]:
    """One line per required metric whose weights are missing (cheap: checks files, loads nothing)."""
    return [p for m in metrics if not m.optional and (p := m.weights_problem())]


def check_metric_weights(metrics_cfg: Any) -> None:
    """Stop with one ``MissingWeightsError`` line (the first problem, and how many more) before anything is computed
    when a required metric of the preset has no weights."""
    from benchmark.models import MissingWeightsError

    problems = missing_weights(build_metrics(metrics_cfg))
    if problems:
        raise MissingWeightsError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def prepare_metrics(metrics: list[Metric], ctx: ScoreContext) -> tuple[list[Metric], list[str]]:
    """Prepare every metric once; optional ones with missing weights are dropped. Returns (ready, skip lines)."""
    from benchmark.models import MissingWeightsError

    ready, skipped = [], []
    for m in metrics:
        problem = m.weights_problem() if m.optional else None
        if problem is None:
            try:
                m.prepare(ctx)
                ready.append(m)
                continue
            except MissingWeightsError as err:
                if not m.optional:
                    raise
                problem = str(err)
        line = f"metric {m.name} skipped (optional, weights missing): {problem}"
        if line not in skipped:  # a preset may list one metric twice (other regions or network): one line
            log.warning("%s", line)
            skipped.append(line)
    return ready, skipped


__all__ = [
    "Metric",
    "ScoreContext",
    "ScoreItem",
    "build_metrics",
    "check_metric_weights",
    "missing_weights",
    "prepare_metrics",
]
