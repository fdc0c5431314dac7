"""``emb table RUN_OR_SWEEP_DIR...``: re-print and merge the tables of finished runs and sweeps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.cli.common import emb_log_handlers, print_error, remove_log_handlers


def cmd_table(args: argparse.Namespace) -> int:
    from benchmark.rundir import LONG_TABLE_FILE, find_run_dirs, run_directions
    from benchmark.tables import merge_runs, pivot, pivot_markdown, summary_keys

    missing = [d for d in args.dirs if not Path(d).exists()]
    if missing:
        print_error(f"{missing[0]}: no such folder (emb table takes run or sweep folders)")
        return 2
    handlers = emb_log_handlers(console=True)  # a damaged run folder is one warning line, the others are merged
    unreadable: list[Path] = []
    try:
        merged = merge_runs([Path(p) for p in args.dirs], unreadable)
    finally:
        remove_log_handlers(handlers)
    if merged.empty:
        what = f"readable {LONG_TABLE_FILE}" if unreadable else f"finished runs ({LONG_TABLE_FILE})"
        print_error(f"no {what} found under " + ", ".join(args.dirs))
        return 1
    types = sorted(str(t) for t in merged["edit_type"].unique())
    if args.edit_type not in types:
        print_error(f"--edit-type {args.edit_type}: not in these runs; edit types: {', '.join(types)}")
        return 2
    by = summary_keys(merged)
    if args.reference_method:
        from benchmark.metrics.speed import SPEEDUPS, add_speedup

        merged = add_speedup(merged[~merged["metric"].isin(list(SPEEDUPS))], args.reference_method, by)
    table = pivot(merged, by, edit_type=args.edit_type)
    print(pivot_markdown(table, run_directions(find_run_dirs([Path(p) for p in args.dirs]))))
    if args.out:
        merged.to_csv(args.out, index=False)
        print(f"merged summary written to {args.out}", file=sys.stderr)
    return 1 if unreadable else 0  # a merge that left a run out is not a clean success


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_table = sub.add_parser("table", help="print / merge tables of finished runs and sweeps")
    p_table.add_argument("dirs", nargs="+")
    p_table.add_argument("--edit-type", default="all")
    p_table.add_argument("--out", help="write the merged long summary as CSV")
    p_table.add_argument(
        "--reference-method", help="add speedup_time / speedup_nfe rows against this method (ratio of mean time, NFE)"
    )
    p_table.set_defaults(fn=cmd_table)
