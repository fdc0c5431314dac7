"""Toy-world training time on this machine, projected in about three minutes instead of measured in one to two hours.

Runs the real ``emb toyworld train`` code (``benchmark.toyworld.train.train``) with every stage shortened by
``--steps-scale`` (default 0.02: 6 to 108 steps a stage) into a temporary folder, reads each stage's per-step wall
times from its loss log, drops each stage's first ``--skip`` steps (allocator and kernel warm-up), and multiplies the
mean step time by the full schedule's step count. The budget of the toy-world issue is 60 minutes on 2 cores.

``--check RUN`` also reads a finished full training's ``RUN/train_summary.json`` (written by ``emb toyworld train``)
and prints, per stage, measured / projected, so the projection's accuracy on this machine is visible beside it.

The last line is ``projected / budget: X.XX`` (below 1: the schedule fits the budget on this machine).

``--stage NAME`` (repeatable) projects stages trained on their own (``emb toyworld train --stage NAME``, e.g.
``pixel``) instead, each against its own budget; ``--check RUN`` then reads ``RUN/NAME_summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_MINUTES = 60.0
# stages trained on their own: their issues' budgets (1 thread under `nice -n 10` on the shared 2-core machine)
EXTRA_BUDGET_MINUTES = {"pixel": 40.0}


def step_seconds(log_path: Path, skip: int) -> tuple[float, int]:
    """(mean wall seconds per step, steps timed) of one stage from its loss log, leaving out the first ``skip``
    steps. The log's ``seconds`` column is cumulative and rounded to 0.1 s, so the mean is taken between two of its
    rows (rounding error 0.1 s in all) rather than from per-row differences."""
    with open(log_path, newline="") as f:
        cumulative = [float(row["seconds"]) for row in csv.DictReader(f)]
    skip = min(skip, len(cumulative) - 1)
    start = cumulative[skip - 1] if skip else 0.0
    timed = len(cumulative) - skip
    return (cumulative[-1] - start) / timed, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-scale", type=float, default=0.02, help="fraction of every stage's steps to run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, as `emb toyworld train --threads`")
    parser.add_argument("--skip", type=int, default=1, help="first steps of each stage left out (warm-up)")
    parser.add_argument("--check", type=Path, help="a full run's folder: compare its measured stage times")
    parser.add_argument("--stage", action="append", default=[], help="project this stage trained on its own instead")
    args = parser.parse_args()
    if args.stage:
        project_extra_stages(args)
        return

    import torch

    from benchmark.toyworld.train import SCHEDULE, train

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="toyworld-time-") as tmp:
        train(Path(tmp) / "run", steps_scale=args.steps_scale, samples=False, threads=args.threads)
        per_step = {s.name: step_seconds(Path(tmp) / "run" / "logs" / f"{s.name}.csv", args.skip) for s in SCHEDULE}
    measured = json.loads((args.check / "train_summary.json").read_text())["stage_train_seconds"] if args.check else {}

    took = time.perf_counter() - started
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; the shortened run took {took:.0f} s")
    header = f"{'stage':<10} {'steps':>6} {'timed':>6} {'s/step':>7} {'projected min':>14}"
    print(header + (f" {'measured min':>13} {'measured/projected':>19}" if measured else ""))
    total = 0.0
    for spec in SCHEDULE:
        seconds, timed = per_step[spec.name]
        projected = seconds * spec.steps / 60
        total += projected
        line = f"{spec.name:<10} {spec.steps:>6} {timed:>6} {seconds:>7.3f} {projected:>14.1f}"
        if spec.name in measured:
            line += f" {measured[spec.name] / 60:>13.1f} {measured[spec.name] / 60 / projected:>19.2f}"
        print(line)
    if measured:
        print(f"measured total (stages): {sum(measured.values()) / 60:.1f} min")
    print(f"projected total (stages; export and sample grid add about a minute): {total:.1f} min")
    print(f"projected / budget: {total / BUDGET_MINUTES:.2f}")


def project_extra_stages(args: argparse.Namespace) -> None:
    """The same projection for stages trained on their own (``EXTRA_STAGES``), each against its own budget."""
    import torch

    from benchmark.toyworld.train import EXTRA_STAGES, train

    specs = [s for s in EXTRA_STAGES if s.name in args.stage]
    unknown = set(args.stage) - {s.name for s in specs}
    if unknown:
        raise SystemExit(f"--stage {', '.join(sorted(unknown))}: not a stage trained on its own")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="toyworld-time-") as tmp:
        names = tuple(s.name for s in specs)
        train(Path(tmp) / "run", steps_scale=args.steps_scale, samples=False, threads=args.threads, stages=names)
        per_step = {s.name: step_seconds(Path(tmp) / "run" / "logs" / f"{s.name}.csv", args.skip) for s in specs}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; the shortened run took "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(f"{'stage':<10} {'steps':>6} {'timed':>6} {'s/step':>7} {'projected min':>14} {'budget min':>11}")
    for spec in specs:
        seconds, timed = per_step[spec.name]
        projected = seconds * spec.steps / 60
        budget = EXTRA_BUDGET_MINUTES[spec.name]
        line = f"{spec.name:<10} {spec.steps:>6} {timed:>6} {seconds:>7.3f} {projected:>14.1f} {budget:>11.0f}"
        summary = args.check / f"{spec.name}_summary.json" if args.check else None
        if summary is not None and summary.exists():
            measured = json.loads(summary.read_text())["stage_train_seconds"][spec.name] / 60
            line += f"  measured {measured:.1f} min, measured/projected {measured / projected:.2f}"
        print(line)
        print(f"{spec.name} projected / budget: {projected / budget:.2f}")


if __name__ == "__main__":
    main()
