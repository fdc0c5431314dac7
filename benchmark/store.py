"""The result store: a content-addressed sample cache plus one run directory per run.

A finished sample is written atomically into the cache (temp folder, then rename): edited image and binary mask as
PNG, soft mask as compressed ``.npz``, and ``record.json`` (the per-sample row). The run directory gets hard links
to those files and one appended, fsynced line in ``records.jsonl``, so ``kill -9`` loses at most the sample in
flight and a rerun of the same config finds every finished sample by its key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.types import EditOutput, EditSample, SampleError, error_line

log = logging.getLogger("emb")

ARTIFACTS = ("edited.png", "mask.png", "soft_mask.npz")


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sample_fingerprint(sample: EditSample) -> str:
    """Hash of everything a method sees of a sample, so a changed file never reuses an old result."""
    h = hashlib.sha256()
    h.update(np.asarray(sample.image).tobytes())
    if sample.mask is not None:
        h.update(np.packbits(sample.mask).tobytes())
        h.update(str(sample.mask.shape).encode())
    h.update(
        json.dumps(
            [sample.id, sample.source_prompt, sample.target_prompt, list(sample.edit_words), sample.instruction]
        ).encode()
    )
    return h.hexdigest()


FINGERPRINTS_FILE = "sample_fingerprints.json"


def score_fingerprint(sample: EditSample) -> str:
    """What scoring reads of a sample: everything a method sees plus the reference edit (``_vs_target`` metrics)."""
    h = hashlib.sha256(sample_fingerprint(sample).encode())
    if sample.target_image is not None:
        target = np.asarray(sample.target_image)
        h.update(str(target.shape).encode() + target.tobytes())
    return h.hexdigest()


def read_json_object(path: Path, when_unreadable: str) -> dict[str, Any]:
    """A JSON object file; an unreadable one (e.g. truncated) is one warning line ending in ``when_unreadable``
    (what is lost) and ``{}``, so the caller goes on."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); %s", path, error_line(err), when_unreadable)
        return {}


def next_free_index(folder: Path, *templates: str) -> int:
    """The smallest N >= 1 for which no ``folder / template.format(n=N)`` exists, for every template (names an
    earlier run's or scoring's files are set aside under, e.g. ``records.previous-{n}.jsonl``)."""
    n = 1
    while any((folder / t.format(n=n)).exists() for t in templates):
        n += 1
    return n


def read_fingerprints(run_dir: Path) -> dict[str, str]:
    """Record key → the sample's ``score_fingerprint`` when the run was first scored (empty for older runs)."""
    path = run_dir / FINGERPRINTS_FILE
    if not path.exists():
        return {}
    data = read_json_object(path, "changed dataset samples cannot be detected")
    return {str(k): str(v) for k, v in data.items()}


def write_fingerprints(run_dir: Path, fingerprints: dict[str, str]) -> None:
    tmp = run_dir / f".{FINGERPRINTS_FILE}.tmp"
    tmp.write_text(json.dumps(fingerprints, sort_keys=True))
    os.replace(tmp, run_dir / FINGERPRINTS_FILE)  # a killed write never leaves half a file


def cache_key(
    method: str,
    method_config_hash: str,
    model_id: Any,
    sample_id: str,
    sample_fp: str,
    seed: int,
    code_version: str,
    inputs_fp: str | None = None,
) -> str:
    parts = {
        "method": method,
        "config": method_config_hash,
        "model": model_id,
        "sample": sample_id,
        "sample_fingerprint": sample_fp,
        "seed": seed,
        "code": code_version,
    }
    if inputs_fp is not None:  # extra inputs a method reads (e.g. another run's masks)
        parts["inputs"] = inputs_fp
    return stable_hash(parts)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifacts(folder: Path, output: EditOutput) -> None:
    if output.image is not None:
        output.image.save(folder / "edited.png")
    if output.mask is not None:
        Image.fromarray(np.asarray(output.mask, dtype=bool).astype(np.uint8) * 255).save(folder / "mask.png")
    if output.soft_mask is not None:
        np.savez_compressed(folder / "soft_mask.npz", soft_mask=np.asarray(output.soft_mask, dtype=np.float32))


def read_output(folder: Path, record: dict[str, Any] | None = None) -> EditOutput:
    """Load a stored sample's artifacts back as an EditOutput (what scoring sees).

    An artifact that cannot be decoded, or that the record says was written but is gone, is a ``SampleError``
    naming the file: that sample fails to score, the others go on."""
    out = EditOutput()
    record = record or {}

    def path_of(name: str, flag: str | None) -> Path | None:
        path = folder / name
        if path.exists():
            return path
        if flag and record.get(flag):  # the method produced it: a deleted file, not an absent output
            raise SampleError(f"{path}: missing (the record says the method wrote it)")
        return None

    try:
        if path := path_of("edited.png", "has_image"):
            with Image.open(path) as im:
                out.image = im.convert("RGB")
        if path := path_of("mask.png", "has_mask"):
            with Image.open(path) as im:
                out.mask = np.asarray(im.convert("L")) > 127
        if path := path_of("soft_mask.npz", None):
            with np.load(path) as z:
                out.soft_mask = z["soft_mask"]
    except SampleError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # truncated or corrupt file
        raise SampleError(f"{path}: cannot read ({error_line(err)})") from err
    if record:
        out.nfe = int(record.get("nfe") or 0)
        out.denoiser_calls = int(record.get("denoiser_calls") or 0)
    return out


@dataclass
class SampleCache:
    root: Path

    def folder(self, method: str, key: str) -> Path:
        return self.root / method / key[:2] / key

    def get(self, method: str, key: str) -> dict[str, Any] | None:
        rec_path = self.folder(method, key) / "record.json"
        if not rec_path.exists():
            return None
        try:
            return json.loads(rec_path.read_text())
        except json.JSONDecodeError:  # torn write from another filesystem: treat as missing
            return None

    def put(self, method: str, key: str, record: dict[str, Any], output: EditOutput | None) -> Path:
        final = self.folder(method, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
        if output is not None:
            write_artifacts(tmp, output)
        with open(tmp / "record.json", "w") as f:
            json.dump(record, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # a failed attempt is replaced by a new one
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return final


class RunStore:
    """One run directory: ``records.jsonl`` (append-only, one line per finished sample) and ``samples/``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.records_path = run_dir / "records.jsonl"

    def sample_dir(self, method: str, sample_id: str) -> Path:
        return self.run_dir / "samples" / method / sample_id

    def add(self, record: dict[str, Any], cache_folder: Path | None) -> dict[str, Any]:
        """Append a finished sample; link its cached artifacts (if any) into ``samples/METHOD/ID/``."""
        if cache_folder is None:
            return self._append(record)
        dest = self.sample_dir(record["method"], record["sample_id"])
        dest.mkdir(parents=True, exist_ok=True)
        for name in (*ARTIFACTS, "record.json"):
            src = cache_folder / name
            if src.exists():
                target = dest / name
                if target.exists():
                    target.unlink()
                try:
                    os.link(src, target)  # same bytes, no copy
                except OSError:
                    shutil.copy2(src, target)
        return self._append({**record, "artifacts": str(dest.relative_to(self.run_dir))})

    def _append(self, record: dict[str, Any]) -> dict[str, Any]:
        with open(self.records_path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self) -> list[dict[str, Any]]:
        return load_records(self.run_dir)


# keys every record line has (``RunStore.add`` / the runner write them); a line without them cannot be tabulated
RECORD_KEYS = ("method", "sample_id", "status")


def load_records(run_dir: Path) -> list[dict[str, Any]]:
    """The run's per-sample records, last one per (method, sample) winning (a rerun may append again).

    Every unreadable line (not JSON, not an object, a required key missing) is one warning naming
    ``records.jsonl:N``; a cut-off last line, the trace of a killed run (the sample in flight), is one info line.
    Nothing finished is lost to such a line: a sample whose ``samples/METHOD/ID/record.json`` (written before its
    line) has no readable line is taken from there, and one line says how many were."""
    path = run_dir / "records.jsonl"
    if not path.exists():
        return []
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    damaged = 0
    with open(path, errors="replace") as f:
        lines = f.read().split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
            problem = None
        except json.JSONDecodeError as err:
            rec, problem = None, f"not JSON ({err.msg})"
        if problem is None:
            if not isinstance(rec, dict):
                problem = "not a JSON object"
            elif missing := [k for k in RECORD_KEYS if k not in rec]:
                problem = f"field '{missing[0]}': missing"
        if problem is None:
            latest[(str(rec["method"]), str(rec["sample_id"]))] = rec
            continue
        damaged += 1
        if i == last and rec is None:
            log.info("%s:%d: cut off (the sample in flight when the run was stopped); left out", path, i + 1)
        else:
            log.warning("%s:%d: unreadable record, left out: %s", path, i + 1, problem)
    if damaged:
        rebuilt = _records_from_sample_folders(run_dir, latest)
        if rebuilt:
            log.warning("%s: %d record(s) rebuilt from samples/*/*/record.json", path, rebuilt)
    return list(latest.values())


def _records_from_sample_folders(run_dir: Path, latest: dict[tuple[str, str], dict[str, Any]]) -> int:
    """Add to ``latest`` every finished sample of ``run_dir/samples/`` that has no record yet; return how many.
    Failed samples have no folder (they are not cached): a rerun tries them again anyway."""
    added = 0
    for rec_path in sorted((run_dir / "samples").glob("*/*/record.json")):
        folder = rec_path.parent
        method, sample_id = folder.parent.name, folder.name
        if (method, sample_id) in latest:
            continue
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(rec, dict) or (rec.get("method"), rec.get("sample_id")) != (method, sample_id):
            continue
        if any(k not in rec for k in RECORD_KEYS):
            continue
        latest[(method, sample_id)] = {**rec, "artifacts": str(folder.relative_to(run_dir))}
        added += 1
    return added
