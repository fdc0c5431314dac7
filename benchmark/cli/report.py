"""``emb report RUN_OR_SWEEP [--published NAME]``: a run's (or a sweep's) page and plots, and a run's numbers
beside a paper's published ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import emb_log_handlers, one_line, print_error, remove_log_handlers


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.run_report import write_run_report, write_sweep_report
    from benchmark.rundir import RunFolder

    path = Path(args.run_dir)
    if not path.is_dir():
        print_error(f"{path}: no such folder (emb report takes a run or a sweep folder)")
        return 2
    bad = [item for item in args.rename if "=" not in item.strip("=")]
    if bad:
        print_error(f"--rename {bad[0]}: expected PAPER_METHOD=OUR_METHOD")
        return 2
    rename = dict(item.split("=", 1) for item in args.rename)
    folder = RunFolder(path)
    published = args.published
    handlers = emb_log_handlers(console=True)  # e.g. "results.json unreadable; using .hydra/config.yaml"
    try:
        if not folder.is_run() and published is None:  # a sweep, or a folder of runs
            outcome = write_sweep_report(path)
        else:
            if published is None:
                published = folder.load_config().get("published")
            outcome = write_run_report(path, published or None, rename)
    except ValueError as err:  # a damaged summary.csv / results.json: one line naming it (a missing one: main())
        print_error(one_line(err))
        return 2
    finally:
        remove_log_handlers(handlers)
    if outcome.comparison is not None:
        print(outcome.comparison.markdown)
    elif folder.is_run():
        print(f"{path}: the run's config names no `published` table (--published NAME compares with one)")
    print(f"report: {outcome.html} ({len(outcome.plots)} plots, PNG and SVG, in {folder.plots_dir})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_report = sub.add_parser(
        "report", help="a run's or sweep's HTML page and plots; a run beside a paper's (reports/published/*.yaml)"
    )
    p_report.add_argument("run_dir", help="a run folder, or a sweep's folder (its jobs merged)")
    p_report.add_argument("--published", help="name in reports/published/ or a YAML path (default: the run's)")
    p_report.add_argument("--rename", nargs="*", default=[], help="PAPER_METHOD=OUR_METHOD pairs")
    p_report.set_defaults(fn=cmd_report)
