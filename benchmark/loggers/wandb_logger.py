"""Weights & Biases: config, summary table, a per-sample table with the edit and mask overlays, and the report's
plots (``emb report``'s, as images under ``plots/``; ``logger.plots: false`` leaves them out).

Offline by default (files under the run directory, ``wandb sync`` uploads them later). W&B's own folders (cache,
data, config, artifacts) go to ``<run dir>/wandb_files`` for this run only, so nothing lands in the home folder;
the run itself goes to ``$WANDB_DIR`` (or ``logger.dir``) when set, else to ``<run dir>/wandb``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from benchmark.plots import overlay
from benchmark.rundir import RunFolder, SampleRecord
from benchmark.types import SampleError, error_line

log = logging.getLogger("emb")

# W&B folders read from the environment (no wandb.init argument sets them): (variable, subfolder of wandb_files)
FOLDER_VARS = (
    ("WANDB_CACHE_DIR", "cache"),
    ("WANDB_DATA_DIR", "data"),
    ("WANDB_CONFIG_DIR", "config"),
    ("WANDB_ARTIFACT_DIR", "artifacts"),
)


def hydra_job() -> Any | None:
    """The Hydra config of this process when it runs a job of a multirun (``emb run -m``), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        return None
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    mode = hydra.get("mode")
    return hydra if mode is not None and mode.name == "MULTIRUN" else None


def run_identity(cfg: Any, run_dir: Path, job: Any | None) -> tuple[str, str | None]:
    """The W&B run's (name, group). A multirun job is grouped by its sweep and named ``<sweep folder>/<job number>
    <overrides>``: Hydra's job folders are 0, 1, 2… in every sweep, so alone they would repeat across a project.
    A single run is named by its run folder. ``logger.run_name`` / ``logger.group`` win when set."""
    name, group = run_dir.name, None
    if job is not None:
        group = Path(str(job.sweep.dir)).name
        overrides = job.job.get("override_dirname")
        name = f"{group}/{job.job.num}" + (f" {overrides}" if overrides else "")
    return cfg.get("run_name") or name, cfg.get("group") or group


@contextmanager
def run_folders(wdir: Path) -> Iterator[None]:
    """W&B's cache/data/config/artifact folders under ``wdir`` while one run is logged; a variable the user set is
    kept. The previous values come back afterwards, so the next job of a multirun gets its own folders."""
    saved = {var: os.environ.get(var) for var, _ in FOLDER_VARS}
    for var, sub in FOLDER_VARS:
        os.environ.setdefault(var, str(wdir / sub))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


class WandbLogger:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def log_run(self, run_cfg: Any, run_dir: Path, summary: pd.DataFrame) -> str:
        import wandb

        name, group = run_identity(self.cfg, run_dir, hydra_job())
        with run_folders(run_dir / "wandb_files"):
            try:
                run = wandb.init(
                    project=self.cfg.get("project", "editing-mask-bench"),
                    entity=self.cfg.get("entity"),
                    name=name,
                    group=group,
                    tags=list(self.cfg.get("tags") or []),
                    mode=self.cfg.get("mode", "offline"),
                    dir=str(self.cfg.get("dir") or os.environ.get("WANDB_DIR") or run_dir),
                    config=OmegaConf.to_container(run_cfg, resolve=True),
                    reinit="finish_previous",
                )
                try:
                    self._log(run, run_cfg, run_dir, summary)
                    log.info("W&B run %s (%s) written to %s", run.id, name, run.dir)
                    return run.dir
                finally:
                    # one W&B run per Hydra job: finishing here keeps multirun jobs from merging into one run
                    run.finish()
            finally:
                # W&B reads its environment once per session (settings, the service process and its cache folder):
                # ending the session makes the next job's wandb.init start a new one with that job's folders
                wandb.teardown()

    def _log(self, run: Any, run_cfg: Any, run_dir: Path, summary: pd.DataFrame) -> None:
        import wandb

        from benchmark.datasets import build_dataset, iter_selected

        run.log({"summary": wandb.Table(dataframe=summary.astype({"metric": str}))})
        for r in summary[summary["edit_type"] == "all"].itertuples():
            run.summary[f"{r.method}/{r.metric}"] = r.mean
        max_images = int(self.cfg.get("max_images", 64))
        folder = RunFolder(run_dir)
        wanted: dict[str, list[SampleRecord]] = {}  # sample id -> its records (ok and failed), one per method
        for r in folder.records():
            wanted.setdefault(r.sample_id, []).append(r)
        long = folder.read_long_table()
        if long is None:  # logged right after scoring wrote it
            raise FileNotFoundError(f"{folder.long_table_path}: missing; `emb score {run_dir}` writes it")
        # a sample that could not be scored is failed in the tables even though its record says ok
        status = long.groupby(["method", "sample_id"])["status"].first()
        values = long.pivot_table(index=["method", "sample_id"], columns="metric", values="value", aggfunc="first")
        metric_cols = [c for c in values.columns if c != "failed"]  # the status column says it
        table = wandb.Table(
            columns=[
                "method",
                "sample_id",
                "edit_type",
                "status",
                "warmup",
                "error",
                "source",
                "edited",
                "gt_mask",
                "pred_mask",
                "image_step",  # the history step holding this sample's images (files/media/images/samples/)
                *metric_cols,
            ]
        )
        shown = 0
        dataset = build_dataset(run_cfg.dataset)
        for ref in iter_selected(dataset, run_cfg.dataset):
            if shown >= max_images:
                break  # no need to stream the rest of the dataset
            if ref.id not in wanted:
                continue
            shown += 1
            load_error = None
            try:
                sample = ref.load()
            except SampleError as err:  # its records are failures already; their rows say why, without images
                sample, load_error = None, error_line(err)
            media: dict[str, Any] = {}
            if sample is not None:
                media["samples/source"] = wandb.Image(sample.image, caption=ref.id)
                media["samples/gt_mask"] = wandb.Image(overlay(sample.image, sample.mask, (0, 255, 0)), caption=ref.id)
            rows = []  # (record, edited, pred_mask, error line)
            for rec in wanted[ref.id]:
                edited = pred = None
                error = rec.error or load_error
                if sample is not None and rec.ok:
                    try:
                        out = folder.read_output(rec)
                    except SampleError as err:  # gone since it was scored: the row says so, no image
                        error = error_line(err)
                    else:
                        edited_image = out.image or sample.image
                        edited = wandb.Image(edited_image, caption=ref.id)
                        pred = wandb.Image(overlay(edited_image, out.mask, (255, 0, 0)), caption=ref.id)
                        media[f"samples/{rec.method}/edited"] = edited
                        media[f"samples/{rec.method}/pred_mask"] = pred
                rows.append((rec, edited, pred, error))
            step = None
            if media:
                # logged as run media the PNGs are files of the offline run folder (files/media/images/samples/),
                # which `wandb sync` uploads from wherever the folder is; a table alone puts its images in an
                # artifact staged outside that folder
                step = run.step
                run.log(media)
            for rec, edited, pred, error in rows:
                key = (rec.method, ref.id)
                table.add_data(
                    rec.method,
                    ref.id,
                    rec.edit_type,
                    status.get(key, rec.status),
                    bool(rec.warmup),
                    error,
                    media.get("samples/source"),
                    edited,
                    media.get("samples/gt_mask"),
                    pred,
                    step,
                    *(values.loc[key, metric_cols].tolist() if key in values.index else [None] * len(metric_cols)),
                )
        run.log({"samples": table})
        if self.cfg.get("plots", True):
            self._log_plots(run, run_dir)

    def _log_plots(self, run: Any, run_dir: Path) -> None:
        """The run's plots (PNG, written to its ``plots/`` as ``emb report`` would) as W&B images."""
        import wandb

        from benchmark.run_report import run_plots

        made = run_plots(run_dir, svg=False)
        run.log({f"plots/{plot.name}": wandb.Image(str(plot.png), caption=plot.title) for plot in made.all()})
