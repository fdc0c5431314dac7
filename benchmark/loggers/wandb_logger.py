"""Weights & Biases: config, summary table and a per-sample table with the edit and mask overlays.

Offline by default (files under the run directory, ``wandb sync`` uploads them later). Every W&B folder (cache,
data, config, artifacts) is kept inside the run directory so nothing lands in the home folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from PIL import Image

from benchmark.store import load_records, read_output

log = logging.getLogger("emb")


def overlay(image: Image.Image, mask: np.ndarray | None, colour: tuple[int, int, int]) -> Image.Image:
    """The image with the mask tinted in ``colour`` (half opacity)."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if mask is None:
        return image
    if mask.shape != base.shape[:2]:
        mask = (
            np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)) > 127
        )
    tint = base.copy()
    tint[mask] = 0.5 * base[mask] + 0.5 * np.array(colour, dtype=np.float32)
    return Image.fromarray(tint.astype(np.uint8))


class WandbLogger:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def log_run(self, run_cfg: Any, run_dir: Path, summary: pd.DataFrame) -> str:
        import wandb

        from benchmark.datasets import build_dataset, iter_selected

        wdir = run_dir / "wandb_files"
        for var, sub in (
            ("WANDB_CACHE_DIR", "cache"),
            ("WANDB_DATA_DIR", "data"),
            ("WANDB_CONFIG_DIR", "config"),
            ("WANDB_ARTIFACT_DIR", "artifacts"),
        ):
            os.environ[var] = str(wdir / sub)  # per run: a multirun process must not reuse the first job's folders
        run = wandb.init(
            project=self.cfg.get("project", "editing-mask-bench"),
            entity=self.cfg.get("entity"),
            name=self.cfg.get("run_name") or run_dir.name,
            group=self.cfg.get("group"),
            tags=list(self.cfg.get("tags") or []),
            mode=self.cfg.get("mode", "offline"),
            dir=str(run_dir),
            config=OmegaConf.to_container(run_cfg, resolve=True),
            reinit="finish_previous",
        )
        try:
            run.log({"summary": wandb.Table(dataframe=summary.astype({"metric": str}))})
            for r in summary[summary["edit_type"] == "all"].itertuples():
                run.summary[f"{r.method}/{r.metric}"] = r.mean
            max_images = int(self.cfg.get("max_images", 64))
            wanted: dict[str, list[dict]] = {}  # sample id -> its ok records, one per method
            for r in load_records(run_dir):
                if r["status"] == "ok":
                    wanted.setdefault(r["sample_id"], []).append(r)
            long = pd.read_parquet(run_dir / "samples.parquet")
            values = long.pivot_table(index=["method", "sample_id"], columns="metric", values="value", aggfunc="first")
            metric_cols = list(values.columns)
            table = wandb.Table(
                columns=["method", "sample_id", "edit_type", "source", "edited", "gt_mask", "pred_mask", *metric_cols]
            )
            shown = 0
            dataset = build_dataset(run_cfg.dataset)
            for ref in iter_selected(dataset, run_cfg.dataset):
                if shown >= max_images:
                    break  # no need to stream the rest of the dataset
                if ref.id not in wanted:
                    continue
                sample = ref.load()
                for rec in wanted[ref.id]:
                    out = read_output(run_dir / rec["artifacts"], rec)
                    edited = out.image or sample.image
                    row_vals = (
                        values.loc[(rec["method"], ref.id)].tolist()
                        if (rec["method"], ref.id) in values.index
                        else [None] * len(metric_cols)
                    )
                    table.add_data(
                        rec["method"],
                        ref.id,
                        rec.get("edit_type"),
                        wandb.Image(sample.image),
                        wandb.Image(edited),
                        wandb.Image(overlay(sample.image, sample.mask, (0, 255, 0))),
                        wandb.Image(overlay(edited, out.mask, (255, 0, 0))),
                        *row_vals,
                    )
                shown += 1
            run.log({"samples": table})
            log.info("W&B run %s written to %s", run.id, run.dir)
            return run.dir
        finally:
            # one W&B run per Hydra job: finishing here keeps multirun jobs from merging into one run
            run.finish()
