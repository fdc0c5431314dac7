"""The submission format (version 1): the layout of a submission and the model of its manifest, submission.json.

A submission is a folder or a zip holding, at its root::

    submission.json              the manifest (``SubmissionManifest``)
    edited/<sample_id>.png       the edited image of each sample (8-bit RGB or RGBA)
    masks/<sample_id>.png        optional: the method's binary mask (8-bit grey, 0 and 255; white = edit)
    soft_masks/<sample_id>.png   optional: its soft mask, 16-bit grey (value / 65535 in [0, 1])

and nothing else: no pickle, no arrays, no code. docs/leaderboard.md is the user-facing description.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError

from benchmark.datasets.base import id_problem
from benchmark.leaderboard.problems import Problems, shown

FORMAT = "emb-submission"
FORMAT_VERSION = 1
MANIFEST = "submission.json"


@dataclass(frozen=True)
class Artifact:
    """One kind of per-sample file: its folder in the submission."""

    folder: str


EDITED = Artifact("edited")
MASK = Artifact("masks")
SOFT_MASK = Artifact("soft_masks")
ARTIFACTS = (EDITED, MASK, SOFT_MASK)
IMAGE_SUFFIX = ".png"
# what people might put in by habit, named in the refusal: each can carry code or pickled objects
FORBIDDEN_SUFFIXES = (".npz", ".npy", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".py", ".pyc", ".so")

# text shown on the board: stored as given (HTML included; the page escapes it), without characters that change how
# the surrounding text reads (bidi overrides, zero-width joiners) or control characters
_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _plain_text(value: str, allow_newlines: bool) -> str:
    for ch in value:
        if allow_newlines and ch in "\n\t":
            continue
        if unicodedata.category(ch) in _INVISIBLE:
            raise ValueError(f"holds the control or format character {ch.encode('unicode_escape').decode()}")
    return value


def _one_line_text(value: str) -> str:
    return _plain_text(value, allow_newlines=False)


def _multi_line_text(value: str) -> str:
    return _plain_text(value, allow_newlines=True)


def _http_url(value: str) -> str:
    """http(s) only: a ``javascript:`` or ``data:`` link on the board would run or show the submitter's content."""
    _one_line_text(value)
    if any(ch.isspace() for ch in value):
        raise ValueError("holds white space")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http(s) URL")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_one_line_text)]
ShortText = Annotated[str, StringConstraints(max_length=300), AfterValidator(_one_line_text)]
LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_multi_line_text)]
Url = Annotated[str, StringConstraints(max_length=2_000), AfterValidator(_http_url)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")]  # @: curve points (soft_iou@0.5)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class StrictModel(BaseModel):
    """No coercion ("3" is not 3, true is not 1), no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class MethodInfo(StrictModel):
    name: Name
    description: LongText = ""
    paper_url: Url | None = None
    code_url: Url | None = None


class DatasetStamp(StrictModel):
    """The dataset the edits were made on, as the harness stamps it (results.json's dataset name and checksum)."""

    name: Name
    checksum: Sha256


class HarnessStamp(StrictModel):
    """Set when ``emb run`` made the edits (``emb submit pack`` fills it from the run's results.json)."""

    version: Name  # the editing-mask-bench package version
    git_commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,40}$")] | None = None
    git_dirty: bool | None = None
    method_config: dict[str, JsonValue] | None = None  # the method's resolved config
    config: dict[str, JsonValue] | None = None  # the run's resolved config


class SelfReported(StrictModel):
    """Figures the board cannot recompute from images: shown as self-reported, never as verified."""

    time_s_per_image: Annotated[FiniteFloat, Field(ge=0, le=1e6)] | None = None
    nfe_per_image: Annotated[FiniteFloat, Field(ge=0, le=1e7)] | None = None
    hardware: ShortText | None = None
    metrics: Annotated[dict[MetricName, FiniteFloat], Field(max_length=200)] = {}


class SubmissionManifest(StrictModel):
    format: Literal["emb-submission"]
    format_version: Literal[1]
    method: MethodInfo
    dataset: DatasetStamp
    harness: HarnessStamp | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    resolution: Annotated[int, Field(ge=1, le=65_536)] | None = None
    self_reported: SelfReported = SelfReported()


def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (docs/leaderboard.md prints how to get it)."""
    return SubmissionManifest.model_json_schema()


class _Rejected(ValueError):
    """A strict-JSON rule broken while parsing (a NaN, a repeated key, an over-long number)."""


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected(f"{shown(text)} is out of range")
    return value


MAX_INT_DIGITS = 20  # 2**63 has 19 digits: a longer literal is no id, seed or count


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Rejected(f"a number of {len(text)} digits")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Rejected(f"key {shown(key)!r} appears twice in one object")
        out[key] = value
    return out


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion on hostile input)."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return depth


def strict_json(data: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity, no number that overflows, no repeated key.
    Raises ``ValueError`` with one phrase."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 (byte {err.start})") from err
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except _Rejected as err:
        raise ValueError(str(err)) from err
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    except RecursionError as err:
        raise ValueError("nested too deeply") from err


def parse_manifest(data: bytes, max_depth: int, problems: Problems) -> SubmissionManifest | None:
    """The manifest from ``data``, or None with each problem added to ``problems`` as 'submission.json: ...'."""
    try:
        raw = strict_json(data)
    except ValueError as err:
        problems.add(MANIFEST, str(err))
        return None
    if not isinstance(raw, dict):
        problems.add(MANIFEST, f"not a JSON object (a {type(raw).__name__})")
        return None
    if json_depth(raw) > max_depth:
        problems.add(MANIFEST, f"nested deeper than {max_depth} levels")
        return None
    version = raw.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != FORMAT_VERSION:
        problems.add(MANIFEST, f"field 'format_version': {version}; this harness reads version {FORMAT_VERSION}")
        return None
    try:
        return SubmissionManifest.model_validate(raw)
    except ValidationError as err:
        for e in err.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in e["loc"]) or "(top level)"
            problems.add(MANIFEST, f"field {shown(where)!r}: {e['msg']}")
        return None


@dataclass(frozen=True)
class EntryRole:
    """What an archive entry is in the layout: the manifest, or one artifact of one sample."""

    artifact: Artifact | None  # None: the manifest
    sample_id: str = ""


def entry_role(name: str) -> tuple[EntryRole | None, str | None]:
    """(role, None) for an entry the layout allows, else (None, why not). ``name`` is a safe relative path."""
    if name == MANIFEST:
        return EntryRole(None), None
    parts = name.split("/")
    folders = {a.folder: a for a in ARTIFACTS}
    lower = name.lower()
    if lower.endswith(FORBIDDEN_SUFFIXES):
        return None, "arrays, pickles and code are not accepted (images are PNG files)"
    if len(parts) != 2 or parts[0] not in folders:
        if parts[-1] == MANIFEST:
            return None, f"{MANIFEST} must be at the submission's root"
        return None, f"not part of a submission ({MANIFEST}, {', '.join(a.folder + '/ID.png' for a in ARTIFACTS)})"
    folder, file_name = parts
    if not file_name.endswith(IMAGE_SUFFIX):
        return None, f"not a .png file (each image is {folder}/SAMPLE_ID.png)"
    stem = file_name[: -len(IMAGE_SUFFIX)]
    problem = sample_id_problem(stem)
    if problem:
        return None, f"sample id {problem}"
    return EntryRole(folders[folder], stem), None


def sample_id_problem(raw: str) -> str | None:
    """Why ``raw`` is not a sample id: the harness's safe-id rule after NFKC normalisation, and no look-alikes: a
    name whose NFKC form differs from it (a full-width 'ａ' for 'a') stands for another id and is refused."""
    normal = unicodedata.normalize("NFKC", raw)
    if normal != raw:
        return f"{shown(raw)!r} is a look-alike of {shown(normal)!r} (NFKC): name the file with the id itself"
    problem = id_problem(raw)
    if problem:
        return shown(problem)
    return None
