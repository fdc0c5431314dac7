"""Hydra callback: at the end of a multirun, merge every job's summary into one ``summary.csv`` at the sweep root."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SWEEP_FILE = "sweep.json"  # the sweep root's provenance: versions, git state, and each job's folder and overrides


class MergeSweepSummary(Callback):
    def __init__(self) -> None:
        self.job_dirs: list[Path] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.job_dirs = []

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        # this sweep's jobs: a sweep into a folder an earlier sweep used must not merge the earlier jobs
        self.job_dirs.append(Path(config.hydra.runtime.output_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from benchmark.app import JOB_ERROR_FILE
        from benchmark.tables import (
            find_run_dirs,
            merge_runs,
            pivot,
            pivot_markdown,
            run_directions,
            run_label,
            summary_keys,
        )

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
        write_sweep_file(root, jobs)
        merged = merge_runs(jobs, roots=[root])
        if merged.empty:
            print(f"WARNING sweep {root}: no finished job summaries to merge", file=sys.stderr)
        else:
            merged.to_csv(root / "summary.csv", index=False)
            table = pivot_markdown(pivot(merged, summary_keys(merged)), run_directions(jobs))
            (root / "summary.md").write_text(table + "\n")
            print(f"\nMerged summary ({root / 'summary.csv'}):\n{table}\n", flush=True)
        failed = [job / JOB_ERROR_FILE for job in jobs if (job / JOB_ERROR_FILE).exists()]
        if failed:
            names = ", ".join(run_label(p.parent, [root]) for p in failed)
            print(
                f"error: {len(failed)} job(s) of the sweep failed: {names} (each job's error line is above and in its "
                f"{JOB_ERROR_FILE}); the merged summary has the others",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(2)  # after the merge: what finished is tabulated


def write_sweep_file(root: Path, jobs: list[Path]) -> None:
    """``sweep.json``: what made the merged tables (versions, git state) and which job folder holds which overrides."""
    from benchmark.provenance import stamp
    from benchmark.tables import run_label, swept_values

    entries = [{"run": run_label(job, [root]), "overrides": swept_values(job) if job.exists() else {}} for job in jobs]
    payload = {"provenance": stamp(), "jobs": entries}
    (root / SWEEP_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n")
