"""``emb report RUN_DIR [--published NAME]``: a run's numbers beside a paper's published ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import emb_log_handlers, one_line, print_error, remove_log_handlers


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.reports import write_report
    from benchmark.rundir import RunFolder

    run_dir = Path(args.run_dir)
    published = args.published
    handlers = emb_log_handlers(console=True)  # e.g. "results.json unreadable; using .hydra/config.yaml"
    try:
        if published is None:
            try:
                published = RunFolder(run_dir).load_config().get("published")
            except ValueError as err:
                print_error(one_line(err))
                return 2
    finally:
        remove_log_handlers(handlers)
    if not published:
        print_error(f"{run_dir}: the run's config names no `published` table; pass --published NAME")
        return 2
    bad = [item for item in args.rename if "=" not in item.strip("=")]
    if bad:
        print_error(f"--rename {bad[0]}: expected PAPER_METHOD=OUR_METHOD")
        return 2
    rename = dict(item.split("=", 1) for item in args.rename)
    try:
        text = write_report(run_dir, published, rename)
    except ValueError as err:  # a damaged summary.csv / results.json: one line naming it (a missing one: main())
        print_error(str(err))
        return 2
    print(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_report = sub.add_parser("report", help="a run's numbers beside a paper's (reports/published/*.yaml)")
    p_report.add_argument("run_dir")
    p_report.add_argument("--published", help="name in reports/published/ or a YAML path (default: the run's)")
    p_report.add_argument("--rename", nargs="*", default=[], help="PAPER_METHOD=OUR_METHOD pairs")
    p_report.set_defaults(fn=cmd_report)
