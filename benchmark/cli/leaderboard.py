"""``emb leaderboard validate|score|build|schema``: submissions checked as untrusted input, re-scored on a board,
published as a static site (docs/leaderboard.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.cli.common import emb_log_handlers, print_error, remove_log_handlers


def print_problems(problems: tuple[str, ...]) -> int:
    """Each problem on its own line (stdout, as ``emb data check``), then exit code 1."""
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s): the submission is refused", file=sys.stderr)
    return 1


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.board import BoardError
    from benchmark.leaderboard.problems import SubmissionError
    from benchmark.leaderboard.score import check_for_board, open_board
    from benchmark.leaderboard.validate import opened_submission

    handlers = emb_log_handlers(console=True)
    try:
        ctx = open_board(Path(args.board)) if args.board else None
        limits = ctx.board.validation_limits() if ctx else None
        with opened_submission(Path(args.submission), limits) as sub:
            missing = check_for_board(sub, ctx) if ctx else []
            where = f" for {args.board}" if ctx else ""
            print(
                f"{args.submission}: valid{where}: {sub.manifest.method.name!r}, {len(sub.samples)} samples"
                + (f", {len(missing)} missing (scored as failed)" if missing else "")
            )
    except SubmissionError as err:
        return print_problems(err.problems)
    except BoardError as err:
        print_error(str(err))
        return 2
    finally:
        remove_log_handlers(handlers)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.board import BoardError, load_board
    from benchmark.leaderboard.problems import SubmissionError
    from benchmark.leaderboard.score import score_submission
    from benchmark.leaderboard.validate import opened_submission

    board_dir = Path(args.board)
    handlers = emb_log_handlers(console=True)
    try:
        limits = load_board(board_dir).validation_limits()
        with opened_submission(Path(args.submission), limits) as sub:
            cache_dir = Path(args.cache_dir) if args.cache_dir else None
            entry = score_submission(sub, board_dir, cache_dir)
    except SubmissionError as err:
        return print_problems(err.problems)
    except BoardError as err:
        print_error(str(err))
        return 2
    finally:
        remove_log_handlers(handlers)
    board = load_board(board_dir)
    ranking = next((c for c in entry.score.summary if c.metric == board.ranking.metric and c.edit_type == "all"), None)
    value = ranking.mean if ranking is not None else None
    print(
        f"scored {entry.entry_id}: {board.ranking.metric} {value} over {entry.score.samples_expected} samples "
        f"({len(entry.score.samples_missing)} missing); kept in {entry.folder}"
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.board import BoardError, BoardPaths
    from benchmark.leaderboard.build import build_board

    try:
        built = build_board(Path(args.board_dir))
    except BoardError as err:
        print_error(str(err))
        return 2
    for line in built.skipped:
        print(line, file=sys.stderr)
    paths = BoardPaths(Path(args.board_dir))
    verified = sum(e.verified for e in built.entries)
    print(
        f"{len(built.entries)} entries ({verified} verified): {paths.leaderboard}, {paths.rows}, "
        f"{paths.site / 'index.html'}"
    )
    return 1 if built.skipped else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from benchmark.leaderboard.submission import manifest_schema

    print(json.dumps(manifest_schema(), indent=1))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_board = sub.add_parser("leaderboard", help="validate, re-score and publish leaderboard submissions")
    board_sub = p_board.add_subparsers(dest="leaderboard_cmd", required=True)
    p_validate = board_sub.add_parser(
        "validate", help="check a submission (folder or zip): one line per problem, exit 1 if any"
    )
    p_validate.add_argument("submission")
    p_validate.add_argument("--board", help="also check it against this board's dataset (ids, sizes, checksum)")
    p_validate.set_defaults(fn=cmd_validate)
    p_score = board_sub.add_parser(
        "score", help="re-score a submission with the board's pinned metric preset and dataset; keep it as an entry"
    )
    p_score.add_argument("submission")
    p_score.add_argument("--board", required=True, help="the board folder (board.yaml)")
    p_score.add_argument("--cache-dir", help="where dataset statistics (FID's) are cached (default: none)")
    p_score.set_defaults(fn=cmd_score)
    p_build = board_sub.add_parser(
        "build", help="write leaderboard.json, every per-sample row (parquet) and the static site"
    )
    p_build.add_argument("board_dir")
    p_build.set_defaults(fn=cmd_build)
    p_schema = board_sub.add_parser("schema", help="print the JSON Schema of submission.json")
    p_schema.set_defaults(fn=cmd_schema)
