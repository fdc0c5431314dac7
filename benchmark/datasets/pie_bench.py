"""PIE-Bench (cure-lab/PnPInversion): ``mapping_file.json`` plus ``annotation_images/``.

``mapping_file.json`` maps a 12-digit id to ``image_path`` (relative to ``annotation_images/``), ``original_prompt``,
``editing_prompt`` (changed words in ``[ ]``), ``editing_instruction``, ``editing_type_id`` (a string),
``blended_word`` ("source target") and ``mask``: (start, length) run-length pairs over the 512×512 image flattened
row-major, 1 = region to edit. Their decoder then sets the first and last rows and columns to 1; ``border_rule``
reproduces that (on by default, as in their evaluation).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.datasets.base import (
    EditDataset,
    SampleRef,
    failing_load,
    load_rgb,
    sha256_file,
    spec_checksum,
    under,
)
from benchmark.registry import DATASETS
from benchmark.types import EditSample, SampleError

# editing_type_id → name, from the folder names of annotation_images/ (0_random_140, 1_change_object_80, ...)
EDIT_TYPE_NAMES = {
    "0": "random",
    "1": "change_object",
    "2": "add_object",
    "3": "delete_object",
    "4": "change_attribute_content",
    "5": "change_attribute_pose",
    "6": "change_attribute_color",
    "7": "change_attribute_material",
    "8": "change_background",
    "9": "change_style",
}
REQUIRED = ("image_path", "original_prompt", "editing_prompt", "mask")


def decode_rle(pairs: list[int], shape: tuple[int, int] = (512, 512), border_rule: bool = True) -> np.ndarray:
    """PIE-Bench's run-length mask → bool (H, W).

    ``pairs`` = [start0, length0, start1, length1, ...] over the row-major flattened image; runs are clipped at the
    end of the image. With ``border_rule``, the first and last rows and columns are set to True, as PIE-Bench's own
    decoder does "to avoid annotation errors in boundary".
    """
    h, w = shape
    n = h * w
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1)
    if arr.size % 2:
        raise ValueError(f"odd number of values ({arr.size}); expected (start, length) pairs")
    starts, lengths = arr[0::2], arr[1::2]
    if (starts < 0).any() or (lengths < 0).any():
        raise ValueError("negative start or length")
    keep = starts < n
    starts, ends = starts[keep], np.minimum(starts[keep] + lengths[keep], n)
    # difference array: +1 at each run start, -1 at its end; the running sum is > 0 inside any run
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    mask = (np.cumsum(delta[:n]) > 0).reshape(h, w)
    if border_rule:
        mask[0, :] = mask[-1, :] = True
        mask[:, 0] = mask[:, -1] = True
    return mask


def encode_rle(mask: np.ndarray) -> list[int]:
    """The inverse of ``decode_rle`` without the border rule: (start, length) pairs of the True runs."""
    flat = np.concatenate([[False], np.asarray(mask, dtype=bool).reshape(-1), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return np.stack([starts, ends - starts], axis=1).reshape(-1).tolist()


def strip_brackets(text: str) -> str:
    """'a [rusty] bike' → 'a rusty bike' (PIE-Bench marks changed words with brackets)."""
    return re.sub(r"\s+", " ", text.replace("[", "").replace("]", "")).strip()


def bracketed(text: str) -> str:
    return " ".join(m.strip() for m in re.findall(r"\[([^\]]*)\]", text))


def edit_type_name(type_id: str) -> str:
    return EDIT_TYPE_NAMES.get(str(type_id).strip(), f"type_{type_id}")


@DATASETS.register("pie_bench")
class PIEBenchDataset(EditDataset):
    name = "pie_bench"

    def __init__(
        self,
        root: str,
        mapping_file: str = "mapping_file.json",
        image_dir: str = "annotation_images",
        mask_shape: list[int] | tuple[int, int] = (512, 512),
        border_rule: bool = True,
        edit_types: list[str | int] | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.mapping_file = under(self.root, mapping_file)
        self.image_dir = under(self.root, image_dir)
        if not self.mapping_file.is_file():
            raise FileNotFoundError(
                f"{self.mapping_file}: PIE-Bench mapping file not found (dataset.root='{root}'); see data/pie_bench.md"
            )
        self.mask_shape = (int(mask_shape[0]), int(mask_shape[1]))
        self.border_rule = bool(border_rule)
        # keep only some edit types, by id ("1") or name ("change_object"), like their --edit_category_list
        self.edit_types = None
        if edit_types is not None:
            by_name = {v: k for k, v in EDIT_TYPE_NAMES.items()}
            self.edit_types = {by_name.get(str(t), str(t)) for t in edit_types}

    def _mapping(self) -> dict[str, Any]:
        # The mapping is the index (RLE masks included, a few MB for 700 samples); images stay on disk.
        try:
            with open(self.mapping_file, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.mapping_file}: not valid JSON (line {err.lineno}: {err.msg})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{self.mapping_file}: expected a JSON object keyed by sample id")
        return data

    def refs(self) -> Iterator[SampleRef]:
        mapping = self._mapping()
        for key in sorted(mapping):
            rec = mapping[key]
            where = f"{self.mapping_file}[{key}]"
            if not isinstance(rec, dict):
                yield SampleRef(id=str(key), load=failing_load(f"{where}: expected an object"), source=where)
                continue
            if self.edit_types is not None and str(rec.get("editing_type_id", "")).strip() not in self.edit_types:
                continue
            yield SampleRef(
                id=str(key), load=lambda rec=rec, key=key, where=where: self._load(key, rec, where), source=where
            )

    def _load(self, key: str, rec: dict[str, Any], where: str) -> EditSample:
        for fld in REQUIRED:
            if fld not in rec or rec[fld] in (None, ""):
                raise SampleError(f"{where}: field '{fld}': missing")
        try:
            mask = decode_rle(rec["mask"], self.mask_shape, self.border_rule)
        except (ValueError, TypeError) as err:
            raise SampleError(f"{where}: field 'mask': bad run-length encoding ({err})") from err
        image_path = self.image_dir / str(rec["image_path"])
        image = load_rgb(image_path, "image_path")
        words = str(rec.get("blended_word") or "").split()
        if len(words) == 2:
            edit_words = (words[0], words[1])
        else:
            # no usable "src tgt" pair: fall back to the bracketed words of both prompts
            edit_words = (bracketed(str(rec["original_prompt"])), bracketed(str(rec["editing_prompt"])))
        type_id = str(rec.get("editing_type_id", "")).strip()
        return EditSample(
            id=str(key),
            image=image,
            mask=mask,
            source_prompt=strip_brackets(str(rec["original_prompt"])),
            target_prompt=strip_brackets(str(rec["editing_prompt"])),
            edit_words=edit_words,
            instruction=(str(rec["editing_instruction"]) if rec.get("editing_instruction") else None),
            edit_type=edit_type_name(type_id) if type_id else "unknown",
            meta={
                "source": where,
                "editing_type_id": type_id,
                "blended_word": rec.get("blended_word"),
                # the bracketed prompts, for methods that align words (Prompt-to-Prompt)
                "original_prompt_raw": rec["original_prompt"],
                "editing_prompt_raw": rec["editing_prompt"],
                "image_path": str(image_path),
                "mask_path": f"{where}.mask",
            },
        )

    def checksum(self) -> str:
        return spec_checksum(
            {
                "loader": self.name,
                "files": {self.mapping_file.name: sha256_file(self.mapping_file)},
                "options": {
                    "mask_shape": list(self.mask_shape),
                    "border_rule": self.border_rule,
                    "edit_types": sorted(self.edit_types) if self.edit_types is not None else None,
                },
            }
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "mapping_file": str(self.mapping_file),
            "mapping_file_sha256": sha256_file(self.mapping_file),
            "image_dir": str(self.image_dir),
            "border_rule": self.border_rule,
        }
