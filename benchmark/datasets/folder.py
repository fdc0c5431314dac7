"""The project's own dataset format: a folder with ``manifest.jsonl`` plus image and mask files.

One JSON object per line:
``{"id", "image", "mask", "source_prompt", "target_prompt", "edit_words": [src, tgt], "instruction"?,
"edit_type", "meta"?, "target_image"?}``; paths are relative to the folder; masks are images of the image's size,
non-zero (white) = region to edit (data/README.md, "Masks" says exactly how pixels are read).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.datasets.base import (
    EditDataset,
    SampleRef,
    clean_id,
    failing_load,
    load_mask,
    load_rgb,
    sha256_file,
)
from benchmark.registry import DATASETS
from benchmark.types import EditSample, SampleError


def write_sample(sample: EditSample, out_dir: Path) -> dict[str, Any]:
    """Write one sample's files under ``out_dir`` and return its manifest record."""
    if sample.mask is None:
        raise SampleError(f"{sample.meta.get('source', sample.id)}: field 'mask': missing, cannot write the sample")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    stem = clean_id(sample.id)  # the id names the files (and, read back, the run's folders): one safe component
    meta = {k: v for k, v in sample.meta.items() if k not in ("source", "image_path", "mask_path")}
    if sample.meta.get("source"):
        meta.setdefault("converted_from", sample.meta["source"])
    rec: dict[str, Any] = {
        "id": stem,
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


# JSON's names for Python's types, since the user wrote JSON
JSON_TYPES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    list: "an array",
    dict: "an object",
}


def json_type(value: Any) -> str:
    return "null" if value is None else JSON_TYPES.get(type(value), type(value).__name__)


def _string(rec: dict[str, Any], key: str, where: str, required: bool = False, what: str = "a string") -> str | None:
    """``rec[key]`` checked to be a string (None when absent/null and not required; '' counts as absent for a
    required field); anything else is one line naming the field."""
    value = rec.get(key)
    if value is None or (required and value == ""):
        if required:
            raise SampleError(f"{where}: field '{key}': missing")
        return None
    if not isinstance(value, str):
        raise SampleError(f"{where}: field '{key}': expected {what}, got {json_type(value)}")
    return value


def _path(rec: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    path = _string(rec, key, where, required, what="a file path (a non-empty string)")
    if path is not None and not path.strip():
        raise SampleError(f"{where}: field '{key}': expected a file path (a non-empty string), got a blank string")
    return path or None


def _edit_words(rec: dict[str, Any], where: str) -> tuple[str, str]:
    """``[source, target]``: each a string, or null for "no phrase" (as the whole field may be null or absent)."""
    words = rec.get("edit_words")
    if words is None or words == []:  # [] was always read as "none given"
        return "", ""
    if not (isinstance(words, list) and len(words) == 2):
        got = f"an array of {len(words)}" if isinstance(words, list) else json_type(words)
        raise SampleError(f"{where}: field 'edit_words': expected [source, target] (two strings), got {got}")
    for word in words:
        if word is not None and not isinstance(word, str):
            raise SampleError(
                f"{where}: field 'edit_words': expected [source, target] (two strings), got {json_type(word)}"
            )
    return words[0] or "", words[1] or ""


def sample_from_record(rec: dict[str, Any], root: Path, where: str) -> EditSample:
    # every field's type is checked before any file is read: a wrong type is one line, never a TypeError later
    sample_id = _string(rec, "id", where, required=True)
    image_rel = _path(rec, "image", where, required=True)
    mask_rel = _path(rec, "mask", where, required=True)
    target_rel = _path(rec, "target_image", where)
    target_prompt = _string(rec, "target_prompt", where, required=True)
    source_prompt = _string(rec, "source_prompt", where) or ""
    instruction = _string(rec, "instruction", where) or None
    edit_type = _string(rec, "edit_type", where) or "unknown"
    words = _edit_words(rec, where)
    meta_value = rec.get("meta")
    if meta_value is not None and not isinstance(meta_value, dict):
        raise SampleError(f"{where}: field 'meta': expected an object, got {json_type(meta_value)}")
    image_path = root / image_rel
    mask_path = root / mask_rel
    image = load_rgb(image_path, "image")
    mask = load_mask(mask_path, "mask")
    target = load_rgb(root / target_rel, "target_image") if target_rel else None
    meta = dict(meta_value or {})
    meta.update(source=where, image_path=str(image_path), mask_path=str(mask_path))
    return EditSample(
        id=sample_id,
        image=image,
        mask=mask,
        source_prompt=source_prompt,
        target_prompt=target_prompt,
        edit_words=words,
        instruction=instruction,
        edit_type=edit_type,
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
        # bytes, decoded line by line: a stray non-UTF-8 byte fails its line only, and a byte-order mark (editors on
        # Windows write one) is not part of record 1
        with open(self.manifest, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                where = f"{self.manifest}:{lineno}"
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    msg = f"{where}: not valid UTF-8 (byte {err.start + 1}: {err.reason})"
                    yield SampleRef(id=f"line{lineno}", load=failing_load(msg), source=where)
                    continue
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    # some of json's messages end in "at" ("Invalid control character at"), the others need one
                    at = "" if err.msg.endswith(" at") else " at"
                    msg = f"{where}: not valid JSON ({err.msg}{at} column {err.colno})"
                    yield SampleRef(id=f"line{lineno}", load=failing_load(msg), source=where)
                    continue
                if not isinstance(rec, dict):
                    msg = f"{where}: expected a JSON object, got {json_type(rec)}"
                    yield SampleRef(id=f"line{lineno}", load=failing_load(msg), source=where)
                    continue
                # a missing or non-string id: the ref gets a placeholder and load() says what is wrong with the field
                rec_id = rec.get("id")
                yield SampleRef(
                    id=rec_id if isinstance(rec_id, str) and rec_id else f"line{lineno}",
                    load=lambda rec=rec, where=where: sample_from_record(rec, self.root, where),
                    source=where,
                )

    def checksum(self) -> str:
        return sha256_file(self.manifest)

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.root)}
