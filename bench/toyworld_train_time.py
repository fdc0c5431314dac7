"""Toy-world training time on this machine, projected in about three minutes instead of measured in one to two hours.

Runs the real ``emb toyworld train`` code (``benchmark.toyworld.train.train``) with every stage shortened by
``--steps-scale`` (default 0.02: 6 to 108 steps a stage) into a temporary folder, reads each stage's per-step wall
times from its loss log, drops each stage's first ``--skip`` steps (allocator and kernel warm-up), and multiplies the
mean step time by the full schedule's step count. The budget of the toy-world issue is 60 minutes on 2 cores.

``--check RUN`` also reads a finished full training's ``RUN/train_summary.json`` (written by ``emb toyworld train``)
and prints, per stage, measured / projected, so the projection's accuracy on this machine is visible beside it.

The stages trained alone from the shipped models (``ADDED_STAGES``: dit, pixel) are shortened and projected the same
way, after the schedule, each against its own budget (``--check-added RUN``: a finished ``--stage`` run);
``--stage NAME`` (repeatable) projects only that stage trained alone, ``--added-only`` every one of them.

The last line is ``projected / budget: X.XX`` (below 1: the schedule fits the budget on this machine).
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
# stages trained alone: their issues' budgets (1 thread under `nice -n 10` on the shared 2-core machine)
ADDED_BUDGET_MINUTES = {"dit": 40.0, "pixel": 40.0}


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
    parser.add_argument("--check-added", type=Path, help="a `--stage dit` run's folder: compare its measured time")
    parser.add_argument("--added-only", action="store_true", help="only the stages trained alone (dit)")
    parser.add_argument("--stage", action="append", default=[], help="only this stage trained alone (repeatable)")
    args = parser.parse_args()
    import torch

    from benchmark.toyworld.train import ADDED_STAGES, SCHEDULE, train

    unknown = set(args.stage) - set(ADDED_STAGES)
    if unknown:
        raise SystemExit(f"--stage {', '.join(sorted(unknown))}: not a stage trained alone ({', '.join(ADDED_STAGES)})")
    added_names = tuple(args.stage) or tuple(ADDED_STAGES)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="toyworld-time-") as tmp:
        schedule = () if args.added_only or args.stage else SCHEDULE
        if schedule:
            train(Path(tmp) / "run", steps_scale=args.steps_scale, samples=False, threads=args.threads)
        per_step = {s.name: step_seconds(Path(tmp) / "run" / "logs" / f"{s.name}.csv", args.skip) for s in schedule}
        added = Path(tmp) / "added"
        train(added, steps_scale=args.steps_scale, samples=False, threads=args.threads, stages=added_names)
        added_per_step = {n: step_seconds(added / "logs" / f"{n}.csv", args.skip) for n in added_names}
    measured = json.loads((args.check / "train_summary.json").read_text())["stage_train_seconds"] if args.check else {}

    took = time.perf_counter() - started
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; the shortened run took {took:.0f} s")
    header = f"{'stage':<10} {'steps':>6} {'timed':>6} {'s/step':>7} {'projected min':>14}"
    print(header + (f" {'measured min':>13} {'measured/projected':>19}" if measured else ""))
    total = 0.0
    for spec in schedule:
        seconds, timed = per_step[spec.name]
        projected = seconds * spec.steps / 60
        total += projected
        line = f"{spec.name:<10} {spec.steps:>6} {timed:>6} {seconds:>7.3f} {projected:>14.1f}"
        if spec.name in measured:
            line += f" {measured[spec.name] / 60:>13.1f} {measured[spec.name] / 60 / projected:>19.2f}"
        print(line)
    if measured:
        print(f"measured total (stages): {sum(measured.values()) / 60:.1f} min")
    ratios = []
    for name in added_names:
        spec = ADDED_STAGES[name]
        seconds, timed = added_per_step[name]
        projected = seconds * spec.steps / 60
        line = f"{name:<10} {spec.steps:>6} {timed:>6} {seconds:>7.3f} {projected:>14.1f}"
        summary = args.check_added / f"{name}_summary.json" if args.check_added else None
        if summary is not None and summary.exists():
            measured_added = json.loads(summary.read_text())["stage_train_seconds"][name] / 60
            line += f" {measured_added:>13.1f} {measured_added / projected:>19.2f}"
        ratio = projected / ADDED_BUDGET_MINUTES[name]
        ratios.append(ratio)
        print(f"{line}   (alone, not in the total; / its {ADDED_BUDGET_MINUTES[name]:.0f}-min budget: {ratio:.2f})")
    if not schedule:  # --added-only / --stage: the stages trained alone against their budgets
        print(f"projected / budget: {max(ratios):.2f}")
        return
    print(f"projected total (stages; export and sample grid add about a minute): {total:.1f} min")
    print(f"projected / budget: {total / BUDGET_MINUTES:.2f}")


if __name__ == "__main__":
    main()
