"""``emb data check|convert|synthetic``: validate a dataset, write it in the project's own format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.cli.common import compose, one_line, print_error
from benchmark.plugins import config_folder_urls, searchpath_override
from benchmark.types import error_line


def detect_format(path: Path) -> tuple[str, dict[str, str]]:
    """(dataset config name, options) for a dataset folder or index file, from the files it holds."""
    if path.is_file():
        name = path.name
        if name == "manifest.jsonl":
            return "folder", {"path": str(path.parent)}
        if name.endswith(".json") and "mapping" in name:
            return "pie_bench", {"root": str(path.parent), "mapping_file": name}
        if name.endswith(".txt"):
            return "editing_mask", {
                "root": str(path.parent),
                "list_file": name,
                "image_dir": "image",
                "mask_dir": "mask",
            }
        if name.startswith("instances_") and name.endswith(".json"):
            return "coco", {"root": str(path.parent), "annotations": name}
        raise FileNotFoundError(f"{path}: not a dataset index file (manifest.jsonl, mapping_file.json, *_list.txt)")
    if (path / "manifest.jsonl").is_file():
        return "folder", {"path": str(path)}
    for root in (path, path / "data"):
        if (root / "mapping_file.json").is_file():
            return "pie_bench", {"root": str(root)}
    if (path / "dataset_txt" / "Editing-Mask_list.txt").is_file():
        return "editing_mask", {"root": str(path)}
    lists = sorted(path.glob("*_list.txt")) or sorted(path.glob("dataset_txt/*_list.txt"))
    if lists:
        return "editing_mask", {
            "root": str(path),
            "list_file": str(lists[0].relative_to(path)),
            "image_dir": "image",
            "mask_dir": "mask",
        }
    instances = sorted(path.glob("annotations/instances_*.json"))
    if instances:
        split = instances[0].stem.removeprefix("instances_")
        return "coco", {"root": str(path), "annotations": str(instances[0].relative_to(path)), "images": split}
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file() or any(path.rglob("*.parquet")):
        return "hf", {"path": str(path)}
    raise FileNotFoundError(
        f"{path}: no manifest.jsonl, mapping_file.json, Editing-Mask list file, COCO "
        "annotations/instances_*.json or Hugging Face dataset found; pass a dataset config name instead "
        "(e.g. emb data check coco root=...)"
    )


def dataset_cfg_for(target: str, overrides: list[str], searchpath: list[str] | None = None):
    """A dataset config from a folder/file path (format detected) or a ``dataset/`` config name (also looked up in
    the ``searchpath`` folders), plus overrides.

    Detected paths are set after composing (a path with spaces or '=' would break Hydra's override grammar);
    the user's own overrides of the same keys win.
    """
    from omegaconf import open_dict

    extra = searchpath_override(config_folder_urls(searchpath or []))
    path = Path(target).expanduser()
    if not path.exists():
        if "/" in target or target.startswith("."):
            raise FileNotFoundError(f"{target}: no such file or folder")
        return compose([*extra, f"dataset={target}", *overrides]).dataset
    name, options = detect_format(path)
    cfg = compose([*extra, f"dataset={name}", *overrides]).dataset
    user_keys = {o.split("=", 1)[0].lstrip("+~").removeprefix("dataset.") for o in overrides}
    with open_dict(cfg):
        for key, value in options.items():
            if key not in user_keys:
                cfg[key] = value
    return cfg


def _dataset_overrides(overrides: list[str]) -> list[str]:
    """``key=value`` → ``dataset.key=value`` (already prefixed ones unchanged)."""
    out = []
    for o in overrides:
        prefix = o[: len(o) - len(o.lstrip("+~"))]
        body = o[len(prefix) :]
        out.append(o if body.startswith("dataset.") else f"{prefix}dataset.{body}")
    return out


def _open_dataset(args: argparse.Namespace):
    """(config, dataset) or one error line and exit 2 when the dataset cannot be opened at all."""
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.datasets import build_dataset
    from benchmark.plugins import load_plugins
    from benchmark.registry import UnknownNameError

    try:
        load_plugins(args.plugins, key="--plugins")  # a loader kept outside the checkout registers itself
        cfg = dataset_cfg_for(args.target, _dataset_overrides(args.overrides), args.searchpath)
        return cfg, build_dataset(cfg)
    except (FileNotFoundError, ValueError, UnknownNameError, OmegaConfBaseException) as err:
        message = one_line(err)
    except Exception as err:  # noqa: BLE001 — Hydra's errors (unknown config group option, bad override)
        if not type(err).__module__.startswith("hydra"):
            raise
        message = one_line(err)
    print_error(message)
    raise SystemExit(2)


def cmd_data_check(args: argparse.Namespace) -> int:
    import hashlib

    from tqdm import tqdm

    from benchmark.datasets import iter_selected
    from benchmark.datasets.base import score_fingerprint, validate_sample
    from benchmark.types import SampleError

    cfg, dataset = _open_dataset(args)
    ok = bad = 0
    content = hashlib.sha256()
    try:
        refs = tqdm(
            iter_selected(dataset, cfg, check_sizes=False),
            desc="checking",
            unit="sample",
            file=sys.stderr,
            disable=None,
            dynamic_ncols=True,
        )
        for ref in refs:
            sample = None
            try:
                sample = ref.load()
                problems = validate_sample(sample, ref.source, max_prompt_tokens=args.max_prompt_tokens)
            except SampleError as err:
                problems = [str(err)]
            # an unsafe or repeated id is a failing load of iter_selected (datasets.base.checked_ids)
            if problems:
                bad += 1
                for p in problems:
                    tqdm.write(p, file=sys.stdout)
            else:
                ok += 1
                # each sample's content hash (the one a run's sample_fingerprints.json holds) and its edit type
                content.update(score_fingerprint(sample).encode() + sample.edit_type.encode())
                if args.verbose:
                    tqdm.write(f"ok {ref.id} ({ref.source})", file=sys.stdout)
    except (ValueError, FileNotFoundError) as err:  # an unreadable index (e.g. a mapping file that is not JSON)
        print(f"error: {error_line(err)}", flush=True)
        return 1
    print(f"{ok} samples ok, {bad} broken ({ok + bad} checked)")
    print(f"dataset checksum ({cfg.name}): {dataset.checksum()}")
    if ok:
        what = f"pixels, masks, prompts, reference edits and edit types of the {ok} ok samples, in order"
        print(f"content checksum ({what}): {content.hexdigest()}")
    return 1 if bad else 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    """Write any dataset in the project's own format (manifest.jsonl + PNG images and masks)."""
    import json

    from benchmark.datasets import iter_selected
    from benchmark.datasets.folder import write_sample
    from benchmark.types import SampleError

    cfg, dataset = _open_dataset(args)
    out = Path(args.out_dir)
    if (out / "manifest.jsonl").exists() and not args.force:
        print(f"error: {out / 'manifest.jsonl'} exists; pass --force to overwrite", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    n = skipped = 0
    with open(out / "manifest.jsonl", "w") as manifest:
        for ref in iter_selected(dataset, cfg):
            try:
                sample = ref.load()
            except SampleError as err:
                print(f"skipped: {err}")
                skipped += 1
                continue
            manifest.write(json.dumps(write_sample(sample, out), default=str) + "\n")
            n += 1
    print(f"wrote {n} samples to {out} ({skipped} skipped); source checksum ({cfg.name}): {dataset.checksum()}")
    return 1 if skipped else 0


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from benchmark.datasets.synthetic import SyntheticDataset, write_dataset

    n = write_dataset(
        SyntheticDataset(num_samples=args.num_samples, size=args.size, seed=args.seed), Path(args.out_dir)
    )
    print(f"wrote {n} samples to {args.out_dir}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_data = sub.add_parser("data", help="dataset tools")
    data_sub = p_data.add_subparsers(dest="data_cmd", required=True)
    p_check = data_sub.add_parser(
        "check",
        help="validate a dataset: one line per problem, a count, the checksum; exit 1 if anything is broken",
    )
    p_check.add_argument(
        "target",
        help="a dataset folder or index file (format detected), or a dataset config "
        "name (synthetic, folder, editing_mask, pie_bench, coco, hf)",
    )
    p_check.add_argument("overrides", nargs="*", help="dataset overrides, e.g. root=/data/PIE-Bench limit=10")
    p_check.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=77,
        help="flag prompts longer than this many CLIP tokens (0: do not check)",
    )
    p_check.add_argument("-v", "--verbose", action="store_true", help="also print one line per healthy sample")
    p_check.set_defaults(fn=cmd_data_check)
    p_conv = data_sub.add_parser("convert", help="write any dataset in the project's own format (manifest.jsonl)")
    p_conv.add_argument("target", help="a dataset folder or index file, or a dataset config name")
    p_conv.add_argument("out_dir")
    p_conv.add_argument("overrides", nargs="*", help="dataset overrides, e.g. root=/data/coco limit=100")
    p_conv.add_argument("--force", action="store_true", help="overwrite an existing manifest.jsonl")
    p_conv.set_defaults(fn=cmd_data_convert)
    for p_dataset in (p_check, p_conv):  # a dataset loader kept outside the checkout, as `emb run plugins=...`
        p_dataset.add_argument("--plugins", nargs="+", default=[], help="modules or .py files to import first")
        p_dataset.add_argument(
            "--searchpath", nargs="+", default=[], help="config folders holding dataset/NAME.yaml besides conf/"
        )
    p_syn = data_sub.add_parser("synthetic", help="write the synthetic dataset in the project's format")
    p_syn.add_argument("out_dir")
    p_syn.add_argument("--num-samples", type=int, default=200)
    p_syn.add_argument("--size", type=int, default=64)
    p_syn.add_argument("--seed", type=int, default=0)
    p_syn.set_defaults(fn=cmd_data_synthetic)
