"""The content-addressed sample cache shared by all runs, and the cache key.

A finished sample is written atomically into the cache (temp folder, then rename): its artifacts and its record, in
the run folder's own file format (``benchmark.rundir``: ``write_artifacts``, ``write_record_file``). A run folder
gets hard links to those files and one appended, fsynced line in its ``records.jsonl``, so ``kill -9`` loses at most
the sample in flight and a rerun of the same config finds every finished sample by its key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.rundir import RunFolder, SampleRecord, fsync_dir, read_record_file, write_artifacts, write_record_file
from benchmark.types import EditOutput


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


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


@dataclass
class SampleCache:
    root: Path

    def folder(self, method: str, key: str) -> Path:
        return self.root / method / key[:2] / key

    def get(self, method: str, key: str) -> SampleRecord | None:
        """The cached record of ``key`` (None when absent, or torn by a write from another filesystem)."""
        return read_record_file(self.folder(method, key))

    def put(self, method: str, key: str, record: SampleRecord, output: EditOutput | None) -> Path:
        final = self.folder(method, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
        if output is not None:
            write_artifacts(tmp, output)
        write_record_file(tmp, record)
        if final.exists():  # a failed attempt is replaced by a new one
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return final


def load_records(run_dir: Path) -> list[dict[str, Any]]:
    """A run's records as their JSON objects. Kept for the tests that read records as dicts; new code uses
    ``benchmark.rundir.RunFolder(run_dir).records()`` (typed records)."""
    return [rec.to_json() for rec in RunFolder(run_dir).records()]
