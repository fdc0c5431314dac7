"""Hydra callback: at the end of a multirun, merge every job's summary into one ``summary.csv`` at the sweep root;
with an ``objective`` (an Optuna search), name the best job there too."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from benchmark.rundir import SweepBest


class MergeSweepSummary(Callback):
    def __init__(self) -> None:
        self.job_dirs: list[Path] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.job_dirs = []

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        # this sweep's jobs: a sweep into a folder an earlier sweep used must not merge the earlier jobs
        self.job_dirs.append(Path(config.hydra.runtime.output_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from benchmark.rundir import JOB_ERROR_FILE, RunFolder, find_run_dirs, run_directions, write_sweep_summary
        from benchmark.tables import merge_runs, pivot, pivot_markdown, run_label, summary_keys

        root = Path(config.hydra.sweep.dir)
        # a launcher that runs jobs in other processes calls on_job_end there: then every job below the root
        below = [p for p in find_run_dirs([root]) if p != root]
        jobs = self.job_dirs or below
        earlier = sorted({p.resolve() for p in below} - {p.resolve() for p in jobs})
        if earlier:
            names = ", ".join(run_label(p, [root]) for p in earlier)
            # printed: after the last job Hydra's own logging config is back, which does not show the emb logger
            print(
                f"WARNING sweep {root}: {len(earlier)} earlier sweep folder(s) left out of the merge: {names}",
                file=sys.stderr,
            )
        best = best_job(config, root, jobs)
        write_sweep_record(root, jobs, best)
        merged = merge_runs(jobs, roots=[root])
        if merged.empty:
            print(f"WARNING sweep {root}: no finished job summaries to merge", file=sys.stderr)
        else:
            table = pivot_markdown(pivot(merged, summary_keys(merged)), run_directions(jobs))
            table += f"\n\n{best.line()}" if best else ""
            csv = write_sweep_summary(root, merged, table)
            print(f"\nMerged summary ({csv}):\n{table}\n", flush=True)
        failed = [job for job in jobs if RunFolder(job).has_job_error()]
        if failed:
            names = ", ".join(run_label(job, [root]) for job in failed)
            print(
                f"error: {len(failed)} job(s) of the sweep failed: {names} (each job's error line is above and in its "
                f"{JOB_ERROR_FILE}); the merged summary has the others",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(2)  # after the merge: what finished is tabulated


def write_sweep_record(root: Path, jobs: list[Path], best: SweepBest | None = None) -> None:
    """The sweep root's ``sweep.json``: what made the merged tables, which job folder holds which overrides and,
    with an objective, the best job."""
    from benchmark.provenance import stamp
    from benchmark.rundir import RunFolder, SweepJob, write_sweep_file
    from benchmark.tables import run_label

    entries = [SweepJob(run_label(job, [root]), RunFolder(job).swept_values() if job.exists() else {}) for job in jobs]
    write_sweep_file(root, entries, stamp(), best)


def objective_direction(config: DictConfig, objective: str, jobs: list[Path]) -> str | None:
    """maximize / minimize: the sweeper's own ``direction`` when it has one (what Optuna optimised), else the
    metric's (its ``higher_is_better`` in the jobs' results); a sweeper going against the metric is one warning."""
    from benchmark.rundir import run_directions

    higher = run_directions(jobs).get(objective)
    metric_way = None if higher is None else ("maximize" if higher else "minimize")
    chosen = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    chosen = getattr(chosen, "name", chosen)  # Optuna's config default is an enum member
    if not isinstance(chosen, str):
        return metric_way
    if metric_way and chosen != metric_way:
        print(
            f"WARNING the sweeper's direction is {chosen} but {objective} is better when it is the other way",
            file=sys.stderr,
        )
    return chosen


def best_job(config: DictConfig, root: Path, jobs: list[Path]) -> SweepBest | None:
    """The finished job with the best ``objective`` value (the first of equals), with the overrides that vary
    between the jobs; None without an objective or a finished job that has its value."""
    from benchmark.rundir import RunFolder, SweepBest
    from benchmark.tables import objective_value, run_label

    objective = config.get("objective")
    direction = objective_direction(config, str(objective), jobs) if objective else None
    if not objective or direction is None:
        return None
    values = []
    for job in jobs:
        folder = RunFolder(job)
        summary = folder.read_summary() if job.exists() and not folder.has_job_error() else None
        value = objective_value(summary, str(objective)) if summary is not None else math.nan
        if not math.isnan(value):
            values.append((value, job))
    if not values:
        return None
    value, job = (max if direction == "maximize" else min)(values, key=lambda pair: pair[0])
    settings = [RunFolder(j).swept_values() for _, j in values]
    varying = {k for k in set().union(*settings) if len({str(s.get(k)) for s in settings}) > 1}
    overrides = {k: v for k, v in RunFolder(job).swept_values().items() if k in varying}
    return SweepBest(str(objective), direction, value, run_label(job, [root]), overrides)
