"""``emb submit pack RUN_DIR OUT.zip [--method NAME]``: one method's results of a finished run as a leaderboard
submission (docs/leaderboard.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import print_error


def cmd_submit_pack(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.pack import MethodInfoArgs, PackError, pack_run
    from benchmark.rundir import RunFormatError

    info = MethodInfoArgs(
        description=args.description, paper_url=args.paper_url, code_url=args.code_url, hardware=args.hardware
    )
    try:
        packed = pack_run(Path(args.run_dir), Path(args.out), args.method, info)
    except (PackError, RunFormatError) as err:
        print_error(str(err))
        return 2
    print(f"wrote {args.out}: {packed.samples} samples of {packed.method} ({packed.dataset})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_submit = sub.add_parser("submit", help="make a leaderboard submission")
    submit_sub = p_submit.add_subparsers(dest="submit_cmd", required=True)
    p_pack = submit_sub.add_parser(
        "pack", help="one method of a finished run as a submission zip (validated before it is written)"
    )
    p_pack.add_argument("run_dir")
    p_pack.add_argument("out", help="the zip to write, e.g. my_method.zip")
    p_pack.add_argument("--method", help="the run's method to pack (needed when the run has several)")
    p_pack.add_argument("--description", default="", help="what the method does (shown as text on the board)")
    p_pack.add_argument("--paper-url", help="http(s) link to the paper")
    p_pack.add_argument("--code-url", help="http(s) link to the code")
    p_pack.add_argument("--hardware", help="what made the edits (default: the run's platform and GPU)")
    p_pack.set_defaults(fn=cmd_submit_pack)
