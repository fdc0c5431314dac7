"""Hydra callback: at the end of a multirun, merge every job's summary into one ``summary.csv`` at the sweep root."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("emb")


class MergeSweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from benchmark.app import JOB_ERROR_FILE
        from benchmark.tables import merge_runs, pivot, pivot_markdown, summary_keys

        root = Path(config.hydra.sweep.dir)
        merged = merge_runs([root])
        if merged.empty:
            log.warning("sweep %s: no finished job summaries to merge", root)
        else:
            merged.to_csv(root / "summary.csv", index=False)
            table = pivot_markdown(pivot(merged, summary_keys(merged)))
            (root / "summary.md").write_text(table + "\n")
            print(f"\nMerged summary ({root / 'summary.csv'}):\n{table}\n", flush=True)
        failed = sorted(root.rglob(JOB_ERROR_FILE))
        if failed:
            jobs = ", ".join(str(p.parent.relative_to(root)) for p in failed)
            print(
                f"error: {len(failed)} job(s) of the sweep failed: {jobs} (each job's error line is above and in its "
                f"{JOB_ERROR_FILE}); the merged summary has the others",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(2)  # after the merge: what finished is tabulated
