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
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmark.provenance import PROJECT_ROOT

CONF_DIR = PROJECT_ROOT / "conf"


def compose(overrides: list[str]):
    """The project's config with overrides, outside a Hydra run (for the non-run subcommands)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


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


def searchpath_override(folders: list[str]) -> list[str]:
    """Hydra's ``hydra.searchpath`` override for config folders outside ``conf/`` (a plugin's ``dataset/*.yaml``)."""
    if not folders:
        return []
    quoted = ",".join("'file://" + str(Path(f).expanduser().resolve()).replace("'", "\\'") + "'" for f in folders)
    return [f"hydra.searchpath=[{quoted}]"]


def dataset_cfg_for(target: str, overrides: list[str], searchpath: list[str] | None = None):
    """A dataset config from a folder/file path (format detected) or a ``dataset/`` config name (also looked up in
    the ``searchpath`` folders), plus overrides.

    Detected paths are set after composing (a path with spaces or '=' would break Hydra's override grammar);
    the user's own overrides of the same keys win.
    """
    from omegaconf import open_dict

    extra = searchpath_override(searchpath or [])
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
        message = _one_line(err)
    except Exception as err:  # noqa: BLE001 — Hydra's errors (unknown config group option, bad override)
        if not type(err).__module__.startswith("hydra"):
            raise
        message = _one_line(err)
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text.split(" Config search path:")[0] or type(err).__name__


def _content_hash_update(h, sample) -> None:
    """Feed a sample's decoded content (pixels, mask, prompts) into a running hash."""
    import json

    import numpy as np

    h.update(sample.id.encode())
    img = np.asarray(sample.image)
    h.update(str(img.shape).encode() + img.tobytes())
    if sample.mask is not None:
        h.update(str(sample.mask.shape).encode() + np.packbits(sample.mask).tobytes())
    h.update(
        json.dumps(
            [sample.source_prompt, sample.target_prompt, list(sample.edit_words), sample.instruction, sample.edit_type]
        ).encode()
    )


def cmd_data_check(args: argparse.Namespace) -> int:
    import hashlib

    from tqdm import tqdm

    from benchmark.datasets import iter_selected
    from benchmark.datasets.base import validate_sample
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
                _content_hash_update(content, sample)
                if args.verbose:
                    tqdm.write(f"ok {ref.id} ({ref.source})", file=sys.stdout)
    except (ValueError, FileNotFoundError) as err:  # an unreadable index (e.g. a mapping file that is not JSON)
        print(f"error: {str(err).splitlines()[0]}", flush=True)
        return 1
    print(f"{ok} samples ok, {bad} broken ({ok + bad} checked)")
    print(f"dataset checksum ({cfg.name}): {dataset.checksum()}")
    if ok:
        print(f"content checksum (pixels, masks and prompts of the {ok} ok samples, in order): {content.hexdigest()}")
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


def cmd_table(args: argparse.Namespace) -> int:
    from benchmark.tables import find_run_dirs, merge_runs, pivot, pivot_markdown, run_directions, summary_keys

    missing = [d for d in args.dirs if not Path(d).exists()]
    if missing:
        print(f"error: {missing[0]}: no such folder (emb table takes run or sweep folders)", file=sys.stderr)
        return 2
    handlers = emb_log_handlers(console=True)  # a damaged run folder is one warning line, the others are merged
    unreadable: list[Path] = []
    try:
        merged = merge_runs([Path(p) for p in args.dirs], unreadable)
    finally:
        remove_log_handlers(handlers)
    if merged.empty:
        what = "readable samples.parquet" if unreadable else "finished runs (samples.parquet)"
        print(f"error: no {what} found under " + ", ".join(args.dirs), file=sys.stderr)
        return 1
    types = sorted(str(t) for t in merged["edit_type"].unique())
    if args.edit_type not in types:
        print(
            f"error: --edit-type {args.edit_type}: not in these runs; edit types: {', '.join(types)}", file=sys.stderr
        )
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


def emb_log_handlers(console: bool = False, hold: bool = False, log_file: Path | None = None) -> list:
    """Handlers on the ``emb`` logger for the non-run subcommands, removed with ``remove_log_handlers``.

    ``console``: warnings to stderr, one line each (unless someone else prints them: pytest); ``hold``: keep INFO
    and up in memory until the log file exists; ``log_file``: INFO and up there, like a run's log (e.g. "reusing
    cached FID statistics"), with what was held written first."""
    import logging
    from logging.handlers import BufferingHandler

    log = logging.getLogger("emb")
    log.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    root = logging.getLogger()
    if console and not [h for h in root.handlers if not isinstance(h, logging.NullHandler)]:
        # nobody else prints warnings (a plain shell, not pytest). The root's NullHandler stops a library's
        # root-level ``logging.info`` (open_clip's) from calling basicConfig(), whose stderr handler would
        # print every INFO line of ours a second time
        if not root.handlers:
            root.addHandler(logging.NullHandler())
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setLevel(logging.WARNING)
        handlers[-1].setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    if hold:
        handlers.append(BufferingHandler(capacity=100_000))
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
        handlers[-1].setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
        for held in [h for h in log.handlers if isinstance(h, BufferingHandler) and getattr(h, "emb_cli", False)]:
            for record in held.buffer:
                handlers[-1].handle(record)
            log.removeHandler(held)
            held.close()
    for h in handlers:
        h.emb_cli = True  # type: ignore[attr-defined]
        log.addHandler(h)
    return handlers


def remove_log_handlers(handlers: list) -> None:
    import logging

    for h in handlers:
        logging.getLogger("emb").removeHandler(h)
        h.close()


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.reports import write_report
    from benchmark.runner import load_run_config

    run_dir = Path(args.run_dir)
    published = args.published
    handlers = emb_log_handlers(console=True)  # e.g. "results.json unreadable; using .hydra/config.yaml"
    try:
        if published is None:
            try:
                published = load_run_config(run_dir).get("published")
            except ValueError as err:
                print(f"error: {_one_line(err)}", file=sys.stderr)
                return 2
    finally:
        remove_log_handlers(handlers)
    if not published:
        print(f"error: {run_dir}: the run's config names no `published` table; pass --published NAME", file=sys.stderr)
        return 2
    bad = [item for item in args.rename if "=" not in item.strip("=")]
    if bad:
        print(f"error: --rename {bad[0]}: expected PAPER_METHOD=OUR_METHOD", file=sys.stderr)
        return 2
    rename = dict(item.split("=", 1) for item in args.rename)
    try:
        text = write_report(run_dir, published, rename)
    except ValueError as err:  # a damaged summary.csv / results.json: one line naming it (a missing one: main())
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


RUN_TABLES = ("samples.parquet", "summary.csv", "summary.md", "summary.tex", "results.json", "report.md", "report.csv")


def generation_record(previous: dict[str, Any]) -> dict[str, Any]:
    """What an in-place re-score must carry over from the run's results.json (``previous``): how the samples were
    generated (``generation``: computed/reused counts, ``model``: the weights' digests) and the provenance of the
    generating code (``generation_provenance``; ``provenance`` then stamps the scoring)."""
    out = {k: previous[k] for k in ("generation", "model") if k in previous}
    provenance = previous.get("generation_provenance") or previous.get("provenance")
    if provenance:
        out["generation_provenance"] = provenance
    return out


def tables_metric_set(previous: dict[str, Any]) -> Any:
    """The metric set the run's current tables were scored with (its last re-score's, else the run's own), from
    its results.json (``previous``); None when that is missing or unreadable."""
    return previous.get("rescored_with") or previous.get("metrics_config") or None


def keep_previous_tables(run_dir: Path) -> Path | None:
    """Copy the run's tables to ``scores.previous-N/`` before a re-score with another metric set rewrites them."""
    present = [name for name in RUN_TABLES if (run_dir / name).exists()]
    if not present:
        return None
    from benchmark.store import next_free_index

    dest = run_dir / f"scores.previous-{next_free_index(run_dir, 'scores.previous-{n}')}"
    dest.mkdir()
    for name in present:
        shutil.copy2(run_dir / name, dest / name)
    return dest


def rescoring_metrics(run_metrics: Any, overrides: list[str], metrics_file: str | None) -> Any:
    """The metric set ``emb score`` uses: the run's own, or ``metrics=NAME`` / ``--metrics-file``, with dotted
    ``metrics.KEY=VALUE`` overrides applied to it (``metrics.metrics.0.threshold=0.3``: the first metric's
    threshold), parsed by Hydra's override grammar. Any other override is an error: only scoring can change."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from omegaconf import OmegaConf

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ValueError(f"emb score: {str(err).splitlines()[0]}") from err
    others = [o.input_line for o in parsed if o.key_or_group.split(".")[0] != "metrics"]
    if others:
        raise ValueError(f"emb score: only metrics overrides change a re-score; not {', '.join(others)}")
    metrics_cfg = run_metrics
    groups = [o.input_line for o in parsed if o.key_or_group == "metrics"]
    if groups:
        metrics_cfg = compose(groups).metrics
    if metrics_file:
        metrics_cfg = OmegaConf.load(metrics_file)
    root = OmegaConf.create({"metrics": OmegaConf.to_container(metrics_cfg)})
    for o in parsed:
        if o.key_or_group == "metrics":
            continue
        if o.is_delete():
            raise ValueError(f"emb score: deleting keys is not supported ({o.input_line})")
        OmegaConf.update(root, o.key_or_group, o.value(), merge=True, force_add=o.is_add())
    return root.metrics


def cmd_score(args: argparse.Namespace) -> int:
    import logging

    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.datasets import build_dataset
    from benchmark.metrics import check_metric_weights
    from benchmark.models import MissingWeightsError
    from benchmark.plugins import PluginError, load_plugins
    from benchmark.registry import UnknownNameError
    from benchmark.runner import finalize, load_run_config
    from benchmark.store import load_records, read_json_object

    # HydraException: e.g. metrics=NAME that does not exist
    errors = (
        MissingWeightsError,
        UnknownNameError,
        ValueError,
        FileNotFoundError,
        OmegaConfBaseException,
        HydraException,
    )
    run_dir = Path(args.run_dir)
    out_dir = Path(args.out) if args.out else run_dir
    # warnings of the checks (unreadable record lines) show now; score.log gets them once it exists
    handlers = emb_log_handlers(console=True, hold=True)
    try:
        # everything that can be checked is checked before anything is written: a failed re-score leaves the
        # run's tables and the --out folder as they were
        try:
            cfg = load_run_config(run_dir)
            try:  # the run's own: its dataset loader or metrics may come from them
                load_plugins(cfg.get("plugins"))
            except PluginError as err:  # gone since the run; a re-score that needs it fails on the name it lacks
                logging.getLogger("emb").warning("%s (from the run's config); re-scoring without it", err)
            load_plugins(args.plugins, key="--plugins")
            metrics_cfg = rescoring_metrics(cfg.metrics, args.overrides, args.metrics_file)
            records = load_records(run_dir)
            if not records:
                raise ValueError(
                    f"{run_dir / 'records.jsonl'}: no readable records (file missing or empty); nothing to score, "
                    "the run's tables are left as they were"
                )
            check_metric_weights(metrics_cfg)
            dataset = build_dataset(cfg.dataset)
        except errors as err:
            print(f"error: {_one_line(err)}", file=sys.stderr, flush=True)
            return 2
        OmegaConf.set_struct(cfg, False)
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        handlers += emb_log_handlers(log_file=out_dir / "score.log")
        extra: dict[str, Any] = {"rescored_with": OmegaConf.to_container(metrics_cfg, resolve=True)}
        kept = None
        if out_dir.resolve() != run_dir.resolve():
            # where the artifacts are, and the overrides as columns for `emb table` (as a sweep job's)
            extra.update(rescored_from=os.path.relpath(run_dir, out_dir), rescore_overrides=list(args.overrides))
        else:
            results = run_dir / "results.json"
            previous = (
                read_json_object(results, "its generation record is not carried over, its tables not compared")
                if results.exists()
                else {}
            )
            extra.update(generation_record(previous))
            if tables_metric_set(previous) not in (None, OmegaConf.to_container(metrics_cfg, resolve=True)):
                kept = keep_previous_tables(run_dir)  # another metric set replaces the run's tables: keep a copy
        try:
            finalize(run_dir, cfg, dataset, extra=extra, metrics_cfg=metrics_cfg, out_dir=out_dir, records=records)
            if kept is not None:
                print(f"the run's earlier tables were kept in {kept}", file=sys.stderr)
        except errors as err:
            # one clear line; the run's records and artifacts are untouched
            if kept is not None:
                shutil.rmtree(kept)
            print(f"error: {_one_line(err)}", file=sys.stderr, flush=True)
            if created and [p.name for p in out_dir.iterdir()] == ["score.log"]:
                remove_log_handlers(handlers)  # closes score.log before it goes
                handlers = []
                (out_dir / "score.log").unlink()
                out_dir.rmdir()  # no folder holding only the log of a re-score that wrote nothing
            return 2
    finally:
        remove_log_handlers(handlers)
    return 0


def cmd_toyworld_train(args: argparse.Namespace) -> int:
    import logging

    from benchmark.toyworld.train import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_dir = train(
        Path(args.out),
        resume=args.resume,
        steps_scale=args.steps_scale,
        seed=args.seed,
        samples=not args.no_samples,
        threads=args.threads,
    )
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
            print(f"error: --reference {ref_path}: not an evidence JSON with 'values' ({problem})", file=sys.stderr)
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


def build_parser() -> argparse.ArgumentParser:
    """The ``emb`` argument parser (every subcommand but ``run``, whose arguments are Hydra overrides)."""
    parser = argparse.ArgumentParser(
        prog="emb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the benchmark (Hydra overrides follow)")
    p_score = sub.add_parser("score", help="re-score a finished run without running any method")
    p_score.add_argument("run_dir")
    p_score.add_argument("overrides", nargs="*", help="e.g. metrics=pie_bench metrics.batch_size=8")
    p_score.add_argument("--metrics-file", help="a metrics preset YAML outside conf/ (same keys as conf/metrics/*)")
    p_score.add_argument(
        "--out", help="write the re-score's tables to this folder instead of RUN_DIR (the run stays as it was)"
    )
    p_score.add_argument(
        "--plugins",
        nargs="+",
        default=[],
        help="modules or .py files to import besides the run's own plugins (e.g. a metric kept outside the checkout)",
    )
    p_score.set_defaults(fn=cmd_score)
    p_report = sub.add_parser("report", help="a run's numbers beside a paper's (reports/published/*.yaml)")
    p_report.add_argument("run_dir")
    p_report.add_argument("--published", help="name in reports/published/ or a YAML path (default: the run's)")
    p_report.add_argument("--rename", nargs="*", default=[], help="PAPER_METHOD=OUR_METHOD pairs")
    p_report.set_defaults(fn=cmd_report)
    p_table = sub.add_parser("table", help="print / merge tables of finished runs and sweeps")
    p_table.add_argument("dirs", nargs="+")
    p_table.add_argument("--edit-type", default="all")
    p_table.add_argument("--out", help="write the merged long summary as CSV")
    p_table.add_argument(
        "--reference-method", help="add speedup_time / speedup_nfe rows against this method (ratio of mean time, NFE)"
    )
    p_table.set_defaults(fn=cmd_table)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from benchmark.app import main as hydra_main

        sys.argv = ["emb run", *argv[1:]]
        hydra_main()
        return 0
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
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
