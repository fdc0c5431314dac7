"""Streaming dataset plumbing shared by every loader: lazy sample references, limit, shard, checksums."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
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


# A sample id names the run's output folder (samples/METHOD/ID/) and the cache's, so it must be one safe path
# component: "../x" or "/tmp/x" would write outside the run or into another method's folder.
SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
MAX_ID_LENGTH = 200  # well under the 255-byte file-name limit of common file systems


def id_problem(sample_id: str) -> str | None:
    """Why ``sample_id`` cannot be used as a sample id (one phrase), or None when it is fine."""
    if not sample_id:
        return "empty"
    if sample_id in (".", "..") or not SAFE_ID.fullmatch(sample_id):
        return f"{sample_id!r} is not a safe sample id (it names a folder): use letters, digits, '.', '_', '-'"
    if len(sample_id) > MAX_ID_LENGTH:
        return f"{len(sample_id)} characters, longer than {MAX_ID_LENGTH}"
    return None


def clean_id(raw: str) -> str:
    """``raw`` if it is a safe id, else a safe id derived from it. For loaders whose ids come from arbitrary values
    (a dataset column): a hash of the raw value keeps two values that clean to the same text apart."""
    if id_problem(raw) is None:
        return raw
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip(".")[: MAX_ID_LENGTH - 9] or "id"
    return f"{stem}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def checked_ids(refs: Iterable[SampleRef]) -> Iterator[SampleRef]:
    """``refs`` with an unsafe id (``id_problem``) or a repeated id failing as one bad sample each.

    The first sample with an id runs; a later one fails under a renamed id (``x#2``: '#' is never in a safe id), so its
    failure record cannot replace the first one's result in the run's store. Ids are remembered over the whole stream
    (a few bytes each), so a duplicate fails in whichever shard it lands.
    """
    first_seen: dict[str, str] = {}
    repeats: dict[str, int] = {}
    for ref in refs:
        where = ref.source or ref.id
        problem = id_problem(ref.id)
        if ref.id in first_seen:
            repeats[ref.id] = repeats.get(ref.id, 1) + 1
            msg = (
                f"{where}: field 'id': {problem}"
                if problem
                else f"{where}: field 'id': '{ref.id}' already used by {first_seen[ref.id]}"
            )
            yield SampleRef(id=f"{ref.id}#{repeats[ref.id]}", load=failing_load(msg), source=ref.source)
            continue
        first_seen[ref.id] = where
        if problem:
            yield replace(ref, load=failing_load(f"{where}: field 'id': {problem}"))
        else:
            yield ref


def failing_load(message: str) -> Callable[[], EditSample]:
    """A ``SampleRef.load`` that raises ``message`` as a SampleError: malformed records fail lazily, when (and
    only when) that sample is loaded, so one bad record never stops the others."""

    def load() -> EditSample:
        raise SampleError(message)

    return load


def sample_fingerprint(sample: EditSample) -> str:
    """Hash of everything a method sees of a sample (pixels, GT mask, id and prompts), so a changed file never
    reuses an old result: part of the sample cache key."""
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


def score_fingerprint(sample: EditSample) -> str:
    """What scoring reads of a sample: everything a method sees plus the reference edit (``_vs_target`` metrics).
    The one content hash of a sample: the run's ``sample_fingerprints.json`` and ``emb data check``'s content
    checksum are made of it."""
    h = hashlib.sha256(sample_fingerprint(sample).encode())
    if sample.target_image is not None:
        target = np.asarray(sample.target_image)
        h.update(str(target.shape).encode() + target.tobytes())
    return h.hexdigest()


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


def mask_levels(im: Image.Image) -> np.ndarray:
    """The one channel of a mask image that carries the region (data/README.md, "Masks"): a non-constant alpha
    channel (a cut-out whose colour is all white), else the grey level of a single-channel image, else the brightest
    colour channel (red on black is a region, not a dark grey)."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("PA", "RGBa", "La"):
        im = im.convert("RGBA")
    if "A" in im.getbands():
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() != alpha.max():
            return alpha
        im = im.convert("L" if im.mode == "LA" else "RGB")
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if len(im.getbands()) == 1:  # L, I;16*, I, F: the values as stored
        return np.asarray(im)
    return np.asarray(im.convert("RGB")).max(axis=2)


def mask_from_image(im: Image.Image, threshold: float | None = None) -> np.ndarray:
    """A mask image's edit region as a bool array (h, w).

    Binary masks in any encoding (0/1, 0/255, 0/100, one colour on black): every pixel of the brighter value. A
    constant mask: all pixels if non-zero, none if zero. A soft mask (more than two values: anti-aliased edges, JPEG
    noise): levels above ``threshold`` (in 0-255 units, scaled to a 16-bit or 0-1 float mask's range), by default
    half the brightest level.
    """
    levels = mask_levels(im)
    lo, hi = levels.min(), levels.max()
    if lo == hi:
        return np.full(levels.shape, bool(hi > 0))
    if not np.any((levels != lo) & (levels != hi)):
        return levels == hi
    if threshold is None:
        return levels > hi / 2
    full = 255 if levels.dtype == np.uint8 else 65535 if hi > 255 else 255 if hi > 1 else 1
    return levels > threshold * full / 255


def load_mask(path: Path, field: str = "mask", threshold: float | None = None) -> np.ndarray:
    """Open a mask image as a bool array (True = edit region); ``mask_from_image`` says how pixels are read."""
    try:
        with Image.open(path) as im:
            im.load()
            return mask_from_image(im, threshold)
    except FileNotFoundError as err:
        raise SampleError(f"{path}: field '{field}': file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SampleError(f"{path}: field '{field}': cannot decode mask ({type(err).__name__}: {err})") from err


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


def empty_mask_problems(sample: EditSample, where: str = "") -> list[str]:
    """A GT mask with no pixel marked: every mask metric would score it as a perfect match (IoU of two empty masks),
    so the do-nothing method would win it. A sample without any GT mask (``mask=None``) is not concerned."""
    if sample.mask is None or sample.mask.any():
        return []
    where = sample.meta.get("mask_path") or where or sample.meta.get("source", sample.id)
    return [f"{where}: field 'mask': empty (no pixel marked to edit)"]


def checked(ref: SampleRef) -> SampleRef:
    """``ref`` whose ``load`` raises one ``SampleError`` line when the sample's parts differ in size or its GT mask
    is empty."""

    def load() -> EditSample:
        sample = ref.load()
        problems = size_problems(sample, ref.source) + empty_mask_problems(sample, ref.source)
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
    problems += empty_mask_problems(sample, where)
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
