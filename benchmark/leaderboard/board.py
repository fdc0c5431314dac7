"""A board: a folder with ``board.yaml`` (what it ranks and how) and one folder per scored entry.

::

    BOARD_DIR/board.yaml                  BoardConfig
    BOARD_DIR/entries/<entry_id>/         the validated submission as given (submission.json, edited/, masks/, …),
                                          score.json (EntryScore), samples.parquet (per-sample rows), preview/
    BOARD_DIR/leaderboard.json            written by ``emb leaderboard build``: every entry's figures, ranked
    BOARD_DIR/samples.parquet             every entry's per-sample rows, with an ``entry_id`` column
    BOARD_DIR/site/                       the static site (index.html, entries/<entry_id>.html, media/)
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StringConstraints, ValidationError

from benchmark.leaderboard.limits import Limits
from benchmark.leaderboard.problems import shown
from benchmark.leaderboard.submission import (
    EDITED,
    MASK,
    SOFT_MASK,
    Artifact,
    FiniteFloat,
    MetricName,
    Name,
    Sha256,
    StrictModel,
)
from benchmark.rundir import LONG_TABLE_FILE

BOARD_FILE = "board.yaml"
ENTRIES = "entries"
SCORE_FILE = "score.json"
ENTRY_ROWS = LONG_TABLE_FILE  # an entry's per-sample rows: the long table of its re-scored run, as a run writes it
PREVIEW = "preview"
# an entry page's thumbnails per sample: the source with the GT mask, the edit, the edit with the method's mask
PREVIEW_KINDS = ("source", "edit", "overlay")
LEADERBOARD_FILE = "leaderboard.json"
SITE = "site"
BOARD_FORMAT_VERSION = 1

Scalar = str | int | float | bool | None


class DatasetPin(StrictModel):
    """The board's dataset: a config of conf/dataset/ with keys set on top, and the checksum it must have."""

    config: Name
    overrides: dict[str, Scalar | list[Scalar]] = {}
    checksum: Sha256


class MetricsPin(StrictModel):
    """The metric preset every entry is scored with: conf/metrics/PRESET.yaml, or ``file`` (beside board.yaml)."""

    preset: Name | None = None
    file: Name | None = None


class Ranking(StrictModel):
    metric: MetricName
    direction: Literal["higher", "lower"]


class LimitsOverride(StrictModel):
    """Any of ``Limits``' fields, to lower or raise it for this board."""

    max_archive_bytes: int | None = None
    max_total_bytes: int | None = None
    max_files: int | None = None
    max_file_bytes: int | None = None
    max_ratio: float | None = None
    max_manifest_bytes: int | None = None
    max_pixels: int | None = None


ArtifactName = Literal["edited", "masks", "soft_masks"]
_ARTIFACTS = {"edited": EDITED, "masks": MASK, "soft_masks": SOFT_MASK}


class BoardConfig(StrictModel):
    format_version: Literal[1]
    title: Name
    description: str = ""
    dataset: DatasetPin
    metrics: MetricsPin
    ranking: Ranking
    columns: Annotated[list[MetricName], Field(min_length=1)]  # the verified metrics shown, in order
    edit_type_columns: list[MetricName] = []  # of those, the ones also shown per edit type
    missing_samples: Literal["fail", "refuse"] = "fail"  # a sample the submission lacks: a failure, or refused
    requires: Annotated[list[ArtifactName], Field(min_length=1)] = ["edited"]  # files each sample must have
    grid_samples: Annotated[int, Field(ge=0, le=200)] = 12  # samples shown on each entry's page
    limits: LimitsOverride = LimitsOverride()

    def required_artifacts(self) -> tuple[Artifact, ...]:
        return tuple(_ARTIFACTS[name] for name in self.requires)

    def validation_limits(self) -> Limits:
        return Limits(**{k: v for k, v in self.limits.model_dump().items() if v is not None})


class BoardError(ValueError):
    """A board folder or one of its files that cannot be used: one line naming the file and field."""


def load_board(board_dir: Path) -> BoardConfig:
    path = Path(board_dir) / BOARD_FILE
    if not path.is_file():
        raise BoardError(f"{path}: missing (a board is a folder with {BOARD_FILE})")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BoardError(f"{path}: unreadable ({' '.join(str(err).split())[:200]})") from err
    if not isinstance(raw, dict):
        raise BoardError(f"{path}: not a mapping")
    try:
        config = BoardConfig.model_validate(raw)
    except ValidationError as err:
        e = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        raise BoardError(f"{path}: field '{where}': {e['msg']}") from err
    if (config.metrics.preset is None) == (config.metrics.file is None):
        raise BoardError(f"{path}: field 'metrics': give one of preset (conf/metrics/NAME.yaml) or file")
    unknown = [c for c in config.edit_type_columns if c not in config.columns]
    if unknown:
        raise BoardError(f"{path}: field 'edit_type_columns': {unknown[0]} is not one of columns")
    return config


def entry_id_for(method_name: str, digest: str) -> str:
    """A safe folder name for an entry: the method's name reduced to ASCII letters, digits and '-', then the
    submission's digest (the same submission keeps its entry; another one of the same method gets its own)."""
    ascii_name = unicodedata.normalize("NFKD", method_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-") or "entry"
    return f"{slug}-{digest[:10]}"


class SummaryCell(StrictModel):
    """One summary figure of an entry (as in a run's summary.csv): a metric over one edit type or 'all'.
    ``mean`` None: no value (NaN); +/- infinity as the strings 'inf' / '-inf' (PSNR of identical images)."""

    metric: MetricName
    edit_type: Annotated[str, StringConstraints(max_length=100)]
    mean: FiniteFloat | Literal["inf", "-inf"] | None
    std: FiniteFloat | None = None
    ci95: FiniteFloat | None = None
    n: int
    failures: int


class HarnessVersion(StrictModel):
    version: str
    git_commit: str | None = None
    git_dirty: bool | None = None


class EntryScore(StrictModel):
    """score.json: what the board computed for one entry, and with what."""

    entry_id: str
    submission_digest: Sha256
    scored_at: str  # UTC, ISO 8601
    harness: HarnessVersion
    dataset_name: str
    dataset_checksum: Sha256
    metrics_hash: Sha256
    samples_expected: int
    samples_missing: list[str]
    skipped_metrics: list[str] = []
    higher_is_better: dict[str, bool] = {}
    summary: list[SummaryCell]


def json_number(value: Any) -> float | str | None:
    """A summary value as leaderboard.json and score.json carry it: a number, 'inf'/'-inf', or None for NaN."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def as_float(value: float | str | None) -> float:
    """The inverse of ``json_number``."""
    if value is None:
        return math.nan
    return float(value)


def preview_file(sample_id: str, kind: str) -> str:
    return f"{sample_id}.{kind}.png"


@dataclass(frozen=True)
class BoardPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / BOARD_FILE

    @property
    def entries(self) -> Path:
        return self.root / ENTRIES

    def entry(self, entry_id: str) -> Path:
        return self.entries / entry_id

    @property
    def leaderboard(self) -> Path:
        return self.root / LEADERBOARD_FILE

    @property
    def rows(self) -> Path:
        return self.root / ENTRY_ROWS

    @property
    def site(self) -> Path:
        return self.root / SITE


def read_score(path: Path) -> EntryScore:
    """An entry's score.json, strictly (a hand-edited or damaged file is one ``BoardError`` line)."""
    from benchmark.leaderboard.submission import strict_json

    try:
        raw = strict_json(path.read_bytes())
        return EntryScore.model_validate(raw)
    except OSError as err:
        raise BoardError(f"{path}: unreadable ({err.strerror})") from err
    except ValueError as err:  # ValidationError is one
        if isinstance(err, ValidationError):
            e = err.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in e["loc"])
            raise BoardError(f"{path}: field '{shown(where)}': {e['msg']}") from err
        raise BoardError(f"{path}: {err}") from err
