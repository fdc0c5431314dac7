"""``emb``: the command line.

emb run [hydra overrides]           run the benchmark (Hydra app; -m for multirun)
emb score RUN_DIR [overrides]       re-score a finished run's artifacts (e.g. metrics=pie_bench)
emb table RUN_OR_SWEEP_DIR...       re-print / merge the tables of finished runs and sweeps
emb report RUN_DIR [--published N]  the run beside a paper's published numbers (reports/published/)
emb data check PATH_OR_DATASET      validate a dataset: one line per problem, counts, checksum; exit 1 if any
emb data convert PATH_OR_DATASET OUT  write any dataset in the project's own format (manifest.jsonl)
emb data synthetic OUT_DIR          write the embedded synthetic dataset in the project's format
emb toyworld train [--out DIR]      train the toy world's models on CPU (resumable: --resume)
emb toyworld evidence [--model DIR] recompute the toy world's quality figures (shipped weights by default;
                                    --reference data/toyworld/evidence.json: check a retrained model reproduces them)
emb submit pack RUN_DIR OUT.zip     one method of a finished run as a leaderboard submission (--method NAME)
emb leaderboard validate SUB        check a submission as untrusted input: one line per problem, exit 1 if any
emb leaderboard score SUB --board B re-score a submission on a board (its pinned dataset and metric preset)
emb leaderboard build BOARD_DIR     leaderboard.json, samples.parquet and the static site of a board
emb convert guided-diffusion CKPT OUT_DIR  an OpenAI guided-diffusion .pt as a diffusers UNet2DModel folder
"""

from __future__ import annotations

import argparse
import sys

from benchmark.cli import convert, data, leaderboard, report, score, submit, table, toyworld
from benchmark.cli.common import print_error


def build_parser() -> argparse.ArgumentParser:
    """The ``emb`` argument parser (every subcommand but ``run``, whose arguments are Hydra overrides)."""
    parser = argparse.ArgumentParser(
        prog="emb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    # `emb run`'s arguments are Hydra overrides: main() hands them to the Hydra app (benchmark.cli.run), not argparse
    sub.add_parser("run", help="run the benchmark (Hydra overrides follow)")
    for command in (score, report, table, data, toyworld, submit, leaderboard, convert):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from benchmark.cli.run import run_app

        return run_app(argv[1:])
    parser = build_parser()
    # dataset overrides (key=value) may come after options too: `emb data check DIR --max-prompt-tokens 0 limit=3`
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "overrides", None) is None or not all("=" in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.fn(args) or 0)
    except (FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        # a path given on the command line that is not there (or already is): one line, not a traceback
        print_error(str(err))
        return 2
