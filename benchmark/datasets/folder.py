"""The project's own dataset format: a folder with ``manifest.jsonl`` plus image and mask files.

One JSON object per line:
``{"id", "image", "mask", "source_prompt", "target_prompt", "edit_words": [src, tgt], "instruction"?,
"edit_type", "meta"?, "target_image"?}``; paths are relative to the folder; masks are binary PNGs of the
image's size, white = region to edit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.datasets.base import EditDataset, SampleRef, failing_load, load_mask, load_rgb, sha256_file
from benchmark.registry import DATASETS
from benchmark.types import EditSample, SampleError

REQUIRED = ("id", "image", "mask", "target_prompt")


def write_sample(sample: EditSample, out_dir: Path) -> dict[str, Any]:
    """Write one sample's files under ``out_dir`` and return its manifest record."""
    if sample.mask is None:
        raise SampleError(f"{sample.meta.get('source', sample.id)}: field 'mask': missing, cannot write the sample")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", sample.id)  # ids may hold '/' or spaces; file names may not
    meta = {k: v for k, v in sample.meta.items() if k not in ("source", "image_path", "mask_path")}
    if sample.meta.get("source"):
        meta.setdefault("converted_from", sample.meta["source"])
    rec: dict[str, Any] = {
        "id": sample.id,
        "image": f"images/{stem}.png",
        "mask": f"masks/{stem}.png",
        "source_prompt": sample.source_prompt,
        "target_prompt": sample.target_prompt,
        "edit_words": list(sample.edit_words),
        "instruction": sample.instruction,
        "edit_type": sample.edit_type,
        "meta": meta,
    }
    sample.image.save(out_dir / rec["image"])
    Image.fromarray(sample.mask.astype(np.uint8) * 255).save(out_dir / rec["mask"])
    if sample.target_image is not None:
        (out_dir / "targets").mkdir(exist_ok=True)
        rec["target_image"] = f"targets/{stem}.png"
        sample.target_image.save(out_dir / rec["target_image"])
    return rec


def sample_from_record(rec: dict[str, Any], root: Path, where: str) -> EditSample:
    for key in REQUIRED:
        if key not in rec or rec[key] in (None, ""):
            raise SampleError(f"{where}: field '{key}': missing")
    words = rec.get("edit_words") or ["", ""]
    if not (isinstance(words, list | tuple) and len(words) == 2):
        raise SampleError(f"{where}: field 'edit_words': expected [source, target], got {words!r}")
    image_path = root / rec["image"]
    mask_path = root / rec["mask"]
    image = load_rgb(image_path, "image")
    mask = load_mask(mask_path, "mask")
    target = load_rgb(root / rec["target_image"], "target_image") if rec.get("target_image") else None
    if not isinstance(rec.get("meta") or {}, dict):
        raise SampleError(f"{where}: field 'meta': expected an object, got {type(rec['meta']).__name__}")
    meta = dict(rec.get("meta") or {})
    meta.update(source=where, image_path=str(image_path), mask_path=str(mask_path))
    return EditSample(
        id=str(rec["id"]),
        image=image,
        mask=mask,
        source_prompt=rec.get("source_prompt") or "",
        target_prompt=rec["target_prompt"],
        edit_words=(str(words[0]), str(words[1])),
        instruction=rec.get("instruction"),
        edit_type=rec.get("edit_type") or "unknown",
        meta=meta,
        target_image=target,
    )


@DATASETS.register("folder")
class FolderDataset(EditDataset):
    name = "folder"

    def __init__(self, path: str) -> None:
        self.root = Path(path).expanduser()
        self.manifest = self.root / "manifest.jsonl"
        if not self.manifest.is_file():
            raise FileNotFoundError(f"{self.manifest}: dataset manifest not found (dataset.path='{path}')")

    def refs(self) -> Iterator[SampleRef]:
        with open(self.manifest) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{self.manifest}:{lineno}"
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    bad = f"{where}: not valid JSON ({err.msg})"

                    def fail(msg: str = bad) -> EditSample:
                        raise SampleError(msg)

                    yield SampleRef(id=f"line{lineno}", load=fail, source=where)
                    continue
                if not isinstance(rec, dict):
                    msg = f"{where}: expected a JSON object, got {type(rec).__name__}"
                    yield SampleRef(id=f"line{lineno}", load=failing_load(msg), source=where)
                    continue
                yield SampleRef(
                    id=str(rec.get("id", f"line{lineno}")),
                    load=lambda rec=rec, where=where: sample_from_record(rec, self.root, where),
                    source=where,
                )

    def checksum(self) -> str:
        return sha256_file(self.manifest)

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.root)}
