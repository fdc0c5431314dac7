"""``emb``: the command line.

emb run [hydra overrides]           run the benchmark (Hydra app; -m for multirun)
emb score RUN_DIR [overrides]       re-score a finished run's artifacts (e.g. metrics=pie_bench)
emb table RUN_OR_SWEEP_DIR...       re-print / merge the tables of finished runs and sweeps
emb data check PATH_OR_DATASET      validate a dataset: one line per broken sample, exit 1 if any
emb data synthetic OUT_DIR          write the embedded synthetic dataset in the project's format
emb toyworld train [--out DIR]      train the toy world's models on CPU (resumable: --resume)
emb toyworld evidence [--model DIR] recompute the toy world's quality figures (shipped weights by default)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.provenance import PROJECT_ROOT

CONF_DIR = PROJECT_ROOT / "conf"


def compose(overrides: list[str]):
    """The project's config with overrides, outside a Hydra run (for the non-run subcommands)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def dataset_cfg_for(target: str, overrides: list[str]):
    """A dataset config from a folder path (format detected) or a ``dataset/`` config name."""
    from omegaconf import OmegaConf

    path = Path(target)
    if path.exists():
        if (path / "manifest.jsonl").exists():
            return OmegaConf.create({"name": "folder", "path": str(path), "limit": None, "shard": None})
        if (path / "mapping_file.json").exists():
            return compose(["dataset=pie_bench", f"dataset.root={path}", *overrides]).dataset
        if list(path.glob("*list*.txt")) or (path / "dataset_txt").exists():
            return compose(["dataset=editing_mask", f"dataset.root={path}", *overrides]).dataset
        raise SystemExit(f"error: {path}: no manifest.jsonl, mapping_file.json or Editing-Mask list file found")
    return compose([f"dataset={target}", *overrides]).dataset


def cmd_data_check(args: argparse.Namespace) -> int:
    from benchmark.datasets import build_dataset, iter_selected
    from benchmark.datasets.base import validate_sample
    from benchmark.types import SampleError

    cfg = dataset_cfg_for(args.target, [o if o.startswith("dataset.") else f"dataset.{o}" for o in args.overrides])
    dataset = build_dataset(cfg)
    ok = bad = 0
    for ref in iter_selected(dataset, cfg):
        try:
            problems = validate_sample(ref.load(), ref.source, max_prompt_tokens=args.max_prompt_tokens)
        except SampleError as err:
            problems = [str(err)]
        if problems:
            bad += 1
            for p in problems:
                print(p)
        else:
            ok += 1
    print(f"{ok} samples ok, {bad} broken", file=sys.stderr)
    return 1 if bad else 0


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from benchmark.datasets.synthetic import SyntheticDataset, write_dataset

    n = write_dataset(
        SyntheticDataset(num_samples=args.num_samples, size=args.size, seed=args.seed), Path(args.out_dir)
    )
    print(f"wrote {n} samples to {args.out_dir}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from benchmark.tables import merge_runs, pivot

    merged = merge_runs([Path(p) for p in args.dirs])
    if merged.empty:
        print("error: no finished runs (summary.csv) found under " + ", ".join(args.dirs), file=sys.stderr)
        return 1
    by = [c for c in merged.columns if c not in ("run", "edit_type", "metric", "mean", "std", "ci95", "n", "failures")]
    if merged["run"].nunique() > 1 and "method" in by and len(by) == 1:
        by = ["run", "method"]
    print(pivot(merged, tuple(by), edit_type=args.edit_type).to_markdown())
    if args.out:
        merged.to_csv(args.out, index=False)
        print(f"merged summary written to {args.out}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from benchmark.datasets import build_dataset
    from benchmark.runner import finalize, load_run_config

    run_dir = Path(args.run_dir)
    cfg = load_run_config(run_dir)
    metrics_cfg = cfg.metrics
    if args.overrides:
        fresh = compose(args.overrides)
        if any(o.startswith("metrics") for o in args.overrides):
            metrics_cfg = fresh.metrics
    OmegaConf.set_struct(cfg, False)
    finalize(
        run_dir,
        cfg,
        build_dataset(cfg.dataset),
        metrics_cfg=metrics_cfg,
        extra={"rescored_with": OmegaConf.to_container(metrics_cfg, resolve=True)},
    )
    return 0


def cmd_toyworld_train(args: argparse.Namespace) -> int:
    import logging

    from benchmark.toyworld.train import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_dir = train(Path(args.out), resume=args.resume, steps_scale=args.steps_scale, seed=args.seed,
                      samples=not args.no_samples, threads=args.threads)
    print(f"toy world models written to {model_dir}; check them with `emb toyworld evidence --model {model_dir}`")
    return 0


def cmd_toyworld_evidence(args: argparse.Namespace) -> int:
    import json

    from benchmark.toyworld import SHIPPED_DIR
    from benchmark.toyworld.evidence import evidence, format_evidence

    figures = evidence(Path(args.model or SHIPPED_DIR), n=args.n, seed=args.seed)
    print(format_evidence(figures))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from benchmark.app import main as hydra_main

        sys.argv = ["emb run", *argv[1:]]
        hydra_main()
        return 0
    parser = argparse.ArgumentParser(
        prog="emb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the benchmark (Hydra overrides follow)")
    p_score = sub.add_parser("score", help="re-score a finished run without running any method")
    p_score.add_argument("run_dir")
    p_score.add_argument("overrides", nargs="*", help="e.g. metrics=pie_bench")
    p_score.set_defaults(fn=cmd_score)
    p_table = sub.add_parser("table", help="print / merge tables of finished runs and sweeps")
    p_table.add_argument("dirs", nargs="+")
    p_table.add_argument("--edit-type", default="all")
    p_table.add_argument("--out", help="write the merged long summary as CSV")
    p_table.set_defaults(fn=cmd_table)
    p_data = sub.add_parser("data", help="dataset tools")
    data_sub = p_data.add_subparsers(dest="data_cmd", required=True)
    p_check = data_sub.add_parser("check", help="validate a dataset")
    p_check.add_argument("target", help="a dataset folder, or a dataset config name (synthetic, editing_mask, ...)")
    p_check.add_argument("overrides", nargs="*", help="dataset overrides, e.g. root=/data/Editing-Mask limit=10")
    p_check.add_argument("--max-prompt-tokens", type=int, default=77)
    p_check.set_defaults(fn=cmd_data_check)
    p_syn = data_sub.add_parser("synthetic", help="write the synthetic dataset in the project's format")
    p_syn.add_argument("out_dir")
    p_syn.add_argument("--num-samples", type=int, default=200)
    p_syn.add_argument("--size", type=int, default=64)
    p_syn.add_argument("--seed", type=int, default=0)
    p_syn.set_defaults(fn=cmd_data_synthetic)
    p_toy = sub.add_parser("toyworld", help="the toy world: train its models, measure that the world is learned")
    toy_sub = p_toy.add_subparsers(dest="toy_cmd", required=True)
    p_train = toy_sub.add_parser("train", help="train the toy world's CLIP, VAE, UNet and inpainting UNet on CPU")
    p_train.add_argument("--out", default="outputs/toyworld", help="run folder (models land in OUT/model)")
    p_train.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p_train.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps (0.01: smoke)")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument("--no-samples", action="store_true", help="skip the sample grid")
    p_train.add_argument("--threads", type=int, default=None,
                         help="torch threads (default: all cores; use 1 on a machine busy with other jobs)")
    p_train.set_defaults(fn=cmd_toyworld_train)
    p_ev = toy_sub.add_parser("evidence", help="recompute the quality figures of a toy world model folder")
    p_ev.add_argument("--model", help="folder with text2img/, inpaint/, clip/ (default: the shipped data/toyworld)")
    p_ev.add_argument("--n", type=int, default=None, help="scenes per figure (default: the model card's)")
    p_ev.add_argument("--seed", type=int, default=0)
    p_ev.add_argument("--out", help="also write the figures as JSON")
    p_ev.set_defaults(fn=cmd_toyworld_evidence)
    args = parser.parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
