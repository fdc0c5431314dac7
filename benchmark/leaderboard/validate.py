"""A submission read from an untrusted folder or zip into a temporary folder, checked whole.

``opened_submission(SOURCE)`` yields a ``Submission`` whose files are copies in a temporary folder (removed on exit)
or raises ``SubmissionError``, one line per problem. ``check_against_dataset`` adds the checks that need the board's
dataset (its checksum, unknown and missing ids, image sizes).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmark.leaderboard.archive import ZIP_ERRORS, Entry, Source, copy_entry, err_phrase, open_source
from benchmark.leaderboard.images import content_problem, decode, header_problem, read_header
from benchmark.leaderboard.limits import Limits
from benchmark.leaderboard.problems import Problems, SubmissionError, shown
from benchmark.leaderboard.submission import (
    ARTIFACTS,
    EDITED,
    IMAGE_SUFFIX,
    MANIFEST,
    Artifact,
    SubmissionManifest,
    entry_role,
    parse_manifest,
)


@dataclass(frozen=True)
class ImageFile:
    """A checked image of the submission: its entry name, its copy and its size."""

    entry: str
    path: Path
    width: int
    height: int


@dataclass
class SampleFiles:
    sample_id: str
    images: dict[Artifact, ImageFile] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    """A validated submission: the manifest and each sample's files (copies under ``root``)."""

    source: str
    root: Path
    manifest: SubmissionManifest
    samples: dict[str, SampleFiles]
    digest: str  # SHA-256 over every file's name and content: the same submission has the same digest


def artifact_entry(artifact: Artifact, sample_id: str) -> str:
    return f"{artifact.folder}/{sample_id}{IMAGE_SUFFIX}"


@contextmanager
def opened_submission(source: Path, limits: Limits | None = None) -> Iterator[Submission]:
    """The validated submission at ``source`` (a folder or a zip), its copies in a temporary folder removed on exit.
    Nothing is written anywhere else. Raises ``SubmissionError`` (one line per problem) and nothing else."""
    with tempfile.TemporaryDirectory(prefix="emb-submission-") as tmp:
        yield read_submission(Path(source), Path(tmp), limits or Limits())


def read_submission(source: Path, workdir: Path, limits: Limits) -> Submission:
    """Check and copy ``source`` into ``workdir`` (an empty folder the caller owns and removes)."""
    problems = Problems(limits.max_problems)
    try:
        archive = open_source(source, limits, problems)
    except OSError as err:
        raise SubmissionError([f"{shown(str(source))}: cannot be read ({err_phrase(err)})"]) from err
    if archive is None:
        problems.raise_if_any()
        raise SubmissionError([f"{shown(str(source))}: not a submission"])
    try:
        problems.raise_if_any()  # an unsafe archive: nothing of it is extracted
        return _read_entries(archive, source, workdir, limits, problems)
    finally:
        archive.close()


def _read_entries(archive: Source, source: Path, workdir: Path, limits: Limits, problems: Problems) -> Submission:
    roles = {}
    misplaced_manifest = False
    for entry in archive.entries:
        if entry.is_dir:
            if entry.name not in {a.folder for a in ARTIFACTS}:
                problems.add(shown(entry.name + "/"), "not part of a submission (a folder other than edited/, …)")
            continue
        role, why_not = entry_role(entry.name)
        if role is None:
            misplaced_manifest |= entry.name.endswith(f"/{MANIFEST}")
            problems.add(shown(entry.name), why_not or "not part of a submission")
        else:
            roles[entry.name] = (entry, role)
    if MANIFEST not in roles and not misplaced_manifest:
        problems.add(MANIFEST, "missing (the manifest is at the submission's root)")
    digests: dict[str, str] = {}
    manifest = None
    if MANIFEST in roles:
        entry = roles[MANIFEST][0]
        data = _copy(archive, entry, workdir / MANIFEST, limits.max_manifest_bytes, problems, digests)
        if data is not None:
            manifest = parse_manifest(data.read_bytes(), limits.max_json_depth, problems)
    samples: dict[str, SampleFiles] = {}
    for name, (entry, role) in sorted(roles.items()):
        if role.artifact is None:
            continue
        dest = workdir / role.artifact.folder / f"{role.sample_id}{IMAGE_SUFFIX}"
        copied = _copy(archive, entry, dest, limits.max_file_bytes, problems, digests)
        if copied is None:
            continue
        image = _checked_image(name, copied, role.artifact, limits, problems)
        if image is not None:
            samples.setdefault(role.sample_id, SampleFiles(role.sample_id)).images[role.artifact] = image
    if not any(roles[n][1].artifact is not None for n in roles):
        problems.add(shown(source.name), "holds no images (edited/SAMPLE_ID.png, masks/…, soft_masks/…)")
    problems.raise_if_any()
    assert manifest is not None
    content = hashlib.sha256("\n".join(f"{n} {d}" for n, d in sorted(digests.items())).encode()).hexdigest()
    return Submission(str(source), workdir, manifest, samples, content)


def _copy(
    archive: Source, entry: Entry, dest: Path, max_bytes: int, problems: Problems, digests: dict[str, str]
) -> Path | None:
    if entry.size > max_bytes:
        problems.add(shown(entry.name), f"{entry.size} bytes, over the limit of {max_bytes}")
        return None
    try:
        digests[entry.name] = copy_entry(archive, entry, dest)
    except ZIP_ERRORS as err:
        problems.add(shown(entry.name), f"cannot be read ({err_phrase(err)})")
        return None
    return dest


def _checked_image(name: str, path: Path, artifact: Artifact, limits: Limits, problems: Problems) -> ImageFile | None:
    try:
        header = read_header(path)
        problem = header_problem(header, artifact, limits.max_pixels)
        if problem is None:
            problem = content_problem(decode(path, limits.max_pixels), artifact)
    except (ValueError, OSError) as err:
        problem = err_phrase(err)
    if problem:
        problems.add(shown(name), problem)
        return None
    return ImageFile(name, path, header.width, header.height)


@dataclass(frozen=True)
class ExpectedSample:
    """A sample of the board's dataset as the checks need it: its id, its image's size and its edit type."""

    sample_id: str
    width: int
    height: int
    edit_type: str


MissingPolicy = Literal["fail", "refuse"]


def check_against_dataset(
    sub: Submission,
    dataset_name: str,
    dataset_checksum: str,
    expected: dict[str, ExpectedSample],
    required: tuple[Artifact, ...],
    missing_policy: MissingPolicy,
    max_problems: int,
) -> list[str]:
    """The checks that need the board's dataset; returns the ids missing a required artifact (scored as failures
    under the ``fail`` policy). Raises ``SubmissionError`` for another dataset, an unknown id, an image of the wrong
    size, or (``refuse``) any missing sample."""
    problems = Problems(max_problems)
    if sub.manifest.dataset.checksum != dataset_checksum:
        raise SubmissionError(
            [
                f"{MANIFEST}: field 'dataset.checksum': {sub.manifest.dataset.checksum[:12]}… "
                f"({shown(sub.manifest.dataset.name)}) is not this board's dataset ({shown(dataset_name)}, "
                f"{dataset_checksum[:12]}…)"
            ]
        )
    for sample_id, files in sorted(sub.samples.items()):
        want = expected.get(sample_id)
        for artifact, image in files.images.items():
            if want is None:
                problems.add(image.entry, f"sample id {sample_id!r} is not in the board's dataset ({dataset_name})")
                break
            problem = size_problem(image, artifact, want)
            if problem:
                problems.add(image.entry, problem)
    missing = sorted(
        sample_id
        for sample_id in expected
        if any(a not in sub.samples.get(sample_id, SampleFiles(sample_id)).images for a in required)
    )
    if missing_policy == "refuse":
        for sample_id in missing:
            absent = [a for a in required if a not in sub.samples.get(sample_id, SampleFiles(sample_id)).images]
            problems.add(artifact_entry(absent[0], sample_id), "missing (this board refuses incomplete submissions)")
    problems.raise_if_any()
    return missing


def size_problem(image: ImageFile, artifact: Artifact, want: ExpectedSample) -> str | None:
    """An edited image has its source image's size; a mask may be smaller (a method's own resolution) but has the
    image's shape (one pixel of rounding)."""
    got, need = f"{image.width}×{image.height}", f"{want.width}×{want.height}"
    if artifact is EDITED:
        if (image.width, image.height) != (want.width, want.height):
            return f"{got} pixels; the dataset's image is {need} (an edited image has its source's size)"
        return None
    if image.width > want.width or image.height > want.height:
        return f"{got} pixels, larger than the dataset's image ({need})"
    if abs(image.width * want.height - image.height * want.width) > max(want.width, want.height):
        return f"{got} pixels, not the shape of the dataset's image ({need})"
    return None
