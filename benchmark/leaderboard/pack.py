"""A submission packed from a finished run: one method's edited images, masks and soft masks, and a manifest filled
from the run's results.json. The zip is validated before it is kept, so what ``pack`` writes a board accepts."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.leaderboard.problems import SubmissionError
from benchmark.leaderboard.submission import (
    EDITED,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MASK,
    SOFT_MASK,
    SubmissionManifest,
)
from benchmark.leaderboard.validate import artifact_entry, opened_submission


class PackError(ValueError):
    """A run that cannot be packed: one line naming the file and field."""


@dataclass(frozen=True)
class MethodInfoArgs:
    """What the submitter adds that the run does not know."""

    description: str = ""
    paper_url: str | None = None
    code_url: str | None = None
    hardware: str | None = None


@dataclass(frozen=True)
class Packed:
    """What ``pack_run`` wrote: the method, how many samples, and the dataset they are of."""

    method: str
    samples: int
    dataset: str


@dataclass(frozen=True)
class PackedSample:
    sample_id: str
    folder: Path  # the run's samples/METHOD/ID/


def pack_run(run_dir: Path, out_zip: Path, method: str | None, info: MethodInfoArgs) -> Packed:
    """Write ``out_zip`` from ``run_dir`` (``PackError``, one line, when the run cannot be packed)."""
    from benchmark.rundir import RunFolder

    run = RunFolder(Path(run_dir))
    run.check_format()
    results = read_results(run)
    records = run.records()
    methods = sorted({r.method for r in records})
    method = choose_method(run.path, methods, method)
    samples = [
        PackedSample(r.sample_id, run.path / r.artifacts)
        for r in records
        if r.method == method and r.ok and r.artifacts is not None
    ]
    if not samples:
        raise PackError(f"{run.records_path}: method {method} has no finished sample")
    manifest = run_manifest(results, method, info, run.results_path)
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_zip.name}-", dir=out_zip.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_zip(tmp, manifest, samples)
        try:
            with opened_submission(tmp):
                pass
        except SubmissionError as err:
            raise PackError(f"{run.path}: the packed submission would be refused: {err.problems[0]}") from err
        os.replace(tmp, out_zip)
    finally:
        tmp.unlink(missing_ok=True)
    return Packed(method, len(samples), manifest.dataset.name)


def read_results(run) -> dict[str, Any]:
    """The run's results.json (through the run folder's reader); a run without one has not been scored."""
    if not run.results_path.exists():
        raise PackError(f"{run.results_path}: missing (score the run first: emb score {run.path})")
    results = run.read_results_strictly()
    if not results.get("dataset"):
        raise PackError(f"{run.results_path}: field 'dataset': missing")
    return results


def choose_method(run_dir: Path, methods: list[str], method: str | None) -> str:
    if method is not None:
        if method not in methods:
            raise PackError(f"{run_dir}: --method {method}: not in this run (it has {', '.join(methods) or 'none'})")
        return method
    if len(methods) != 1:
        raise PackError(f"{run_dir}: {len(methods)} methods ({', '.join(methods)}); choose one with --method")
    return methods[0]


def summary_mean(results: dict[str, Any], method: str, metric: str) -> float | None:
    for row in results.get("summary") or []:
        if row.get("method") == method and row.get("edit_type") == "all" and row.get("metric") == metric:
            value = row.get("mean")
            return float(value) if isinstance(value, int | float) and np.isfinite(value) else None
    return None


def method_config(config: dict[str, Any], method: str) -> dict[str, Any] | None:
    """The method's resolved config from the run's: ``method`` when set, else its entry of ``methods``."""
    single = config.get("method")
    if isinstance(single, dict) and single.get("name") == method:
        return single
    for entry in config.get("methods") or []:
        if entry == method:
            return {"name": method}
        if isinstance(entry, dict) and method in entry:
            return {"name": method, **(entry[method] or {})}
    return None


def run_manifest(results: dict[str, Any], method: str, info: MethodInfoArgs, source: Path) -> SubmissionManifest:
    """The manifest of ``method``'s submission from the run's results.json (``results``, read from ``source``)."""
    dataset = results.get("dataset") or {}
    config = results.get("config") or {}
    provenance = results.get("generation_provenance") or results.get("provenance") or {}
    versions = provenance.get("versions") or {}
    git = provenance.get("git") or {}
    model = config.get("model") or {}
    hardware = info.hardware or " ".join(str(provenance[k]) for k in ("platform", "gpu") if provenance.get(k)) or None
    raw = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": {
            "name": method,
            "description": info.description,
            "paper_url": info.paper_url,
            "code_url": info.code_url,
        },
        "dataset": {"name": str(dataset.get("name", "")), "checksum": str(dataset.get("checksum", ""))},
        "harness": {
            "version": str(versions.get("editing-mask-bench") or "unknown"),
            "git_commit": git.get("commit") or None,
            "git_dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
            "method_config": method_config(config, method),
            "config": config or None,
        },
        "seed": config.get("seed") if isinstance(config.get("seed"), int) else None,
        "resolution": model.get("resolution") if isinstance(model.get("resolution"), int) else None,
        "self_reported": {
            "time_s_per_image": summary_mean(results, method, "time_s"),
            "nfe_per_image": summary_mean(results, method, "nfe"),
            "hardware": hardware[:300] if hardware else None,
        },
    }
    try:
        # through JSON and back: the manifest is exactly what a board will parse
        return SubmissionManifest.model_validate_json(json.dumps(raw))
    except ValueError as err:
        first = " ".join(str(err).split())[:300]
        raise PackError(f"{source}: cannot fill {MANIFEST} ({first})") from err


def write_zip(path: Path, manifest: SubmissionManifest, samples: list[PackedSample]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest.model_dump_json(indent=1, exclude_none=True))
        for sample in samples:
            for entry_name, data in sample_pngs(sample):
                zf.writestr(entry_name, data)


def sample_pngs(sample: PackedSample) -> list[tuple[str, bytes]]:
    """(entry name, PNG bytes) of one stored sample, read through the run folder's reader: the edit as RGB, the mask
    as 0/255 grey, the soft mask (2-D) as 16-bit grey."""
    from benchmark.rundir import read_output
    from benchmark.types import SampleError

    try:
        output = read_output(sample.folder)
    except SampleError as err:
        raise PackError(str(err)) from err
    out = []
    if output.image is not None:
        out.append((artifact_entry(EDITED, sample.sample_id), png_bytes(output.image.convert("RGB"))))
    if output.mask is not None:
        binary = np.asarray(output.mask, dtype=bool).astype(np.uint8) * 255
        out.append((artifact_entry(MASK, sample.sample_id), png_bytes(Image.fromarray(binary))))
    if output.soft_mask is not None:
        values = np.squeeze(np.asarray(output.soft_mask, dtype=np.float64))
        if values.ndim == 2:
            levels = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 65535).astype(np.uint16)
            out.append((artifact_entry(SOFT_MASK, sample.sample_id), png_bytes(Image.fromarray(levels))))
    return out


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
