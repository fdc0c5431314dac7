"""The harness's own overhead: the wall time of a run spent outside method calls and metric computation.

One run (``benchmark.runner.run``, in this process, as `emb run` calls it) of the default run's data and methods (the
toy world's 16 edits, every method of ``methods:``, the toyworld metric preset) with the tiny model, from an empty
sample cache. Its wall time is split into exclusive parts by wrapping the functions that do each job:

- method: building the adapter and every ``edit`` call (model loading happens there, lazily);
- metrics: ``prepare_metrics`` (networks, dataset statistics), every ``update`` and ``compute``;
- the harness's own parts: decoding dataset samples, the sample cache and run folder (writes, hard links, reads of
  stored outputs), tables and results files, the rest (config, method list, loggers, bookkeeping).

Time inside a method or a metric call is theirs, whatever it calls (a metric that decodes samples for its real-image
statistics spends metric time). Goal: the harness's share of the whole ≤ 3%.

A second, identical run (another empty cache) under cProfile lists the harness functions where that share goes
(``--top``; cProfile slows Python code down, so read its numbers as proportions, not as the timed run's).

Last line: ``harness share of the run: X.X% (goal <= 3%)``.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import io
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OWNED = ("method", "metrics")  # a part that owns everything its calls do
OTHER = "harness: the rest (config, method list, bookkeeping)"


class PartClock:
    """Exclusive wall time per part: the innermost wrapped call's part gets the time, except inside a method or
    metric call, which keeps all of it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack = [OTHER]
        self.mark = time.perf_counter()

    def switch(self, part: str | None) -> None:
        now = time.perf_counter()
        self.totals[self.stack[-1]] += now - self.mark
        self.mark = now
        if part is None:
            self.stack.pop()
        else:
            self.stack.append(self.stack[-1] if self.stack[-1] in OWNED else part)

    def wrap(self, part: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.switch(part)
            try:
                return fn(*args, **kwargs)
            finally:
                self.switch(None)

        return timed

    def wrap_iter(self, part: str, fn: Callable[..., Iterator]) -> Callable[..., Iterator]:
        """A generator function whose every step (and the samples' ``load``) is timed as ``part``."""

        def timed(*args: Any, **kwargs: Any) -> Iterator:
            it = fn(*args, **kwargs)
            while True:
                self.switch(part)
                try:
                    ref = next(it)
                except StopIteration:
                    return
                finally:
                    self.switch(None)
                yield dataclasses.replace(ref, load=self.wrap(part, ref.load))

        return timed


def instrument(clock: PartClock) -> None:
    """Wrap the functions of each part where the runner and the scorer look them up."""
    from benchmark import rundir, runner, scoring, store, tables

    decode = "harness: decoding dataset samples"
    folder = "harness: sample cache and run folder (writes, links, reads)"
    tabulate = "harness: tables and results files"

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        method = build_method(*args, **kwargs)
        method.edit = clock.wrap("method", method.edit)
        return method

    build_method = runner.build_method
    runner.build_method = clock.wrap("method", timed_build)
    scoring.prepare_metrics = clock.wrap("metrics", scoring.prepare_metrics)
    scoring.metric_update = clock.wrap("metrics", scoring.metric_update)
    scoring._Scorer.dataset_rows = clock.wrap("metrics", scoring._Scorer.dataset_rows)
    for module in (runner, scoring):
        module.iter_selected = clock.wrap_iter(decode, module.iter_selected)
    for name in ("get", "put"):
        setattr(store.SampleCache, name, clock.wrap(folder, getattr(store.SampleCache, name)))
    for name in ("add", "start", "read_output", "records", "read_fingerprints", "write_fingerprints"):
        setattr(rundir.RunFolder, name, clock.wrap(folder, getattr(rundir.RunFolder, name)))
    for name in ("write_long_table", "write_results", "write_summary"):
        setattr(rundir.RunFolder, name, clock.wrap(tabulate, getattr(rundir.RunFolder, name)))
    scoring.long_rows = clock.wrap(tabulate, tables.long_rows)
    scoring.summarize = clock.wrap(tabulate, tables.summarize)
    scoring.write_tables = clock.wrap(tabulate, tables.write_tables)


def config(tmp: Path, limit: int, threads: int) -> Any:
    """The default run's config with the tiny model: its sample cache in ``tmp``, the models in ``tmp``'s parent."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", f"dataset.limit={limit}", f"run.num_threads={threads}"])
    with open_dict(cfg):
        cfg.run.cache_dir = str(tmp / "cache")
        cfg.run.model_cache = str(tmp.parent / "models")
    return cfg


def one_run(cfg: Any, run_dir: Path) -> float:
    from benchmark.runner import run

    t0 = time.perf_counter()
    run(cfg, run_dir)
    return time.perf_counter() - t0


def harness_profile(cfg: Any, run_dir: Path, top: int) -> str:
    """cProfile of a run: the functions of benchmark/ by their own time (tottime), the method and metric code left
    out (methods/, benchmark/metrics/)."""
    profiler = cProfile.Profile()
    profiler.enable()
    one_run(cfg, run_dir)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "/benchmark/" in file and "/benchmark/metrics/" not in file:
            rows.append((own, cumulative, calls, f"{Path(file).relative_to(ROOT)}:{line}({name})"))
    rows.sort(reverse=True)
    out = io.StringIO()
    out.write(f"{'own s':>8} {'cum s':>8} {'calls':>7}  function (cProfile; harness code only)\n")
    for own, cumulative, calls, where in rows[:top]:
        out.write(f"{own:8.3f} {cumulative:8.3f} {calls:7d}  {where}\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=16, help="samples (the default run: 16)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=15, help="harness functions listed by the profile")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("emb").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="emb-overhead-") as tmp:
        folder = Path(tmp)
        # models built and saved once, imports done: what every later run finds in place
        one_run(config(folder / "warm", 1, args.threads), folder / "warm-run")
        if args.profile:
            profile = harness_profile(config(folder / "profiled", args.limit, args.threads), folder / "p", args.top)
        cfg = config(folder / "timed", args.limit, args.threads)
        clock = PartClock()
        instrument(clock)
        clock.mark = time.perf_counter()
        total = one_run(cfg, folder / "timed-run")
        clock.switch(None)  # the last stretch
    parts = dict(clock.totals)
    harness = sum(t for part, t in parts.items() if part not in OWNED)
    if args.profile:
        print(profile)
    print(f"default run's methods, tiny model, {args.limit} toy-world samples, threads {args.threads}: {total:.2f} s")
    for part, t in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {part:62s} {t:8.2f} s {100 * t / total:6.2f}%")
    print(f"harness share of the run: {100 * harness / total:.1f}% (goal <= 3%)")


if __name__ == "__main__":
    main()
