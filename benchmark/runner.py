"""The harness loop: dataset → method.edit → result store → metrics → tables / logger.

Generation and scoring are separate phases: scoring reads the stored artifacts back, so ``emb score`` on a
finished run computes exactly what the run computed, and a post-hoc metric never reruns a diffusion model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm.auto import tqdm

from benchmark.adapter import EditContext, MethodAdapter, build_method, code_version
from benchmark.datasets import EditDataset, build_dataset, iter_selected
from benchmark.metrics import Metric, ScoreContext, ScoreItem, build_metrics, check_metric_weights, prepare_metrics
from benchmark.metrics.speed import HIGHER_IS_BETTER as SPEED_DIRECTIONS
from benchmark.metrics.speed import add_speedup
from benchmark.models import MissingWeightsError, ModelBundle, resolve_device, synchronize
from benchmark.nfe import NFECounter
from benchmark.provenance import PROJECT_ROOT, stamp
from benchmark.store import (
    RunStore,
    SampleCache,
    cache_key,
    load_records,
    next_free_index,
    read_output,
    sample_fingerprint,
    stable_hash,
)
from benchmark.tables import long_rows, results_json, summarize, write_tables
from benchmark.types import SampleError, error_line

log = logging.getLogger("emb")
CONF_DIR = PROJECT_ROOT / "conf"


class FailFast(RuntimeError):
    """Raised with ``run.fail_fast=true`` after the failing sample has been recorded."""


class MethodsSkipped(RuntimeError):
    """A method the user asked for by name could not run (e.g. missing weights); the tables were still written."""


@dataclass
class GenerationStats:
    method: str
    computed: int = 0
    reused: int = 0
    failed: int = 0
    skipped_reason: str | None = None
    errors: list[str] = field(default_factory=list)


def method_configs(cfg: DictConfig) -> list[DictConfig]:
    """The method(s) of this run: ``method=NAME`` picks one; otherwise every entry of ``methods``. An entry is a
    name (conf/method/NAME.yaml as is) or a one-key mapping ``{NAME: {key: value, ...}}`` whose values replace the
    method config's for this list only (e.g. a cheaper setting in the default run; ``method=NAME`` keeps the file's)."""
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
        path = CONF_DIR / "method" / f"{name}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml")))
            raise ValueError(f"methods: unknown method '{name}' (no {path}); known: {known}")
        mcfg = OmegaConf.load(path)
        if settings:
            unknown = sorted(set(settings) - set(mcfg))
            if unknown:
                raise ValueError(f"methods: {name}: unknown key(s) {', '.join(unknown)} (not in {path})")
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


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if not isinstance(err, SampleError) else text


def set_aside_previous_records(run_dir: Path) -> None:
    """A run into a folder an earlier run wrote (a fixed ``hydra.run.dir``) starts its own records: the earlier ones
    and their ``samples/`` are renamed, not mixed into this run's tables (finished samples still come back from the
    cache). ``samples/`` goes too because ``load_records`` rebuilds lost record lines from it."""
    records, samples = run_dir / "records.jsonl", run_dir / "samples"
    if not records.exists():
        return
    n = next_free_index(run_dir, "records.previous-{n}.jsonl", "samples.previous-{n}")
    records.rename(run_dir / f"records.previous-{n}.jsonl")
    moved = [f"records.previous-{n}.jsonl"]
    if samples.is_dir():
        samples.rename(run_dir / f"samples.previous-{n}")
        moved.append(f"samples.previous-{n}/")
    log.info("%s: an earlier run's records moved to %s", run_dir, " and ".join(moved))


def generate(
    method: MethodAdapter,
    mcfg: DictConfig,
    refs: Iterator,
    models: ModelBundle,
    store: RunStore,
    cache: SampleCache,
    seed: int,
    fail_fast: bool,
    total: int | None,
    reuse_cache: bool = True,
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
    bar = tqdm(refs, total=total, desc=method.name, unit="sample", dynamic_ncols=True, file=sys.stderr, disable=None)
    try:
        for ref in bar:
            bar.set_postfix_str(ref.id, refresh=False)
            base = {
                "method": method.name,
                "sample_id": ref.id,
                "edit_type": "unknown",
                "seed": None,
                "config_hash": cfg_hash,
                "code_version": version,
            }
            try:
                sample = ref.load()
            except SampleError as err:
                _record_failure(store, base, err, stats, fail_fast)
                continue
            s_seed = sample_seed(seed, sample.id)
            try:
                inputs_fp = method.input_fingerprint(sample)
            except SampleError as err:
                _record_failure(store, base, err, stats, fail_fast)
                continue
            key = cache_key(
                method.name, cfg_hash, model_id, sample.id, sample_fingerprint(sample), s_seed, version, inputs_fp
            )
            base.update(edit_type=sample.edit_type, seed=s_seed, key=key)
            cached = cache.get(method.name, key) if reuse_cache else None
            if cached is not None and cached.get("status") == "ok":
                store.add(cached, cache.folder(method.name, key))
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
                _record_failure(store, base, err, stats, fail_fast)
                continue
            record = {
                **base,
                "status": "ok",
                "error": None,
                "time_s": elapsed,
                "warmup": warm,
                "nfe": output.nfe or counter.evaluations,
                "denoiser_calls": output.denoiser_calls or counter.calls,
                "has_image": output.image is not None,
                "has_mask": output.mask is not None,
                "extras": output.extras,
            }
            warm = False
            folder = cache.put(method.name, key, record, output)
            store.add(record, folder)
            stats.computed += 1
    finally:
        bar.close()
        models.on_load.remove(counter.attach_pipeline)
        counter.detach()
    return stats


def _record_failure(store: RunStore, base: dict, err: BaseException, stats: GenerationStats, fail_fast: bool) -> None:
    line = first_line(err)
    log.warning("sample %s failed (%s): %s", base["sample_id"], base["method"], line)
    stats.failed += 1
    stats.errors.append(f"{base['sample_id']}: {line}")
    record = {
        **base,
        "status": "failed",
        "error": line,
        "time_s": None,
        "warmup": False,
        "nfe": None,
        "denoiser_calls": None,
    }
    # failures are not cached: a rerun tries the sample again
    store.add(record, None)
    if fail_fast:
        raise FailFast(f"run.fail_fast: stopping at sample {base['sample_id']}: {line}") from err


def metric_update(metric: Metric, batch: list[ScoreItem], method: str) -> list[dict[str, float]]:
    """``metric.update(batch)``, with a failure or a wrong number of results as one line naming the metric, the
    method and the batch's samples (the run's records and artifacts are untouched; nothing is written)."""
    from benchmark.models import MissingWeightsError

    ids = [item.sample.id for item in batch]
    where = f"metric '{metric.name}' on {method} samples {ids[0]}" + (f"..{ids[-1]}" if len(ids) > 1 else "")
    try:
        values = list(metric.update(batch))
    except MissingWeightsError:
        raise
    except Exception as err:  # noqa: BLE001 — a metric's own bug or a value it cannot take: said with where
        raise ValueError(f"{where}: {first_line(err)}") from err
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


def score(
    run_dir: Path,
    dataset: EditDataset,
    dataset_cfg: Any,
    metrics_cfg: Any,
    cache_dir: Path | None = None,
    info: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every stored sample of a run with a metric preset; returns (long rows, dataset-level values).

    Each metric is prepared once (its networks load once per process, dataset statistics are read or built once),
    then scores every method's samples in batches of ``batch_size``. ``info`` (optional) receives the skipped
    optional metrics, each value's direction, and the content fingerprint of each scored sample (by record key).
    ``records``: the run's records when the caller has read them already.

    A sample that can no longer be scored (its dataset sample or a stored artifact is gone or unreadable, or it has
    left the dataset's selection) is one warning line and a failure in the tables, not a silent gap. A sample whose
    content differs from when the run was first scored (``sample_fingerprints.json``) is one warning line.
    """
    from benchmark.store import read_fingerprints, score_fingerprint

    records = load_records(run_dir) if records is None else records
    metrics, skipped = prepare_metrics(
        build_metrics(metrics_cfg), score_context(dataset, dataset_cfg, metrics_cfg, cache_dir)
    )
    if info is not None:
        info["skipped_metrics"] = skipped
        info["higher_is_better"] = {k: v for m in metrics for k, v in m.directions().items()}
    batch_size = int(metrics_cfg.get("batch_size", 16))
    scores: dict[tuple[str, str], dict[str, float]] = {}
    dataset_rows = []
    by_method: dict[str, dict[str, dict]] = {}
    for rec in records:
        if rec["status"] == "ok":
            by_method.setdefault(rec["method"], {})[rec["sample_id"]] = rec
    known_fps = read_fingerprints(run_dir)
    current_fps: dict[str, str] = {}  # record key -> content fingerprint now
    by_id_fp: dict[str, str] = {}  # sample id -> fingerprint, computed once for all methods
    changed: set[str] = set()
    failed: dict[tuple[str, str], str] = {}
    producers: dict[str, int] = {}  # value name -> index of the metric entry that produces it

    def fail(method: str, sample_id: str, line: str) -> None:
        log.warning("sample %s (%s) cannot be scored, counted as failed: %s", sample_id, method, line)
        failed[(method, sample_id)] = line

    for method, recs in by_method.items():
        for m in metrics:
            m.reset()
        batch: list[ScoreItem] = []

        def flush(batch: list[ScoreItem] = batch, method: str = method) -> None:
            if not batch:
                return
            for index, m in enumerate(metrics):
                for item, values in zip(batch, metric_update(m, batch, method), strict=True):
                    held = scores.setdefault((method, item.sample.id), {})
                    for value_name, value in values.items():
                        if value_name in held and not _same_value(held[value_name], value):
                            check_one_producer(value_name, index, metrics, producers)
                        producers.setdefault(value_name, index)
                    held.update(values)
            batch.clear()

        scored = 0
        seen: set[str] = set()
        for ref in iter_selected(dataset, dataset_cfg):
            rec = recs.get(ref.id)
            if rec is None:
                continue
            seen.add(ref.id)
            try:
                sample = ref.load()
                if "artifacts" not in rec:
                    raise SampleError(f"{run_dir / 'records.jsonl'}: field 'artifacts': missing")
                output = read_output(run_dir / rec["artifacts"], rec)
            except SampleError as err:
                fail(method, ref.id, first_line(err))
                continue
            if ref.id not in by_id_fp:
                by_id_fp[ref.id] = score_fingerprint(sample)
            ident = str(rec.get("key") or f"{method}/{ref.id}")
            current_fps[ident] = by_id_fp[ref.id]
            if known_fps.get(ident, current_fps[ident]) != current_fps[ident] and ref.id not in changed:
                changed.add(ref.id)
                log.warning(
                    "sample %s: its dataset content (image, GT mask, prompts or reference edit) changed since the "
                    "run was scored; its values compare the stored edit with the new data",
                    ref.id,
                )
            batch.append(ScoreItem(sample, output, rec))
            scored += 1
            if len(batch) >= batch_size:
                flush()
        flush()
        for sample_id in sorted(set(recs) - seen):
            fail(method, sample_id, f"no longer in the dataset's selection ({dataset.describe().get('name')})")
        for m in metrics:
            for name, value in m.compute().items():
                dataset_rows.append(
                    {
                        "method": method,
                        "metric": name,
                        "mean": value,
                        "std": math.nan,
                        "ci95": math.nan,
                        "n": scored,
                        "failures": len(recs) - scored,
                    }
                )
    if info is not None:
        # the first scoring fixes each sample's content: the stored fingerprints win over today's
        info["fingerprints"] = {**current_fps, **known_fps}
        info["changed_samples"] = sorted(changed)
    # a sample that could not be scored is a failure in the tables (its record on disk is unchanged)
    tabulated = [
        {**rec, "status": "failed", "error": line} if (line := failed.get((rec["method"], rec["sample_id"]))) else rec
        for rec in records
    ]
    return long_rows(tabulated, scores), pd.DataFrame(dataset_rows)


def run_cache_dir(cfg: DictConfig) -> Path | None:
    """``run.cache_dir`` of a (possibly reloaded) run config; None when it cannot be resolved outside Hydra."""
    try:
        value = cfg.run.cache_dir
    except Exception:  # noqa: BLE001 — an unresolvable ${hydra:...} interpolation in a reloaded config
        return None
    return Path(str(value)).expanduser() if value else None


def finalize(
    run_dir: Path,
    cfg: DictConfig,
    dataset: EditDataset,
    extra: dict[str, Any] | None = None,
    metrics_cfg: Any = None,
    out_dir: Path | None = None,
    records: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Score, tabulate and stamp a run directory (its tables into ``out_dir`` when given: a re-score beside the
    run, which stays as it was). ``records``: the run's records when the caller has read them. Returns the
    summary."""
    from benchmark.store import write_fingerprints

    metrics_cfg = metrics_cfg if metrics_cfg is not None else cfg.metrics
    out_dir = Path(out_dir or run_dir)
    info: dict[str, Any] = {}
    long, dataset_values = score(run_dir, dataset, cfg.dataset, metrics_cfg, run_cache_dir(cfg), info, records)
    if out_dir.resolve() == Path(run_dir).resolve():
        # the first scoring fixes each sample's content; later re-scores compare against it (old values kept)
        write_fingerprints(run_dir, info["fingerprints"])
    long.to_parquet(out_dir / "samples.parquet", index=False)
    summary = add_speedup(summarize(long, dataset_values=dataset_values), metrics_cfg.get("reference_method"))
    scales = metrics_cfg.get("table_scales")
    directions = {**SPEED_DIRECTIONS, **info.get("higher_is_better", {})}
    md = write_tables(out_dir, summary, scales=dict(scales) if scales else None, directions=directions)
    results_json(
        out_dir / "results.json",
        {
            "summary": summary.to_dict(orient="records"),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "metrics_config": OmegaConf.to_container(metrics_cfg, resolve=True)
            if isinstance(metrics_cfg, DictConfig)
            else metrics_cfg,
            "dataset": {**dataset.describe(), "checksum": dataset.checksum()},
            "skipped_metrics": info.get("skipped_metrics", []),
            "higher_is_better": directions,
            "provenance": stamp(),
            **(extra or {}),
        },
    )
    print(f"\nResults ({out_dir}):\n{md}\n", flush=True)
    return summary


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


def run(cfg: DictConfig, run_dir: Path) -> pd.DataFrame:
    from benchmark.loggers import build_logger
    from benchmark.plugins import absolute_entries, load_plugins

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
    cache = SampleCache(Path(cfg.run.cache_dir).expanduser())
    set_aside_previous_records(run_dir)
    store = RunStore(run_dir)
    models = ModelBundle(cfg.model, cache_dir=Path(cfg.run.model_cache).expanduser())
    total = count_selected(dataset, cfg.dataset)
    all_stats = []
    for mcfg in method_configs(cfg):
        method = build_method(mcfg, models)
        skip = method.skip_reason()
        if skip is None:
            try:
                stats = generate(
                    method,
                    mcfg,
                    iter_selected(dataset, cfg.dataset),
                    models,
                    store,
                    cache,
                    seed,
                    bool(cfg.run.fail_fast),
                    total,
                    reuse_cache=bool(cfg.run.get("reuse_cache", True)),
                )
            except MissingWeightsError as err:
                skip = str(err)
        if skip is not None:
            print(f"skipping method {method.name}: {skip}", file=sys.stderr, flush=True)
            log.info("skipping method %s: %s", method.name, skip)
            all_stats.append(GenerationStats(method.name, skipped_reason=skip))
            continue
        log.info(
            "%s: %d computed, %d reused from cache, %d failed", method.name, stats.computed, stats.reused, stats.failed
        )
        print(
            f"{method.name}: {stats.computed} computed, reused {stats.reused} cached samples, {stats.failed} failed"
            # a reused sample keeps the time measured when it was computed, maybe on another machine or load
            + (
                " (their times are from when they were computed; run.reuse_cache=false re-times)"
                if stats.reused
                else ""
            ),
            flush=True,
        )
        all_stats.append(stats)
    summary = finalize(
        run_dir, cfg, dataset, extra={"generation": [s.__dict__ for s in all_stats], "model": models.describe()}
    )
    logger = build_logger(cfg.get("logger"), run_dir)
    if logger is not None:
        logger.log_run(cfg, run_dir, summary)
    skipped = [s for s in all_stats if s.skipped_reason]
    if skipped and cfg.get("method") is not None:
        # the user asked for this method by name: a skip is an error (the run's tables are on disk regardless)
        raise MethodsSkipped(f"method {skipped[0].method} did not run: {skipped[0].skipped_reason}")
    return summary


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config a run was made with: ``results.json``'s (resolved inside the run, so paths such as
    ``run.cache_dir`` are the ones it used), else Hydra's saved ``.hydra/config.yaml`` of a run that stopped before
    its tables, with ``${hydra:...}`` resolved from the run's own ``.hydra/hydra.yaml``."""
    results = run_dir / "results.json"
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if results.exists():
        try:
            config = json.loads(results.read_text())["config"]
            if not isinstance(config, dict):
                raise TypeError("not an object")
            return OmegaConf.create(config)
        except (ValueError, KeyError, TypeError) as err:  # truncated or hand-edited: Hydra's copy is as good
            problem = f"{results}: field 'config': unreadable ({first_line(err)})"
            if not hydra_cfg.exists():
                raise ValueError(f"{problem}, and no .hydra/config.yaml to fall back on") from err
            log.warning("%s; using %s", problem, hydra_cfg)
    if not hydra_cfg.exists():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no results.json or .hydra/config.yaml)")
    text = hydra_cfg.read_text()
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        # ${hydra:runtime.cwd} and the like: the values the run had (outside a Hydra app the resolver has none)
        hydra_node = OmegaConf.load(hydra_yaml).hydra

        def run_value(match: re.Match) -> str:
            value = OmegaConf.select(hydra_node, match.group(1), throw_on_resolution_failure=False)
            return match.group(0) if value is None else str(value)

        text = re.sub(r"\$\{hydra:([\w.]+)\}", run_value, text)
    cfg = OmegaConf.create(text)
    try:
        OmegaConf.resolve(cfg)
    except Exception as err:  # noqa: BLE001 — e.g. an environment variable the run had; values stay as written
        log.warning("%s: config not fully resolvable outside its run (%s)", hydra_cfg, error_line(err))
    return cfg
