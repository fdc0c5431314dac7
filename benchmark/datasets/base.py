"""Streaming dataset plumbing shared by every loader: lazy sample references, limit, shard, checksums."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.types import EditSample, SampleError


@dataclass
class SampleRef:
    """A sample's id and how to load it. Cheap to hold: loaders yield these lazily, so a dataset of any size
    streams, and the runner can skip cached samples without decoding their images."""

    id: str
    load: Callable[[], EditSample]
    source: str = ""  # file or record the sample comes from, for error messages


class EditDataset:
    """Base class of loaders. Subclasses implement ``refs`` (lazily) and ``checksum``."""

    name = "base"

    def refs(self) -> Iterator[SampleRef]:
        raise NotImplementedError

    def checksum(self) -> str:
        """A hash of what defines the dataset's content (index files, generator parameters)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """'i/n' → (i, n); None → None."""
    if shard in (None, "", "null"):
        return None
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError as err:
        raise ValueError(f"dataset.shard='{shard}': expected 'i/n', e.g. 0/4") from err
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"dataset.shard='{shard}': need 0 <= i < n")
    return i, n


def select(refs: Iterable[SampleRef], limit: int | None = None, shard: str | None = None) -> Iterator[SampleRef]:
    """Apply ``limit`` (first N of the whole dataset) and then ``shard`` (every n-th of those, offset i).

    Limit first, so that ``limit=12 shard=0/2`` and ``shard=1/2`` together cover the same 12 samples as
    ``limit=12`` alone.
    """
    it: Iterator[SampleRef] = iter(refs)
    if limit is not None:
        try:
            limit = int(limit)
        except (TypeError, ValueError) as err:
            raise ValueError(f"dataset.limit='{limit}': expected a whole number (or null for all samples)") from err
        if limit >= 0:
            it = itertools.islice(it, limit)
    parsed = parse_shard(shard)
    if parsed is not None:
        i, n = parsed
        it = (r for k, r in enumerate(it) if k % n == i)
    return it


def failing_load(message: str) -> Callable[[], EditSample]:
    """A ``SampleRef.load`` that raises ``message`` as a SampleError: malformed records fail lazily, when (and
    only when) that sample is loaded, so one bad record never stops the others."""

    def load() -> EditSample:
        raise SampleError(message)

    return load


def spec_checksum(spec: dict[str, Any]) -> str:
    """sha256 of a JSON-able description of a dataset's content (file hashes + content-defining options)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def stable_rng(*keys: int | str) -> np.random.Generator:
    """A generator seeded from the keys alone (not from Python's per-process ``hash``), so a dataset's random
    choices are identical in every process, shard and order of iteration."""
    digest = hashlib.sha256("/".join(str(k) for k in keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def under(root: Path, path: str | Path) -> Path:
    """``path`` if absolute, else ``root / path`` (config paths are relative to the dataset root)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def first_existing(folder: Path, templates: list[str] | str, fields: dict[str, str]) -> tuple[Path | None, list[Path]]:
    """The first of ``templates`` (formatted with ``fields``) that exists under ``folder``; also every path tried."""
    tried = []
    for t in [templates] if isinstance(templates, str) else list(templates):
        candidate = folder / t.format(**fields)
        tried.append(candidate)
        if candidate.is_file():
            return candidate, tried
    return None, tried


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_rgb(path: Path, field: str = "image") -> Image.Image:
    """Open an image as RGB; a missing or corrupt file raises one line naming the file and field."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as err:
        raise SampleError(f"{path}: field '{field}': file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SampleError(f"{path}: field '{field}': cannot decode image ({type(err).__name__}: {err})") from err


def load_mask(path: Path, field: str = "mask", threshold: int = 127) -> np.ndarray:
    """Open a mask image as a bool array (white = edit region)."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except FileNotFoundError as err:
        raise SampleError(f"{path}: field '{field}': file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SampleError(f"{path}: field '{field}': cannot decode mask ({type(err).__name__}: {err})") from err
    return arr > threshold


def size_problems(sample: EditSample, where: str = "") -> list[str]:
    """A GT mask or correct-result image whose size differs from the source image's: no metric can compare them
    pixel by pixel, so such a sample fails (``checked``) rather than being scored on a resized guess."""
    where = where or sample.meta.get("source", sample.id)
    width, height = sample.image.size
    problems = []
    if sample.mask is not None and sample.mask.shape[:2] != (height, width):
        h, w = sample.mask.shape[:2]
        mask_path = sample.meta.get("mask_path", where)
        problems.append(f"{mask_path}: field 'mask': size {w}x{h} differs from image size {width}x{height}")
    if sample.target_image is not None and sample.target_image.size != (width, height):
        w, h = sample.target_image.size
        problems.append(f"{where}: field 'target_image': size {w}x{h} differs from image size {width}x{height}")
    return problems


def checked(ref: SampleRef) -> SampleRef:
    """``ref`` whose ``load`` raises one ``SampleError`` line when the sample's parts differ in size."""

    def load() -> EditSample:
        sample = ref.load()
        problems = size_problems(sample, ref.source)
        if problems:
            raise SampleError("; ".join(problems))
        return sample

    return replace(ref, load=load)


def validate_sample(sample: EditSample, where: str = "", max_prompt_tokens: int | None = 77) -> list[str]:
    """Problems that make a sample unusable, each one line naming the file/record and the field."""
    where = where or sample.meta.get("source", sample.id)
    problems: list[str] = size_problems(sample, where)
    if sample.mask is None:
        problems.append(f"{sample.meta.get('mask_path', where)}: field 'mask': missing")
    elif not sample.mask.any():
        problems.append(f"{sample.meta.get('mask_path', where)}: field 'mask': empty (no pixel marked to edit)")
    if not (sample.target_prompt or sample.instruction):
        problems.append(f"{where}: field 'target_prompt': empty and no instruction given")
    if max_prompt_tokens:
        from benchmark.text import count_clip_tokens

        for fld in ("source_prompt", "target_prompt"):
            text = getattr(sample, fld)
            n = count_clip_tokens(text) if text else 0
            if n > max_prompt_tokens:
                problems.append(
                    f"{where}: field '{fld}': {n} tokens, longer than the text encoder's {max_prompt_tokens}"
                )
    return problems
