"""``emb toyworld train|evidence``: train the toy world's models on CPU, recompute their quality figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import print_error


def cmd_toyworld_train(args: argparse.Namespace) -> int:
    import logging

    from benchmark.toyworld.train import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # stages only when asked for: train() runs every stage by default
    stages = {"stages": tuple(args.stage)} if args.stage else {}
    try:
        model_dir = train(
            Path(args.out),
            resume=args.resume,
            steps_scale=args.steps_scale,
            seed=args.seed,
            samples=not args.no_samples,
            threads=args.threads,
            **stages,
        )
    except ValueError as err:  # an unknown --stage, a bad --steps-scale, a --resume with other options: one line
        print_error(str(err))
        return 2
    if args.stage:  # stages trained on their own: each writes its folder under model_dir and its own figures
        print(f"toy world stage {', '.join(args.stage)} written to {model_dir}")
        return 0
    print(f"toy world models written to {model_dir}; check them with `emb toyworld evidence --model {model_dir}`")
    return 0


def cmd_toyworld_evidence(args: argparse.Namespace) -> int:
    import json

    from benchmark.toyworld import SHIPPED_DIR
    from benchmark.toyworld.evidence import compare_to_reference, evidence, format_comparison, format_evidence

    reference = None
    if args.reference:
        ref_path = Path(args.reference)
        try:
            reference = json.loads(ref_path.read_text())
        except (OSError, ValueError) as exc:
            reference, problem = None, str(exc)
        else:
            valid = isinstance(reference, dict) and isinstance(reference.get("values"), dict)
            problem = "" if valid else "it has no 'values' object"
        if problem:
            print_error(f"--reference {ref_path}: not an evidence JSON with 'values' ({problem})")
            return 2
    figures = evidence(Path(args.model or SHIPPED_DIR), n=args.n, seed=args.seed)
    print(format_evidence(figures))
    ok = figures["passed"]
    if reference is not None:
        comparison = compare_to_reference(figures, reference)
        figures["reproduction"] = {"reference": str(args.reference), "figures": comparison}
        print(f"\nagainst {args.reference}:\n{format_comparison(comparison)}")
        ok = ok and all(c["ok"] for c in comparison.values())
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_toy = sub.add_parser("toyworld", help="the toy world: train its models, measure that the world is learned")
    toy_sub = p_toy.add_subparsers(dest="toy_cmd", required=True)
    p_train = toy_sub.add_parser("train", help="train the toy world's CLIP, VAE, UNet and inpainting UNet on CPU")
    p_train.add_argument("--out", default="outputs/toyworld", help="run folder (models land in OUT/model)")
    p_train.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p_train.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps (0.01: smoke)")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument("--no-samples", action="store_true", help="skip the sample grid")
    p_train.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: all cores; use 1 on a machine busy with other jobs)",
    )
    p_train.add_argument(
        "--stage",
        action="append",
        default=[],
        metavar="NAME",
        help="train only this stage trained on its own, e.g. pixel (repeatable; default: the default schedule)",
    )
    p_train.set_defaults(fn=cmd_toyworld_train)
    p_ev = toy_sub.add_parser("evidence", help="recompute the quality figures of a toy world model folder")
    p_ev.add_argument("--model", help="folder with text2img/, inpaint/, clip/ (default: the shipped data/toyworld)")
    p_ev.add_argument("--n", type=int, default=None, help="scenes per figure (default: the model card's)")
    p_ev.add_argument("--seed", type=int, default=0)
    p_ev.add_argument("--out", help="also write the figures as JSON")
    p_ev.add_argument(
        "--reference",
        help="an evidence JSON (e.g. data/toyworld/evidence.json) the figures must reproduce within the tolerance",
    )
    p_ev.set_defaults(fn=cmd_toyworld_evidence)
