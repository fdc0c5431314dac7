"""Property tests of the submission validator: random bytes, random (and then damaged) zips and random manifests
never make it raise anything but ``SubmissionError``, whose every problem is one line, and never leave a file in
the temporary folder.

How this was checked to fail: with ``ZIP_ERRORS`` cut to ``(zipfile.BadZipFile,)`` the damaged-zip property failed
(an archive whose read raised another error); before ``ZipSource`` stopped calling ``ZipInfo.is_dir()``, it found
the entry with an empty name on which that method raises ``IndexError``.
"""

from __future__ import annotations

import json
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from benchmark.leaderboard.problems import SubmissionError
from benchmark.leaderboard.validate import opened_submission
from tests.leaderboard_fixtures import edited_png, manifest, mask_png, soft_mask_png

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout
    derandomize=True,  # the same examples on every run and in CI
    suppress_health_check=[HealthCheck.too_slow],
)


@contextmanager
def scratch_tempdir() -> Iterator[Path]:
    """The validator's temporary folders go to a fresh folder, which must be empty again afterwards."""
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="emb-property-") as outer:
        scratch = Path(outer) / "scratch"
        scratch.mkdir()
        tempfile.tempdir = str(scratch)
        try:
            yield Path(outer)
        finally:
            tempfile.tempdir = saved
        assert list(scratch.iterdir()) == []


def validate_only_refuses(path: Path) -> None:
    """Validate ``path``; the one acceptable failure is ``SubmissionError`` with one-line, non-empty problems."""
    try:
        with opened_submission(path) as sub:
            assert sub.manifest is not None
    except SubmissionError as err:
        assert err.problems
        for line in err.problems:
            assert line and "\n" not in line and "\r" not in line, repr(line)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    """A valid manifest with one field replaced by any JSON value, or any JSON, or any text."""
    kind = draw(st.sampled_from(["mutated", "json", "text"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    body = manifest()
    section = draw(st.sampled_from(["method", "dataset", "self_reported", None]))
    key = draw(st.sampled_from(["name", "checksum", "seed", "resolution", "description", "paper_url", "x"]))
    value = draw(json_values)
    if section is None:
        body[key] = value
    else:
        body[section] = {**body[section], key: value}
    return json.dumps(body).encode()


ENTRY_NAMES = st.sampled_from(
    [
        "submission.json",
        "edited/s1.png",
        "masks/s1.png",
        "soft_masks/s1.png",
        "edited/",
        "edited/s2.png",
        "../evil.png",
        "/abs.png",
        "edited\\s1.png",
        "edited/\u0455.png",
        "x/y/z/w/v.png",
        "edited/s1.npy",
    ]
) | st.text(max_size=30)
CONTENTS = st.sampled_from([edited_png(), mask_png(), soft_mask_png(), b""]) | st.binary(max_size=512) | manifests()
FILE_MODES = st.sampled_from([0, stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777, stat.S_IFIFO])
METHODS = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])


@st.composite
def zip_archives(draw: st.DrawFn) -> bytes:
    """A zip of random entries (names, contents, Unix modes, compression methods), then maybe damaged: bytes
    overwritten at random offsets, or cut short."""
    entries = draw(st.lists(st.tuples(ENTRY_NAMES, CONTENTS, FILE_MODES, METHODS), min_size=0, max_size=6))
    import io

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
            warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name": repeats are part of the test
            for name, data, mode, method in entries:
                info = zipfile.ZipInfo("x")
                info.filename = name
                info.compress_type = method
                info.external_attr = mode << 16
                zf.writestr(info, data)
    except (ValueError, OSError, UnicodeError):
        assume(False)  # a name zipfile itself will not write
    data = bytearray(buffer.getvalue())
    for offset, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)):
        if data:
            data[offset % len(data)] = value
    if draw(st.booleans()) and data:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@PROPERTY
@given(st.binary(max_size=4096), st.sampled_from(["sub.zip", "sub"]))
def test_random_bytes_only_refused(data: bytes, name: str) -> None:
    with scratch_tempdir() as outer:
        path = outer / name
        path.write_bytes(data)
        validate_only_refuses(path)


@PROPERTY
@given(st.binary(max_size=64).map(lambda tail: b"PK\x03\x04" + tail))
def test_random_bytes_behind_a_zip_signature_only_refused(data: bytes) -> None:
    with scratch_tempdir() as outer:
        path = outer / "sub.zip"
        path.write_bytes(data)
        validate_only_refuses(path)


@PROPERTY
@given(zip_archives())
def test_random_and_damaged_zips_only_refused(data: bytes) -> None:
    with scratch_tempdir() as outer:
        path = outer / "sub.zip"
        path.write_bytes(data)
        validate_only_refuses(path)


@PROPERTY
@given(manifests())
def test_random_manifests_only_refused(data: bytes) -> None:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("submission.json", data)
        zf.writestr("edited/s1.png", edited_png())
    with scratch_tempdir() as outer:
        path = outer / "sub.zip"
        path.write_bytes(buffer.getvalue())
        validate_only_refuses(path)
