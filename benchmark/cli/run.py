"""``emb run``: the Hydra application (also ``python -m benchmark``). It runs ``runner.run`` and prints what it
reports: a progress bar and one line per method while it goes, the results table at the end, an error as one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm.auto import tqdm

from benchmark.cli.common import print_error
from benchmark.datasets import SampleRef
from benchmark.provenance import CONF_DIR
from benchmark.rundir import RunFolder
from benchmark.runner import GenerationStats, RunEvents, RunResult
from benchmark.tables import objective_value

log = logging.getLogger("emb")


class ConsoleEvents(RunEvents):
    """A run's progress on the console: a progress bar per method (stderr) and its line when it is done."""

    def samples(self, method: str, refs: Iterator[SampleRef], total: int | None) -> Iterator[SampleRef]:
        bar = tqdm(refs, total=total, desc=method, unit="sample", dynamic_ncols=True, file=sys.stderr, disable=None)
        try:
            for ref in bar:
                bar.set_postfix_str(ref.id, refresh=False)
                yield ref
        finally:
            bar.close()

    def method_done(self, stats: GenerationStats) -> None:
        if stats.skipped_reason is not None:
            print(f"skipping method {stats.method}: {stats.skipped_reason}", file=sys.stderr, flush=True)
            return
        # a reused sample keeps the time measured when it was computed, maybe on another machine or load
        old_times = " (their times are from when they were computed; run.reuse_cache=false re-times)"
        print(
            f"{stats.method}: {stats.computed} computed, reused {stats.reused} cached samples, {stats.failed} failed"
            + (old_times if stats.reused else ""),
            flush=True,
        )


def print_results(result: RunResult) -> None:
    print(f"\nResults ({result.run_dir}):\n{result.markdown}\n", flush=True)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from benchmark.models import MissingWeightsError
    from benchmark.registry import UnknownNameError
    from benchmark.runner import FailFast, MethodsSkipped, run

    hydra_cfg = HydraConfig.get()
    folder = RunFolder(Path(hydra_cfg.runtime.output_dir))
    folder.clear_job_error()  # an earlier sweep's failure in this job folder is not this job's
    try:
        result = run(cfg, folder.path, searchpath=list(hydra_cfg.searchpath), events=ConsoleEvents())
    except (MissingWeightsError, UnknownNameError, FailFast, MethodsSkipped, FileNotFoundError, ValueError) as err:
        if isinstance(err, MethodsSkipped):
            print_results(err.result)  # the tables of what ran are on disk
        # one clear line, not a traceback; what finished is already on disk
        print_error(str(err))
        log.info("error: %s", err)
        if hydra_cfg.mode.name == "MULTIRUN":
            # the sweep's other jobs go on and its merged summary is still written; the sweep's end lists the
            # failed jobs from this file and exits 2 (see hydra_callbacks.MergeSweepSummary)
            folder.write_job_error(str(err))
            return float("nan") if cfg.get("objective") else None
        sys.exit(2)
    except KeyboardInterrupt:
        # Ctrl-C: every finished sample is already on disk; say where and how to go on, no traceback
        done = len(folder.records())  # skips a line cut off by the interrupt
        print(
            f"\ninterrupted: {done} finished sample(s) kept in {folder.records_path}; rerun the same command to "
            f"resume (cached samples are reused), or `emb score {folder.path}` to tabulate what finished",
            file=sys.stderr,
            flush=True,
        )
        log.info("interrupted after %d finished samples", done)
        sys.exit(130)
    print_results(result)
    # Optuna and other sweepers minimise/maximise the returned value
    objective = cfg.get("objective")
    return objective_value(result.summary, str(objective)) if objective else None


def run_app(overrides: list[str]) -> int:
    """``emb run OVERRIDES``: the Hydra app with the overrides as its command line."""
    sys.argv = ["emb run", *overrides]
    main()
    return 0
