"""The Hydra application (``emb run`` and ``python -m benchmark``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from benchmark.provenance import PROJECT_ROOT

log = logging.getLogger("emb")
JOB_ERROR_FILE = "job_error.txt"  # a multirun job's one-line error
CONFIG_PATH = str(PROJECT_ROOT / "conf")


@hydra.main(config_path=CONFIG_PATH, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from benchmark.models import MissingWeightsError
    from benchmark.registry import UnknownNameError
    from benchmark.runner import FailFast, MethodsSkipped, run

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # an earlier sweep's failure in this job folder is not this job's
    (run_dir / JOB_ERROR_FILE).unlink(missing_ok=True)
    try:
        summary = run(cfg, run_dir)
    except (MissingWeightsError, UnknownNameError, FailFast, MethodsSkipped, FileNotFoundError, ValueError) as err:
        # one clear line, not a traceback; what finished is already on disk
        print(f"error: {err}", file=sys.stderr, flush=True)
        log.info("error: %s", err)
        if HydraConfig.get().mode.name == "MULTIRUN":
            # the sweep's other jobs go on and its merged summary is still written; the sweep's end lists the
            # failed jobs from this file and exits 2 (see hydra_callbacks.MergeSweepSummary)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / JOB_ERROR_FILE).write_text(f"{err}\n")
            return float("nan") if cfg.get("objective") else None
        sys.exit(2)
    except KeyboardInterrupt:
        # Ctrl-C: every finished sample is already on disk; say where and how to go on, no traceback
        from benchmark.store import load_records

        records = run_dir / "records.jsonl"
        done = len(load_records(run_dir))  # skips a line cut off by the interrupt
        print(
            f"\ninterrupted: {done} finished sample(s) kept in {records}; rerun the same command to resume "
            f"(cached samples are reused), or `emb score {run_dir}` to tabulate what finished",
            file=sys.stderr,
            flush=True,
        )
        log.info("interrupted after %d finished samples", done)
        sys.exit(130)
    # Optuna and other sweepers minimise/maximise the returned value
    objective = cfg.get("objective")
    if objective:
        rows = summary[(summary["edit_type"] == "all") & (summary["metric"] == objective)]
        return float(rows["mean"].mean()) if len(rows) else float("nan")
    return None
