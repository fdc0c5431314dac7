"""Scoring: a run folder's stored samples → per-sample metric values → summary tables.

Scoring reads the stored artifacts back, so ``emb score`` on a finished run computes exactly what the run computed,
and a post-hoc metric never reruns a diffusion model. One scoring pass decodes each dataset sample once and scores
it for every method that holds it; each method has its own fork of every metric (``Metric.fork``), so dataset-level
values (FID, the truncation and missing-reference counts) stay per method.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from benchmark.datasets import EditDataset, iter_selected
from benchmark.datasets.base import score_fingerprint
from benchmark.metrics import Metric, ScoreContext, ScoreItem, build_metrics, prepare_metrics
from benchmark.metrics.speed import HIGHER_IS_BETTER as SPEED_DIRECTIONS
from benchmark.metrics.speed import add_speedup
from benchmark.models import MissingWeightsError, resolve_device
from benchmark.provenance import stamp
from benchmark.rundir import RunFolder, SampleRecord, failed_record
from benchmark.tables import long_rows, summarize, write_tables
from benchmark.types import SampleError, error_line

log = logging.getLogger("emb")


@dataclass
class ScoreResult:
    """What one scoring pass found: the per-sample long rows, the dataset-level rows (FID, KID: one per method and
    value), the optional metrics skipped for missing weights, each value's direction (higher is better), the content
    fingerprint of each scored record (by record key; the stored ones win) and the samples whose content changed
    since the run was first scored."""

    long: pd.DataFrame
    dataset_values: pd.DataFrame
    skipped_metrics: list[str] = field(default_factory=list)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    changed_samples: list[str] = field(default_factory=list)


@dataclass
class ScoredRun:
    """A scored and tabulated run: where the tables went, the summary, its markdown pivot, and the scores."""

    out_dir: Path
    summary: pd.DataFrame
    markdown: str
    scores: ScoreResult


def metric_update(metric: Metric, batch: list[ScoreItem], method: str) -> list[dict[str, float]]:
    """``metric.update(batch)``, with a failure or a wrong number of results as one line naming the metric, the
    method and the batch's samples (the run's records and artifacts are untouched; nothing is written)."""
    ids = [item.sample.id for item in batch]
    where = f"metric '{metric.name}' on {method} samples {ids[0]}" + (f"..{ids[-1]}" if len(ids) > 1 else "")
    try:
        values = list(metric.update(batch))
    except MissingWeightsError:
        raise
    except Exception as err:  # noqa: BLE001 — a metric's own bug or a value it cannot take: said with where
        raise ValueError(f"{where}: {error_line(err, with_type=True)}") from err
    if len(values) != len(batch):
        raise ValueError(f"{where}: update returned {len(values)} value sets for {len(batch)} samples (one each)")
    return values


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(a == b or (math.isnan(a) and math.isnan(b)))
    except TypeError:
        return False


def check_one_producer(value_name: str, index: int, metrics: list[Metric], producers: dict[str, int]) -> None:
    """Two metric entries writing the same value name with different values would overwrite each other silently
    (the same value twice, such as clip_score's prompt-truncation flag from two of its entries, is fine)."""
    first = producers.setdefault(value_name, index)
    if first != index:
        raise ValueError(
            f"metrics: entries {first} ({metrics[first].name}) and {index} ({metrics[index].name}) both produce "
            f"'{value_name}'; give one a `prefix` or another region/source so their values keep apart"
        )


def score_context(dataset: EditDataset, dataset_cfg: Any, metrics_cfg: Any, cache_dir: Path | None) -> ScoreContext:
    """The metrics' view of the run: device, cache folder, and the selected samples for dataset-level statistics."""

    def samples() -> Iterator:
        for ref in iter_selected(dataset, dataset_cfg):
            try:
                yield ref.load()
            except SampleError:
                continue

    return ScoreContext(
        device=resolve_device(metrics_cfg.get("device", "auto"), key="metrics.device"),
        cache_dir=cache_dir,
        dataset_key={
            "dataset": dataset.describe(),
            "checksum": dataset.checksum(),
            "limit": dataset_cfg.get("limit"),
            "shard": dataset_cfg.get("shard"),
        },
        samples=samples,
    )


@dataclass
class _MethodScoring:
    """One method's part of a scoring pass: its records, its metric forks, the batch being filled, its counts."""

    records: dict[str, SampleRecord]  # sample id -> ok record
    metrics: list[Metric]
    batch: list[ScoreItem] = field(default_factory=list)
    scored: int = 0
    failed_ids: set[str] = field(default_factory=set)  # samples whose generation failed (no ok record)


class _Scorer:
    """The state of one scoring pass (see ``score``)."""

    def __init__(self, folder: RunFolder, metrics: list[Metric], records: list[SampleRecord], batch_size: int) -> None:
        self.folder, self.metrics, self.batch_size = folder, metrics, batch_size
        self.methods: dict[str, _MethodScoring] = {}
        for rec in records:
            if rec.method not in self.methods:
                self.methods[rec.method] = _MethodScoring({}, [m.fork() for m in metrics])
            if rec.ok:
                self.methods[rec.method].records[rec.sample_id] = rec
            else:
                self.methods[rec.method].failed_ids.add(rec.sample_id)
        self.holders: dict[str, list[str]] = {}  # sample id -> the methods holding it, in record order
        for method, part in self.methods.items():
            for sample_id in part.records:
                self.holders.setdefault(sample_id, []).append(method)
        self.scores: dict[tuple[str, str], dict[str, float]] = {}
        self.producers: dict[str, int] = {}  # value name -> index of the metric entry that produces it
        self.failed: dict[tuple[str, str], str] = {}
        self.known_fps = folder.read_fingerprints()
        self.current_fps: dict[str, str] = {}  # record key -> content fingerprint now
        self.changed: set[str] = set()

    def fail(self, method: str, sample_id: str, line: str) -> None:
        log.warning("sample %s (%s) cannot be scored, counted as failed: %s", sample_id, method, line)
        self.failed[(method, sample_id)] = line

    def add(self, method: str, sample: Any, fingerprint: str) -> None:
        """Queue ``sample`` (decoded once for every method) with ``method``'s stored output."""
        part = self.methods[method]
        rec = part.records[sample.id]
        try:
            output = self.folder.read_output(rec)
        except SampleError as err:
            self.fail(method, sample.id, error_line(err, with_type=True))
            return
        ident = str(rec.key or f"{method}/{sample.id}")
        self.current_fps[ident] = fingerprint
        if self.known_fps.get(ident, fingerprint) != fingerprint and sample.id not in self.changed:
            self.changed.add(sample.id)
            log.warning(
                "sample %s: its dataset content (image, GT mask, prompts or reference edit) changed since the run "
                "was scored; its values compare the stored edit with the new data",
                sample.id,
            )
        part.batch.append(ScoreItem(sample, output, rec))
        part.scored += 1
        if len(part.batch) >= self.batch_size:
            self.flush(method)

    def flush(self, method: str) -> None:
        batch = self.methods[method].batch
        if not batch:
            return
        for index, m in enumerate(self.methods[method].metrics):
            for item, values in zip(batch, metric_update(m, batch, method), strict=True):
                held = self.scores.setdefault((method, item.sample.id), {})
                for value_name, value in values.items():
                    if value_name in held and not _same_value(held[value_name], value):
                        check_one_producer(value_name, index, self.metrics, self.producers)
                    self.producers.setdefault(value_name, index)
                held.update(values)
        batch.clear()

    def dataset_rows(self) -> list[dict[str, Any]]:
        rows = []
        for method, part in self.methods.items():
            if not part.records:  # every sample failed: nothing to compute a dataset value from
                continue
            for m in part.metrics:
                for name, value in m.compute().items():
                    rows.append(
                        {
                            "method": method,
                            "metric": name,
                            "mean": value,
                            "std": math.nan,
                            "ci95": math.nan,
                            "n": part.scored,
                            # as the per-sample rows count them: failed generations and samples not scored
                            "failures": len(part.failed_ids - set(part.records)) + len(part.records) - part.scored,
                        }
                    )
        return rows


def score(
    run_dir: Path,
    dataset: EditDataset,
    dataset_cfg: Any,
    metrics_cfg: Any,
    cache_dir: Path | None = None,
    records: list[SampleRecord] | None = None,
) -> ScoreResult:
    """Score every stored sample of a run with a metric preset.

    Each metric is prepared once (its networks load once per process, dataset statistics are read or built once).
    The dataset's selection is then read once: each sample is decoded once and queued, with each holding method's
    stored output, into that method's batch; a full batch (``batch_size``) is scored by the method's metric forks,
    so every method's batches hold the same samples in the same order as when methods were scored one by one.
    ``records``: the run's records when the caller has read them already.

    A sample that can no longer be scored (its dataset sample or a stored artifact is gone or unreadable, or it has
    left the dataset's selection) is one warning line and a failure in the tables, not a silent gap. A sample whose
    content differs from when the run was first scored (``sample_fingerprints.json``) is one warning line.
    """
    folder = RunFolder(run_dir)
    records = folder.records() if records is None else records
    metrics, skipped = prepare_metrics(
        build_metrics(metrics_cfg), score_context(dataset, dataset_cfg, metrics_cfg, cache_dir)
    )
    scorer = _Scorer(folder, metrics, records, int(metrics_cfg.get("batch_size", 16)))
    seen: set[str] = set()
    for ref in iter_selected(dataset, dataset_cfg):
        methods = scorer.holders.get(ref.id)
        if not methods:
            continue
        seen.add(ref.id)
        try:
            sample = ref.load()
        except SampleError as err:
            for method in methods:
                scorer.fail(method, ref.id, error_line(err, with_type=True))
            continue
        fingerprint = score_fingerprint(sample)
        for method in methods:
            scorer.add(method, sample, fingerprint)
    for method, part in scorer.methods.items():
        scorer.flush(method)
        for sample_id in sorted(set(part.records) - seen):
            scorer.fail(method, sample_id, f"no longer in the dataset's selection ({dataset.describe().get('name')})")
    dataset_values = pd.DataFrame(scorer.dataset_rows())
    # a sample that could not be scored is a failure in the tables (its record on disk is unchanged)
    tabulated = [
        failed_record(rec, line) if (line := scorer.failed.get((rec.method, rec.sample_id))) else rec for rec in records
    ]
    return ScoreResult(
        long=long_rows(tabulated, scorer.scores),
        dataset_values=dataset_values,
        skipped_metrics=skipped,
        higher_is_better={k: v for m in metrics for k, v in m.directions().items()},
        # the first scoring fixes each sample's content: the stored fingerprints win over today's
        fingerprints={**scorer.current_fps, **scorer.known_fps},
        changed_samples=sorted(scorer.changed),
    )


def run_cache_dir(cfg: DictConfig) -> Path | None:
    """``run.cache_dir`` of a (possibly reloaded) run config; None when it cannot be resolved outside Hydra."""
    try:
        value = cfg.run.cache_dir
    except Exception:  # noqa: BLE001 — an unresolvable ${hydra:...} interpolation in a reloaded config
        return None
    return Path(str(value)).expanduser() if value else None


def score_run(
    run_dir: Path,
    cfg: DictConfig,
    dataset: EditDataset,
    extra: dict[str, Any] | None = None,
    metrics_cfg: Any = None,
    out_dir: Path | None = None,
    records: list[SampleRecord] | None = None,
) -> ScoredRun:
    """Score a run folder, tabulate and stamp it: the tables go into ``out_dir`` when given (a re-score beside the
    run, which stays as it was), else into the run folder. ``records``: the run's records when the caller has read
    them. ``extra``: more results.json fields (the generation record)."""
    metrics_cfg = metrics_cfg if metrics_cfg is not None else cfg.metrics
    out = RunFolder(out_dir or run_dir)
    scores = score(run_dir, dataset, cfg.dataset, metrics_cfg, run_cache_dir(cfg), records)
    summary = add_speedup(
        summarize(scores.long, dataset_values=scores.dataset_values), metrics_cfg.get("reference_method")
    )
    scales = metrics_cfg.get("table_scales")
    directions = {**SPEED_DIRECTIONS, **scores.higher_is_better}
    if out.path.resolve() == Path(run_dir).resolve():
        # the first scoring fixes each sample's content; later re-scores compare against it (old values kept)
        out.write_fingerprints(scores.fingerprints)
    out.write_long_table(scores.long)
    markdown = write_tables(out.path, summary, scales=dict(scales) if scales else None, directions=directions)
    out.write_results(
        {
            "summary": summary.to_dict(orient="records"),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "metrics_config": OmegaConf.to_container(metrics_cfg, resolve=True)
            if isinstance(metrics_cfg, DictConfig)
            else metrics_cfg,
            "dataset": {**dataset.describe(), "checksum": dataset.checksum()},
            "skipped_metrics": scores.skipped_metrics,
            "higher_is_better": directions,
            "provenance": stamp(),
            **(extra or {}),
        }
    )
    return ScoredRun(out.path, summary, markdown, scores)
