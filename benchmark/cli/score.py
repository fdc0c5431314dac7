"""``emb score RUN_DIR [overrides]``: re-score a finished run's stored samples, no method runs."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmark.cli.common import compose, emb_log_handlers, one_line, print_error, remove_log_handlers


def rescoring_metrics(run_metrics: Any, overrides: list[str], metrics_file: str | None) -> Any:
    """The metric set ``emb score`` uses: the run's own, or ``metrics=NAME`` / ``--metrics-file``, with dotted
    ``metrics.KEY=VALUE`` overrides applied to it (``metrics.metrics.0.threshold=0.3``: the first metric's
    threshold), parsed by Hydra's override grammar. Any other override is an error: only scoring can change."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from omegaconf import OmegaConf

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ValueError(f"emb score: {str(err).splitlines()[0]}") from err
    others = [o.input_line for o in parsed if o.key_or_group.split(".")[0] != "metrics"]
    if others:
        raise ValueError(f"emb score: only metrics overrides change a re-score; not {', '.join(others)}")
    metrics_cfg = run_metrics
    groups = [o.input_line for o in parsed if o.key_or_group == "metrics"]
    if groups:
        metrics_cfg = compose(groups).metrics
    if metrics_file:
        metrics_cfg = OmegaConf.load(metrics_file)
    root = OmegaConf.create({"metrics": OmegaConf.to_container(metrics_cfg)})
    for o in parsed:
        if o.key_or_group == "metrics":
            continue
        if o.is_delete():
            raise ValueError(f"emb score: deleting keys is not supported ({o.input_line})")
        OmegaConf.update(root, o.key_or_group, o.value(), merge=True, force_add=o.is_add())
    return root.metrics


def cmd_score(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.datasets import build_dataset
    from benchmark.metrics import check_metric_weights
    from benchmark.models import MissingWeightsError
    from benchmark.plugins import PluginError, load_plugins
    from benchmark.registry import UnknownNameError
    from benchmark.rundir import RunFolder, generation_record, tables_metric_set
    from benchmark.scoring import score_run

    # HydraException: e.g. metrics=NAME that does not exist
    errors = (
        MissingWeightsError,
        UnknownNameError,
        ValueError,
        FileNotFoundError,
        OmegaConfBaseException,
        HydraException,
    )
    run = RunFolder(Path(args.run_dir))
    out = RunFolder(Path(args.out)) if args.out else run
    # warnings of the checks (unreadable record lines) show now; score.log gets them once it exists
    handlers = emb_log_handlers(console=True, hold=True)
    try:
        # everything that can be checked is checked before anything is written: a failed re-score leaves the
        # run's tables and the --out folder as they were
        try:
            cfg = run.load_config()
            try:  # the run's own: its dataset loader or metrics may come from them
                load_plugins(cfg.get("plugins"))
            except PluginError as err:  # gone since the run; a re-score that needs it fails on the name it lacks
                logging.getLogger("emb").warning("%s (from the run's config); re-scoring without it", err)
            load_plugins(args.plugins, key="--plugins")
            metrics_cfg = rescoring_metrics(cfg.metrics, args.overrides, args.metrics_file)
            records = run.records()
            if not records:
                raise ValueError(
                    f"{run.records_path}: no readable records (file missing or empty); nothing to score, "
                    "the run's tables are left as they were"
                )
            check_metric_weights(metrics_cfg)
            dataset = build_dataset(cfg.dataset)
        except errors as err:
            print_error(one_line(err))
            return 2
        OmegaConf.set_struct(cfg, False)
        created = not out.path.exists()
        out.path.mkdir(parents=True, exist_ok=True)
        handlers += emb_log_handlers(log_file=out.score_log_path)
        extra: dict[str, Any] = {"rescored_with": OmegaConf.to_container(metrics_cfg, resolve=True)}
        kept = None
        if out.path.resolve() != run.path.resolve():
            # where the artifacts are, and the overrides as columns for `emb table` (as a sweep job's)
            extra.update(rescored_from=os.path.relpath(run.path, out.path), rescore_overrides=list(args.overrides))
        else:
            previous = run.read_results("its generation record is not carried over, its tables not compared")
            extra.update(generation_record(previous))
            if tables_metric_set(previous) not in (None, OmegaConf.to_container(metrics_cfg, resolve=True)):
                kept = run.keep_previous_tables()  # another metric set replaces the run's tables: keep a copy
        try:
            scored = score_run(
                run.path, cfg, dataset, extra=extra, metrics_cfg=metrics_cfg, out_dir=out.path, records=records
            )
        except errors as err:
            # one clear line; the run's records and artifacts are untouched
            if kept is not None:
                shutil.rmtree(kept)
            print_error(one_line(err))
            if created and out.holds_only_score_log():
                remove_log_handlers(handlers)  # closes score.log before it goes
                handlers = []
                out.score_log_path.unlink()
                out.path.rmdir()  # no folder holding only the log of a re-score that wrote nothing
            return 2
        print(f"\nResults ({scored.out_dir}):\n{scored.markdown}\n", flush=True)
        if kept is not None:
            print(f"the run's earlier tables were kept in {kept}", file=sys.stderr)
    finally:
        remove_log_handlers(handlers)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_score = sub.add_parser("score", help="re-score a finished run without running any method")
    p_score.add_argument("run_dir")
    p_score.add_argument("overrides", nargs="*", help="e.g. metrics=pie_bench metrics.batch_size=8")
    p_score.add_argument("--metrics-file", help="a metrics preset YAML outside conf/ (same keys as conf/metrics/*)")
    p_score.add_argument(
        "--out", help="write the re-score's tables to this folder instead of RUN_DIR (the run stays as it was)"
    )
    p_score.add_argument(
        "--plugins",
        nargs="+",
        default=[],
        help="modules or .py files to import besides the run's own plugins (e.g. a metric kept outside the checkout)",
    )
    p_score.set_defaults(fn=cmd_score)
