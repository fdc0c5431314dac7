"""Hydra callback: at the end of a multirun, merge every job's summary into one ``summary.csv`` at the sweep root."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


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
        write_sweep_record(root, jobs)
        merged = merge_runs(jobs, roots=[root])
        if merged.empty:
            print(f"WARNING sweep {root}: no finished job summaries to merge", file=sys.stderr)
        else:
            table = pivot_markdown(pivot(merged, summary_keys(merged)), run_directions(jobs))
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


def write_sweep_record(root: Path, jobs: list[Path]) -> None:
    """The sweep root's ``sweep.json``: what made the merged tables and which job folder holds which overrides."""
    from benchmark.provenance import stamp
    from benchmark.rundir import RunFolder, SweepJob, write_sweep_file
    from benchmark.tables import run_label

    entries = [SweepJob(run_label(job, [root]), RunFolder(job).swept_values() if job.exists() else {}) for job in jobs]
    write_sweep_file(root, entries, stamp())
