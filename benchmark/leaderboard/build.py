"""``emb leaderboard build``: a board folder's entries ranked into leaderboard.json, one parquet of every per-sample
row, and the static site."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.leaderboard.board import (
    ENTRY_ROWS,
    PREVIEW,
    SCORE_FILE,
    BoardConfig,
    BoardError,
    BoardPaths,
    EntryScore,
    HarnessVersion,
    as_float,
    load_board,
    preview_file,
    read_score,
)
from benchmark.leaderboard.limits import Limits
from benchmark.leaderboard.problems import Problems
from benchmark.leaderboard.submission import MANIFEST, SubmissionManifest, parse_manifest

LEADERBOARD_FORMAT = "emb-leaderboard"
LEADERBOARD_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Column:
    """One column of the board's table: a verified metric (over all samples or one edit type) or another figure."""

    key: str
    label: str
    group: str  # "entry", "verified", "edit_type", "self_reported", "provenance"
    numeric: bool
    higher_is_better: bool | None = None
    metric: str | None = None
    edit_type: str | None = None


@dataclass
class BoardEntry:
    entry_id: str
    folder: Path
    manifest: SubmissionManifest
    score: EntryScore
    verified: bool
    unverified_reason: str | None
    rank: int | None = None
    values: dict[str, Any] = field(default_factory=dict)  # column key → JSON value
    ci95: dict[str, float | None] = field(default_factory=dict)

    def cell(self, metric: str, edit_type: str = "all"):
        return next((c for c in self.score.summary if c.metric == metric and c.edit_type == edit_type), None)


@dataclass(frozen=True)
class BuiltBoard:
    board: BoardConfig
    entries: list[BoardEntry]
    columns: list[Column]
    edit_types: list[str]
    built_at: str
    harness: HarnessVersion
    metrics_hash: str
    skipped: list[str]  # one line per entry folder left out


def read_entries(paths: BoardPaths, problems: list[str]) -> list[tuple[Path, SubmissionManifest, EntryScore]]:
    """Every entry folder with a readable manifest and score.json; one line in ``problems`` per one left out."""
    out = []
    if not paths.entries.is_dir():
        return out
    for folder in sorted(p for p in paths.entries.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            score = read_score(folder / SCORE_FILE)
        except BoardError as err:
            problems.append(f"entry {folder.name} left out: {err}")
            continue
        found = Problems(1)
        try:
            data = (folder / MANIFEST).read_bytes()
        except OSError as err:
            problems.append(f"entry {folder.name} left out: {folder / MANIFEST}: unreadable ({err.strerror})")
            continue
        manifest = parse_manifest(data, Limits().max_json_depth, found)
        if manifest is None:
            problems.append(f"entry {folder.name} left out: {folder}/{found.lines[0]}")
            continue
        if score.entry_id != folder.name:
            problems.append(f"entry {folder.name} left out: {folder / SCORE_FILE}: field 'entry_id': {score.entry_id}")
            continue
        out.append((folder, manifest, score))
    return out


def columns_for(board: BoardConfig, edit_types: list[str], directions: dict[str, bool]) -> list[Column]:
    cols = [
        Column("rank", "#", "entry", True, higher_is_better=False),
        Column("method", "method", "entry", False),
        Column("verified", "verified", "entry", False),
    ]
    for metric in board.columns:
        cols.append(Column(f"m:{metric}", metric, "verified", True, directions.get(metric), metric, "all"))
    for metric in board.edit_type_columns:
        for edit_type in edit_types:
            cols.append(
                Column(
                    f"t:{metric}:{edit_type}",
                    f"{metric} · {edit_type}",
                    "edit_type",
                    True,
                    directions.get(metric),
                    metric,
                    edit_type,
                )
            )
    cols += [
        Column("failures", "failed samples", "verified", True, higher_is_better=False),
        Column("nfe", "NFE / image", "self_reported", True, higher_is_better=False),
        Column("time_s", "s / image", "self_reported", True, higher_is_better=False),
        Column("hardware", "hardware", "self_reported", False),
        Column("harness", "harness", "provenance", False),
        Column("scored_at", "scored", "provenance", False),
    ]
    return cols


def entry_values(entry: BoardEntry, columns: list[Column]) -> None:
    """Fill ``entry.values`` (and ``ci95``) for every column."""
    reported = entry.manifest.self_reported
    harness = entry.score.harness
    fixed: dict[str, Any] = {
        "rank": entry.rank,
        "method": entry.manifest.method.name,
        "verified": "re-scored" if entry.verified else f"not verified: {entry.unverified_reason}",
        "nfe": reported.nfe_per_image,
        "time_s": reported.time_s_per_image,
        "hardware": reported.hardware,
        "harness": harness.version + (f" ({harness.git_commit[:10]})" if harness.git_commit else ""),
        "scored_at": entry.score.scored_at,
    }
    failed = len(entry.score.samples_missing)
    all_cells = [c for c in entry.score.summary if c.edit_type == "all"]
    fixed["failures"] = max([c.failures for c in all_cells], default=failed)
    for col in columns:
        if col.metric is not None:
            cell = entry.cell(col.metric, col.edit_type or "all")
            entry.values[col.key] = cell.mean if cell is not None else None
            entry.ci95[col.key] = cell.ci95 if cell is not None else None
        else:
            entry.values[col.key] = fixed.get(col.key)


def rank_entries(entries: list[BoardEntry], board: BoardConfig) -> list[BoardEntry]:
    """Verified entries by the ranking metric (best first, no value last), then the unverified ones (no rank)."""
    higher = board.ranking.direction == "higher"

    def key(entry: BoardEntry) -> tuple:
        cell = entry.cell(board.ranking.metric)
        value = as_float(cell.mean) if cell is not None else math.nan
        missing = math.isnan(value)
        return (not entry.verified, missing, -value if higher and not missing else value, entry.manifest.method.name)

    ordered = sorted(entries, key=key)
    rank = 0
    for entry in ordered:
        if entry.verified:
            rank += 1
            entry.rank = rank
    return ordered


def build_board(board_dir: Path) -> BuiltBoard:
    """Read, rank and write the board: leaderboard.json, every per-sample row and site/ (``BoardError`` for a board.yaml
    that cannot be used; an unreadable entry is left out with one line in ``skipped``)."""
    from benchmark.leaderboard.pins import board_metrics, metrics_hash
    from benchmark.leaderboard.score import harness_version
    from benchmark.leaderboard.site import write_site

    board_dir = Path(board_dir)
    paths = BoardPaths(board_dir)
    board = load_board(board_dir)
    current_hash = metrics_hash(board_metrics(board, board_dir))
    skipped: list[str] = []
    entries = []
    for folder, manifest, score in read_entries(paths, skipped):
        reason = None
        if score.dataset_checksum != board.dataset.checksum:
            reason = "scored on another dataset checksum"
        elif score.metrics_hash != current_hash:
            reason = "scored with another metric preset; run emb leaderboard score again"
        entries.append(BoardEntry(score.entry_id, folder, manifest, score, reason is None, reason))
    directions: dict[str, bool] = {}
    for entry in entries:
        directions.update(entry.score.higher_is_better)
    edit_types = sorted({c.edit_type for e in entries for c in e.score.summary if c.edit_type != "all"})
    columns = columns_for(board, edit_types, directions)
    entries = rank_entries(entries, board)
    for entry in entries:
        entry_values(entry, columns)
    built = BuiltBoard(
        board=board,
        entries=entries,
        columns=columns,
        edit_types=edit_types,
        built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        harness=harness_version(),
        metrics_hash=current_hash,
        skipped=skipped,
    )
    paths.leaderboard.write_text(json.dumps(leaderboard_json(built), indent=1, allow_nan=False) + "\n")
    all_rows(entries).to_parquet(paths.rows, index=False)
    write_site(built, paths)
    return built


def leaderboard_json(built: BuiltBoard) -> dict[str, Any]:
    board = built.board
    return {
        "format": LEADERBOARD_FORMAT,
        "format_version": LEADERBOARD_FORMAT_VERSION,
        "board": {
            "title": board.title,
            "description": board.description,
            "dataset": board.dataset.model_dump(),
            "metrics": {**board.metrics.model_dump(), "hash": built.metrics_hash},
            "ranking": board.ranking.model_dump(),
            "missing_samples": board.missing_samples,
            "requires": list(board.requires),
        },
        "built_at": built.built_at,
        "harness": built.harness.model_dump(),
        "columns": [
            {"key": c.key, "label": c.label, "group": c.group, "higher_is_better": c.higher_is_better}
            for c in built.columns
        ],
        "entries": [entry_json(e) for e in built.entries],
    }


def entry_json(entry: BoardEntry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "rank": entry.rank,
        "verified": entry.verified,
        "unverified_reason": entry.unverified_reason,
        "method": entry.manifest.method.model_dump(),
        "values": {k: v for k, v in entry.values.items()},
        "ci95": entry.ci95,
        "self_reported": entry.manifest.self_reported.model_dump(),
        "submitted": {
            "dataset": entry.manifest.dataset.model_dump(),
            "seed": entry.manifest.seed,
            "resolution": entry.manifest.resolution,
            "harness": entry.manifest.harness.model_dump(exclude={"config"}) if entry.manifest.harness else None,
        },
        "score": entry.score.model_dump(exclude={"summary"}),
        "summary": [c.model_dump() for c in entry.score.summary],
    }


def all_rows(entries: list[BoardEntry]) -> pd.DataFrame:
    frames = []
    for entry in entries:
        path = entry.folder / ENTRY_ROWS
        if path.exists():
            frames.append(pd.read_parquet(path).assign(entry_id=entry.entry_id))
    if not frames:
        return pd.DataFrame(columns=["entry_id", "method", "sample_id", "edit_type", "status", "metric", "value"])
    rows = pd.concat(frames, ignore_index=True)
    return rows[["entry_id", *[c for c in rows.columns if c != "entry_id"]]]


def preview_ids(entry: BoardEntry) -> list[str]:
    """Sample ids with thumbnails, in the dataset's order (the order score.py wrote them)."""
    folder = entry.folder / PREVIEW
    if not folder.is_dir():
        return []
    suffix = preview_file("", "source")
    ids = [p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}")]
    rows_path = entry.folder / ENTRY_ROWS
    if rows_path.exists():
        order = list(dict.fromkeys(pd.read_parquet(rows_path, columns=["sample_id"])["sample_id"]))
        return [i for i in order if i in set(ids)]
    return sorted(ids)


def per_sample_values(entry: BoardEntry, metric: str) -> dict[str, float]:
    path = entry.folder / ENTRY_ROWS
    if not path.exists():
        return {}
    rows = pd.read_parquet(path)
    rows = rows[rows["metric"] == metric]
    return {str(r.sample_id): float(r.value) for r in rows.itertuples()}
