"""Re-scoring a validated submission on a board: its images become a run folder (in a temporary folder) that the
harness scores with the board's pinned metric preset on the board's dataset, exactly as it scores its own runs."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.leaderboard.board import (
    ENTRY_ROWS,
    PREVIEW,
    SCORE_FILE,
    BoardConfig,
    BoardPaths,
    EntryScore,
    HarnessVersion,
    SummaryCell,
    entry_id_for,
    json_number,
    load_board,
    preview_file,
)
from benchmark.leaderboard.images import binary_mask_values, decode, soft_mask_values
from benchmark.leaderboard.pins import BoardDataset, board_dataset, board_metrics, expected_sample, metrics_hash
from benchmark.leaderboard.submission import EDITED, MANIFEST, MASK, SOFT_MASK
from benchmark.leaderboard.validate import ExpectedSample, SampleFiles, Submission, check_against_dataset
from benchmark.types import EditOutput, EditSample

if TYPE_CHECKING:
    from benchmark.scoring import ScoredRun

log = logging.getLogger("emb")

PREVIEW_SIZE = 192  # longest side of the entry page's thumbnails, in pixels (ours)
MISSING_ERROR = "missing from the submission"


@dataclass(frozen=True)
class ScoredEntry:
    entry_id: str
    folder: Path
    score: EntryScore


@dataclass
class BoardContext:
    """A board with its dataset built here and its metric preset resolved: what checking and scoring need."""

    board_dir: Path
    board: BoardConfig
    data: BoardDataset
    metrics_cfg: Any
    expected: dict[str, ExpectedSample]  # every selected sample's id, size and edit type, in the dataset's order
    preview_samples: list[EditSample]  # the first ``grid_samples`` samples, decoded (the others are not kept)


def open_board(board_dir: Path) -> BoardContext:
    """``BoardError`` (one line) when board.yaml cannot be used or its dataset is not the pinned one."""
    board_dir = Path(board_dir)
    board = load_board(board_dir)
    data = board_dataset(board, board_dir)
    metrics_cfg = board_metrics(board, board_dir)
    expected: dict[str, ExpectedSample] = {}
    previews: list[EditSample] = []
    for sample in data.samples():
        expected[sample.id] = expected_sample(sample)
        if len(previews) < board.grid_samples:
            previews.append(sample)
    return BoardContext(board_dir, board, data, metrics_cfg, expected, previews)


def check_for_board(sub: Submission, ctx: BoardContext) -> list[str]:
    """The dataset checks of ``sub`` on this board; returns the missing ids (failures under ``fail``)."""
    return check_against_dataset(
        sub,
        ctx.data.name,
        ctx.data.checksum,
        ctx.expected,
        ctx.board.required_artifacts(),
        ctx.board.missing_samples,
        ctx.board.validation_limits().max_problems,
    )


def score_submission(sub: Submission, board_dir: Path, cache_dir: Path | None = None) -> ScoredEntry:
    """Score ``sub`` on the board in ``board_dir`` and keep it as an entry (replacing an earlier scoring of the same
    submission). Raises ``SubmissionError`` (another dataset, unknown ids, wrong sizes, missing samples under
    ``refuse``) or ``BoardError`` before anything is written to the board."""
    ctx = open_board(board_dir)
    missing = check_for_board(sub, ctx)
    expected = ctx.expected
    entry_id = entry_id_for(sub.manifest.method.name, sub.digest)
    with tempfile.TemporaryDirectory(prefix="emb-rescore-") as tmp:
        run_dir = Path(tmp) / "run"
        write_run_folder(sub, entry_id, list(expected.values()), set(missing), run_dir)
        scored = score_run_folder(run_dir, ctx.data, ctx.metrics_cfg, cache_dir)
    score = EntryScore(
        entry_id=entry_id,
        submission_digest=sub.digest,
        scored_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        harness=harness_version(),
        dataset_name=ctx.data.name,
        dataset_checksum=ctx.data.checksum,
        metrics_hash=metrics_hash(ctx.metrics_cfg),
        samples_expected=len(expected),
        samples_missing=missing,
        skipped_metrics=[str(s) for s in scored.scores.skipped_metrics],
        higher_is_better={str(k): bool(v) for k, v in scored.scores.higher_is_better.items()},
        summary=summary_cells(scored.summary),
    )
    folder = keep_entry(sub, score, scored.scores.long, ctx.preview_samples, BoardPaths(ctx.board_dir))
    return ScoredEntry(entry_id, folder, score)


def write_run_folder(
    sub: Submission, method: str, expected: list[ExpectedSample], missing: set[str], run_dir: Path
) -> None:
    """The submission as a run of one method (named ``method``): each sample's outputs stored as ``emb run`` stores
    them and one record per sample of the dataset (a missing one as failed), through the run folder's API."""
    from benchmark.rundir import RunFolder, SampleRecord, write_artifacts, write_record_file

    folder = RunFolder(run_dir)
    folder.start()
    staging = run_dir.parent / "staging"
    for want in expected:
        base = SampleRecord(method=method, sample_id=want.sample_id, edit_type=want.edit_type, status="ok")
        if want.sample_id in missing:
            folder.add(replace(base, status="failed", error=MISSING_ERROR), None)
            continue
        output = edit_output(sub.samples[want.sample_id])
        record = replace(base, has_image=output.image is not None, has_mask=output.mask is not None)
        sample_dir = staging / want.sample_id
        sample_dir.mkdir(parents=True)
        write_artifacts(sample_dir, output)
        write_record_file(sample_dir, record)
        folder.add(record, sample_dir)


def edit_output(files: SampleFiles) -> EditOutput:
    """A submitted sample as the method output it stands for (image, binary mask, soft mask)."""
    output = EditOutput()
    if (image := files.images.get(EDITED)) is not None:
        output.image = Image.fromarray(decode(image.path, image.width * image.height)).convert("RGB")
    if (mask := files.images.get(MASK)) is not None:
        output.mask = binary_mask_values(decode(mask.path, mask.width * mask.height))
    if (soft := files.images.get(SOFT_MASK)) is not None:
        output.soft_mask = soft_mask_values(decode(soft.path, soft.width * soft.height))
    return output


def score_run_folder(run_dir: Path, data: BoardDataset, metrics_cfg: Any, cache_dir: Path | None) -> ScoredRun:
    """The run folder scored and tabulated by the harness, exactly as ``emb score`` does it (its tables are written
    into the temporary run folder; what is kept comes from the returned result)."""
    from omegaconf import OmegaConf

    from benchmark.scoring import score_run

    cfg = OmegaConf.create(
        {
            "dataset": OmegaConf.to_container(data.config, resolve=True),
            "metrics": OmegaConf.to_container(metrics_cfg, resolve=True),
            "run": {"cache_dir": str(cache_dir) if cache_dir else None},
        }
    )
    return score_run(run_dir, cfg, data.dataset)


def summary_cells(summary: pd.DataFrame) -> list[SummaryCell]:
    cells = []
    for row in summary.to_dict(orient="records"):
        if row["metric"] == "failed":
            continue
        cells.append(
            SummaryCell(
                metric=str(row["metric"]),
                edit_type=str(row["edit_type"]),
                mean=json_number(row["mean"]),
                std=_finite_or_none(row.get("std")),
                ci95=_finite_or_none(row.get("ci95")),
                n=int(row["n"]),
                failures=int(row["failures"]),
            )
        )
    return cells


def _finite_or_none(value: Any) -> float | None:
    number = json_number(value)
    return number if isinstance(number, float) else None


def harness_version() -> HarnessVersion:
    from benchmark.provenance import git_state, package_versions

    git = git_state()
    commit = git.get("commit")
    dirty = git.get("dirty")
    return HarnessVersion(
        version=str(package_versions().get("editing-mask-bench") or "unknown"),
        git_commit=str(commit) if commit else None,
        git_dirty=dirty if isinstance(dirty, bool) else None,
    )


def keep_entry(
    sub: Submission,
    score: EntryScore,
    long: pd.DataFrame,
    preview_samples: list[EditSample],
    paths: BoardPaths,
) -> Path:
    """Write the entry's folder beside the others, whole or not at all: the submission's files as given, score.json,
    the per-sample rows and the page's thumbnails go to a hidden folder that then replaces the entry's."""
    paths.entries.mkdir(parents=True, exist_ok=True)
    final = paths.entry(score.entry_id)
    tmp = Path(tempfile.mkdtemp(prefix=f".{score.entry_id}-", dir=paths.entries))
    shutil.copyfile(sub.root / MANIFEST, tmp / MANIFEST)
    for files in sub.samples.values():
        for artifact, image in files.images.items():
            (tmp / artifact.folder).mkdir(exist_ok=True)
            shutil.copyfile(image.path, tmp / artifact.folder / image.path.name)
    long.to_parquet(tmp / ENTRY_ROWS, index=False)
    write_previews(sub, preview_samples, tmp / PREVIEW)
    (tmp / SCORE_FILE).write_text(score.model_dump_json(indent=1))
    if final.exists():
        old = final.with_name(f".{score.entry_id}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def thumbnail(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.BICUBIC)
    return image


def overlay(image: Image.Image, mask: np.ndarray, colour: tuple[int, int, int]) -> Image.Image:
    """``image`` with ``mask`` (bool, any size) painted over it in ``colour`` at 45% opacity (ours)."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    region = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
    alpha = (np.asarray(region, dtype=np.float32) / 255.0)[..., None] * 0.45
    out = base * (1 - alpha) + np.asarray(colour, dtype=np.float32) * alpha
    return Image.fromarray(out.round().astype(np.uint8))


def write_previews(sub: Submission, samples: list[EditSample], folder: Path) -> None:
    """Thumbnails of the first samples: source with the GT mask, the edit, the edit with the method's mask; every
    image re-encoded here (no byte of a submitted file is served as is)."""
    folder.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        thumb = thumbnail(sample.image.convert("RGB"))
        if sample.mask is not None:
            overlay(thumb, sample.mask, (40, 200, 80)).save(folder / preview_file(sample.id, "source"))
        else:
            thumb.save(folder / preview_file(sample.id, "source"))
        files = sub.samples.get(sample.id)
        if files is None:
            continue
        edited = files.images.get(EDITED)
        mask = files.images.get(MASK)
        base = thumb
        if edited is not None:
            pixels = decode(edited.path, edited.width * edited.height)
            base = thumbnail(Image.fromarray(pixels).convert("RGB"))
            base.save(folder / preview_file(sample.id, "edit"))
        if mask is not None:
            mask_pixels = binary_mask_values(decode(mask.path, mask.width * mask.height))
            overlay(base, mask_pixels, (230, 40, 40)).save(folder / preview_file(sample.id, "overlay"))
