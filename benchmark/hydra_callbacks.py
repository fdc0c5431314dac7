"""Hydra callback: at the end of a multirun, merge every job's summary into one ``summary.csv`` at the sweep root."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("emb")


class MergeSweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from benchmark.tables import merge_runs

        root = Path(config.hydra.sweep.dir)
        merged = merge_runs([root])
        if merged.empty:
            log.warning("sweep %s: no finished job summaries to merge", root)
            return
        from benchmark.tables import pivot, summary_keys

        merged.to_csv(root / "summary.csv", index=False)
        table = pivot(merged, summary_keys(merged)).to_markdown()
        (root / "summary.md").write_text(table + "\n")
        print(f"\nMerged summary ({root / 'summary.csv'}):\n{table}\n", flush=True)
