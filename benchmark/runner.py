"""The harness loop: dataset → method.edit → run folder → scoring → tables / logger.

Generation and scoring are separate phases (``benchmark.scoring``): scoring reads the stored artifacts back. ``run``
orchestrates both and returns a ``RunResult``; it prints nothing. What a caller shows while it goes (progress bars,
a line per method) comes through the ``RunEvents`` it passes (the CLI's prints; the default is silent).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark.adapter import EditContext, MethodAdapter, build_method, code_version
from benchmark.datasets import EditDataset, SampleRef, build_dataset, iter_selected
from benchmark.datasets.base import sample_fingerprint
from benchmark.metrics import check_metric_weights
from benchmark.models import MissingWeightsError, ModelBundle, resolve_device, synchronize
from benchmark.nfe import NFECounter
from benchmark.rundir import RunFolder, SampleRecord, failed_record
from benchmark.scoring import check_one_producer, metric_update, score_run
from benchmark.store import SampleCache, cache_key, stable_hash
from benchmark.types import SampleError, error_line

log = logging.getLogger("emb")

__all__ = [  # check_one_producer and metric_update moved to benchmark.scoring; importable from here as before
    "FailFast",
    "GenerationStats",
    "MethodsSkipped",
    "RunEvents",
    "RunResult",
    "check_one_producer",
    "generate",
    "method_config_hash",
    "method_configs",
    "metric_update",
    "run",
    "sample_seed",
]


class FailFast(RuntimeError):
    """Raised with ``run.fail_fast=true`` after the failing sample has been recorded."""


@dataclass
class GenerationStats:
    method: str
    computed: int = 0
    reused: int = 0
    failed: int = 0
    skipped_reason: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """What ``run`` made: the run folder, the summary (and its markdown pivot), and each method's generation."""

    run_dir: Path
    summary: pd.DataFrame
    markdown: str
    generation: list[GenerationStats]


class MethodsSkipped(RuntimeError):
    """A method the user asked for by name could not run (e.g. missing weights); the tables were still written
    (``result``)."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


class RunEvents:
    """What a run reports while it goes; this default reports nothing (the CLI's subclass prints)."""

    def samples(self, method: str, refs: Iterator[SampleRef], total: int | None) -> Iterator[SampleRef]:
        """The samples one method generates, as the run goes through them (a progress bar wraps them here)."""
        yield from refs

    def method_done(self, stats: GenerationStats) -> None:
        """A method finished generating, or was skipped (``stats.skipped_reason``)."""


def method_configs(cfg: DictConfig, searchpath: Sequence[str] = ()) -> list[DictConfig]:
    """The method(s) of this run: ``method=NAME`` picks one; otherwise every entry of ``methods``. An entry is a
    name (``method/NAME.yaml`` composed by Hydra, so a plugin's YAML on ``searchpath``, the run's
    ``hydra.searchpath``, is found as by ``method=NAME``) or a one-key mapping ``{NAME: {key: value, ...}}`` whose
    values replace the method config's for this list only (e.g. a cheaper setting in the default run;
    ``method=NAME`` keeps the file's)."""
    if cfg.get("method") is not None:
        if "name" not in cfg.method:  # `+method.KEY=VALUE` without `method=NAME`
            keys = ", ".join(f"method.{k}" for k in cfg.method)
            raise ValueError(
                f"{keys}: set with no method=NAME to apply it to; add method=NAME (a sweep: emb run -m method=NAME "
                f"method.KEY=a,b), or give it one method of the list: methods=[{{NAME: {{KEY: VALUE}}}}]"
            )
        return [cfg.method]
    out = []
    listed: set[str] = set()
    for entry in cfg.get("methods") or []:
        name, settings = _method_entry(entry)
        if name in listed:  # both would write rows, sample folders and cache entries under one name
            raise ValueError(
                f"methods: '{name}' listed twice; a run holds one configuration per method (compare settings with "
                f"a sweep: emb run -m method={name} method.KEY=a,b)"
            )
        listed.add(name)
        mcfg = _composed_method(name, searchpath)
        if settings:
            unknown = sorted(set(settings) - set(mcfg))
            if unknown:
                raise ValueError(f"methods: {name}: unknown key(s) {', '.join(unknown)} (not in method/{name}.yaml)")
            log.info("method %s: settings of this run's methods list: %s", name, OmegaConf.to_container(settings))
            mcfg = OmegaConf.merge(mcfg, settings)
        out.append(mcfg)
    if not out:
        raise ValueError("no method chosen: pass method=NAME (or set methods: [...] in the config)")
    return out


def _method_entry(entry: Any) -> tuple[str, DictConfig | None]:
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, DictConfig) and len(entry) == 1:
        ((name, settings),) = entry.items()
        if isinstance(settings, DictConfig):
            return str(name), settings
    raise ValueError(f"methods: an entry must be a method name or {{NAME: {{key: value}}}}, got {entry}")


def _composed_method(name: str, searchpath: Sequence[str]) -> DictConfig:
    """``method=NAME`` as Hydra composes it, on the run's search path; an unknown name is one line."""
    from hydra.errors import HydraException, MissingConfigException

    from benchmark.plugins import compose_config, searchpath_override

    try:
        composed = compose_config([*searchpath_override(searchpath), f"method={name}"])
    except MissingConfigException as err:
        known = ", ".join(sorted(err.options or []))
        where = "conf/" + (" or the run's hydra.searchpath" if searchpath else "")
        raise ValueError(
            f"methods: unknown method '{name}' (no method/{name}.yaml in {where}); known: {known}"
        ) from err
    except HydraException as err:  # a name the override grammar cannot take
        raise ValueError(f"methods: '{name}': {error_line(err, joined=True)}") from err
    # detached from the composed root: the method's own keys, interpolations unresolved as in its file
    return OmegaConf.create(OmegaConf.to_container(composed.method))


def method_config_hash(mcfg: DictConfig) -> str:
    """Hash of a method's resolved config for its cache key, with whole numbers as floats: ``method.sigma=4`` on
    the command line and ``sigma: 4.0`` in the YAML are one setting, not a reason to recompute every sample."""

    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [normal(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    return stable_hash(normal(OmegaConf.to_container(mcfg, resolve=True)))


def sample_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed from the run seed and the sample id: independent of order and sharding."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{sample_id}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def generate(
    method: MethodAdapter,
    mcfg: DictConfig,
    refs: Iterator[SampleRef],
    models: ModelBundle,
    folder: RunFolder,
    cache: SampleCache,
    seed: int,
    fail_fast: bool,
    total: int | None,
    reuse_cache: bool = True,
    events: RunEvents | None = None,
) -> GenerationStats:
    stats = GenerationStats(method.name)
    counter = NFECounter()
    models.on_load.append(counter.attach_pipeline)
    for pipe in models._pipes.values():
        counter.attach_pipeline(pipe)
    cfg_hash = method_config_hash(mcfg)
    model_id = models.describe() if method.needs_model else None
    version = code_version(method)
    warm = True
    samples = (events or RunEvents()).samples(method.name, refs, total)
    try:
        for ref in samples:
            # what is known of the sample so far: its record if it fails here
            known = SampleRecord(
                method=method.name, sample_id=ref.id, status="failed", config_hash=cfg_hash, code_version=version
            )
            try:
                sample = ref.load()
            except SampleError as err:
                _record_failure(folder, known, err, stats, fail_fast)
                continue
            s_seed = sample_seed(seed, sample.id)
            try:
                inputs_fp = method.input_fingerprint(sample)
            except SampleError as err:
                _record_failure(folder, known, err, stats, fail_fast)
                continue
            key = cache_key(
                method.name, cfg_hash, model_id, sample.id, sample_fingerprint(sample), s_seed, version, inputs_fp
            )
            known = replace(known, edit_type=sample.edit_type, seed=s_seed, key=key)
            cached = cache.get(method.name, key) if reuse_cache else None
            if cached is not None and cached.ok:
                folder.add(cached, cache.folder(method.name, key))
                stats.reused += 1
                continue
            try:
                method.check_inputs(sample)
                counter.reset()
                synchronize(models.device)
                t0 = time.perf_counter()
                output = method.edit(sample, EditContext(seed=s_seed, device=models.device))
                synchronize(models.device)
                elapsed = time.perf_counter() - t0
            except (KeyboardInterrupt, SystemExit, MissingWeightsError):
                raise  # missing weights stop the method, not one sample
            except Exception as err:  # noqa: BLE001 — any failure of one sample is recorded, the run goes on
                _record_failure(folder, known, err, stats, fail_fast)
                continue
            record = replace(
                known,
                status="ok",
                time_s=elapsed,
                warmup=warm,
                nfe=output.nfe or counter.evaluations,
                denoiser_calls=output.denoiser_calls or counter.calls,
                nfe_backward=counter.backward_evaluations or None,
                has_image=output.image is not None,
                has_mask=output.mask is not None,
                extras=output.extras,
            )
            warm = False
            folder.add(record, cache.put(method.name, key, record, output))
            stats.computed += 1
    finally:
        close = getattr(samples, "close", None)
        if close is not None:  # a progress bar wrapping the samples ends with them
            close()
        models.on_load.remove(counter.attach_pipeline)
        counter.detach()
    return stats


def _record_failure(
    folder: RunFolder, known: SampleRecord, err: BaseException, stats: GenerationStats, fail_fast: bool
) -> None:
    line = error_line(err, with_type=True)
    log.warning("sample %s failed (%s): %s", known.sample_id, known.method, line)
    stats.failed += 1
    stats.errors.append(f"{known.sample_id}: {line}")
    # failures are not cached: a rerun tries the sample again
    folder.add(failed_record(known, line), None)
    if fail_fast:
        raise FailFast(f"run.fail_fast: stopping at sample {known.sample_id}: {line}") from err


def count_selected(dataset: EditDataset, cfg: Any) -> int | None:
    try:
        return sum(1 for _ in iter_selected(dataset, cfg))
    except Exception:  # noqa: BLE001 — a count is only for the progress bar
        return None


def whole_number(value: Any, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}='{value}': expected a whole number") from err


def run(cfg: DictConfig, run_dir: Path, searchpath: Sequence[str] = (), events: RunEvents | None = None) -> RunResult:
    """Generate every method's samples into ``run_dir``, score and tabulate them, log them (``logger``).
    ``searchpath``: the run's Hydra search path (where ``methods:`` entries are looked up besides ``conf/``)."""
    from benchmark.loggers import build_logger
    from benchmark.plugins import absolute_entries, load_plugins

    events = events or RunEvents()
    if cfg.get("plugins"):
        # first: a plugin may register the dataset loader, methods or metrics below; its files stored as absolute
        # paths, so that `emb score` from another folder imports the same ones
        with open_dict(cfg):
            cfg.plugins = absolute_entries(cfg.plugins)
        load_plugins(cfg.plugins)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.run.get("num_threads"):
        # small models on busy CPUs: fewer intra-op threads avoid OpenMP threads spinning against each other
        torch.set_num_threads(whole_number(cfg.run.num_threads, "run.num_threads"))
    seed = whole_number(cfg.seed, "seed")
    dataset = build_dataset(cfg.dataset)  # first: a dataset path to set is the first thing to fix
    # missing metric weights or an absent scoring device stop the run before any diffusion, not after hours of it
    resolve_device(cfg.metrics.get("device", "auto"), key="metrics.device")
    check_metric_weights(cfg.metrics)
    mcfgs = method_configs(cfg, searchpath)
    cache = SampleCache(Path(cfg.run.cache_dir).expanduser())
    folder = RunFolder(run_dir)
    moved = folder.start()
    if moved:
        log.info("%s: an earlier run's records moved to %s", run_dir, " and ".join(moved))
    models = ModelBundle(cfg.model, cache_dir=Path(cfg.run.model_cache).expanduser())
    total = count_selected(dataset, cfg.dataset)
    all_stats = []
    for mcfg in mcfgs:
        method = build_method(mcfg, models)
        skip = method.skip_reason()
        if skip is None:
            try:
                stats = generate(
                    method,
                    mcfg,
                    iter_selected(dataset, cfg.dataset),
                    models,
                    folder,
                    cache,
                    seed,
                    bool(cfg.run.fail_fast),
                    total,
                    reuse_cache=bool(cfg.run.get("reuse_cache", True)),
                    events=events,
                )
            except MissingWeightsError as err:
                skip = str(err)
        if skip is not None:
            log.info("skipping method %s: %s", method.name, skip)
            stats = GenerationStats(method.name, skipped_reason=skip)
        else:
            log.info(
                "%s: %d computed, %d reused from cache, %d failed",
                method.name,
                stats.computed,
                stats.reused,
                stats.failed,
            )
        all_stats.append(stats)
        events.method_done(stats)
    scored = score_run(
        run_dir, cfg, dataset, extra={"generation": [asdict(s) for s in all_stats], "model": models.describe()}
    )
    logger = build_logger(cfg.get("logger"), run_dir)
    if logger is not None:
        logger.log_run(cfg, run_dir, scored.summary)
    result = RunResult(run_dir, scored.summary, scored.markdown, all_stats)
    skipped = [s for s in all_stats if s.skipped_reason]
    if skipped and cfg.get("method") is not None:
        # the user asked for this method by name: a skip is an error (the run's tables are on disk regardless)
        raise MethodsSkipped(f"method {skipped[0].method} did not run: {skipped[0].skipped_reason}", result)
    return result
