"""The hostile-submission corpus: each case breaks one rule of the format and is refused with exactly one line that
names the entry (file and field); nothing is written outside the validator's temporary folder, which is gone after.

How these were checked to fail: with the '..' test of ``path_problem`` removed, the zip-slip cases failed here (they
were still refused, by the layout rule, but not with their line: extraction never uses an entry's own name, a second
defence); with the magic-byte check removed and PIL allowed every format, the JPEG-as-PNG case was accepted.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.leaderboard.limits import Limits
from benchmark.leaderboard.problems import SubmissionError
from benchmark.leaderboard.submission import EDITED
from benchmark.leaderboard.validate import ExpectedSample, check_against_dataset, opened_submission
from tests.leaderboard_fixtures import (
    CHECKSUM,
    edited_png,
    files,
    manifest,
    mask_png,
    png,
    tree,
    write_folder,
    write_zip,
)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the submission under the given folder, returns its path
    entry: str  # the entry the one line names
    phrase: str  # what the line says
    limits: Limits = Limits()


CASES: list[Case] = []


def case(entry: str, phrase: str, limits: Limits = Limits()):
    def register(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES.append(Case(build.__name__, build, entry, phrase, limits))
        return build

    return register


def zip_with(root: Path, extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
    entries = {k: v for k, v in files().items() if k not in drop}
    return write_zip(root / "sub.zip", {**entries, **(extra or {})})


def with_manifest(root: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    return write_zip(root / "sub.zip", {**files(), "submission.json": data})


# --- paths that leave the folder -------------------------------------------------------------------------------------


@case("../evil.png", "'..' in the path")
def zip_slip(root: Path) -> Path:
    return zip_with(root, {"../evil.png": edited_png()})


@case("edited/../../evil.png", "'..' in the path")
def zip_slip_nested(root: Path) -> Path:
    return zip_with(root, {"edited/../../evil.png": edited_png()})


@case("/tmp/evil.png", "absolute path")
def absolute_path(root: Path) -> Path:
    info = zipfile.ZipInfo("x")
    info.filename = "/tmp/evil.png"  # ZipInfo() strips a leading '/'; an attacker's archiver does not
    return write_zip(root / "sub.zip", [*files().items(), (info, edited_png())])


@case("C:/evil.png", "absolute path")
def drive_letter(root: Path) -> Path:
    return zip_with(root, {"C:/evil.png": edited_png()})


@case("edited\\s3.png", "backslash")
def backslash(root: Path) -> Path:
    info = zipfile.ZipInfo("x")
    info.filename = "edited\\s3.png"
    return write_zip(root / "sub.zip", [*files().items(), (info, edited_png())])


# --- links and special files -----------------------------------------------------------------------------------------


@case("edited/s3.png", "a symbolic link")
def zip_symlink(root: Path) -> Path:
    info = zipfile.ZipInfo("edited/s3.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return write_zip(root / "sub.zip", [*files().items(), (info, b"/etc/passwd")])


@case("edited/s3.png", "not a regular file")
def zip_fifo(root: Path) -> Path:
    info = zipfile.ZipInfo("edited/s3.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return write_zip(root / "sub.zip", [*files().items(), (info, b"")])


@case("edited/s3.png", "a symbolic link")
def folder_symlink(root: Path) -> Path:
    sub = write_folder(root / "sub", files())
    (root / "secret.png").write_bytes(edited_png())
    os.symlink(root / "secret.png", sub / "edited" / "s3.png")
    return sub


@case("masks", "a symbolic link")
def folder_symlinked_folder(root: Path) -> Path:
    sub = write_folder(root / "sub", {k: v for k, v in files().items() if not k.startswith("masks/")})
    (root / "elsewhere").mkdir()
    os.symlink(root / "elsewhere", sub / "masks")
    return sub


@case("edited/s3.png", "a hard link")
def folder_hard_link(root: Path) -> Path:
    sub = write_folder(root / "sub", files())
    (root / "secret.png").write_bytes(edited_png())
    os.link(root / "secret.png", sub / "edited" / "s3.png")
    return sub


@case("edited/s3.png", "not a regular file")
def folder_fifo(root: Path) -> Path:
    sub = write_folder(root / "sub", files())
    os.mkfifo(sub / "edited" / "s3.png")
    return sub


# --- zip bombs -------------------------------------------------------------------------------------------------------


@case("edited/s3.png", "compression ratio")
def ratio_bomb(root: Path) -> Path:
    return zip_with(root, {"edited/s3.png": bytes(8 * 1024 * 1024)})  # 8 MiB of zeros deflate to ~8 KiB


@case("sub.zip", "bytes uncompressed, over the limit", Limits(max_total_bytes=1000))
def total_size_bomb(root: Path) -> Path:
    return zip_with(root)


@case("sub.zip", "its end record declares 7 entries, over the limit of 3", Limits(max_files=3))
def count_bomb(root: Path) -> Path:
    return zip_with(root)


@case("sub", "more than 3 entries", Limits(max_files=3))
def folder_count_bomb(root: Path) -> Path:
    return write_folder(root / "sub", files())


@case("edited/s3.png", "bytes uncompressed, over the limit of 5000", Limits(max_file_bytes=5000))
def file_size_limit(root: Path) -> Path:
    return zip_with(root, {"edited/s3.png": edited_png(3, 64)})


@case("edited/s3.png", "encrypted")
def encrypted_entry(root: Path) -> Path:
    path = zip_with(root, {"edited/s3.png": edited_png()})
    data = bytearray(path.read_bytes())
    name = b"edited/s3.png"
    # zipfile writes no encrypted entries: set the flag's bit 0 in the local and the central header by hand
    for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                data[at + flag_at] |= 0x1
            at = data.find(signature, at + 1)
    path.write_bytes(bytes(data))
    return path


@case("edited/s3.png", "appears twice")
def duplicate_entry(root: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's own "Duplicate name" warning
        return write_zip(root / "sub.zip", [*files().items(), ("edited/s3.png", edited_png()), ("edited/s3.png", b"x")])


# --- images ----------------------------------------------------------------------------------------------------------


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (RGB, 8 bit) followed by a tiny IDAT: decoding it would
    allocate width×height×3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@case("edited/s3.png", "100000×100000 pixels, over the limit")
def decompression_bomb(root: Path) -> Path:
    return zip_with(root, {"edited/s3.png": png_with_header(100_000, 100_000)})


@case("edited/s3.png", "65×65 pixels, over the limit of 4096", Limits(max_pixels=64 * 64))
def pixel_limit(root: Path) -> Path:
    return zip_with(root, {"edited/s3.png": edited_png(3, 65)})


@case("edited/s3.png", "content is not PNG (it looks like a JPEG image)")
def jpeg_named_png(root: Path) -> Path:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="JPEG")
    return zip_with(root, {"edited/s3.png": buffer.getvalue()})


@case("masks/s1.png", "content is not PNG (it looks like a NumPy array)")
def npy_named_png(root: Path) -> Path:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((8, 8)))
    return zip_with(root, {"masks/s1.png": buffer.getvalue()})


@case("edited/s1.png", "cannot be decoded as PNG")
def truncated_png(root: Path) -> Path:
    return zip_with(root, {"edited/s1.png": edited_png()[:60]})


@case("edited/s3.png", "an animated PNG")
def animated_png(root: Path) -> Path:
    import io

    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    return zip_with(root, {"edited/s3.png": buffer.getvalue()})


@case("masks/s1.png", "a mask is binary (0 and 255 only); this one holds 0, 128, 255")
def mask_not_binary(root: Path) -> Path:
    mask = np.zeros((8, 8), np.uint8)
    mask[:3], mask[3:5] = 255, 128
    return zip_with(root, {"masks/s1.png": png(mask)})


@case("masks/s1.png", "a mask is a 1- or 8-bit grey PNG")
def mask_in_colour(root: Path) -> Path:
    return zip_with(root, {"masks/s1.png": edited_png()})


@case("soft_masks/s1.png", "a soft mask is a 16-bit grey PNG")
def soft_mask_8_bit(root: Path) -> Path:
    return zip_with(root, {"soft_masks/s1.png": mask_png()})


# --- files that are not part of a submission -------------------------------------------------------------------------


@case("soft_masks/s1.npz", "arrays, pickles and code are not accepted")
def npz_soft_mask(root: Path) -> Path:
    return zip_with(root, {"soft_masks/s1.npz": b"PK\x03\x04"})


@case("model.pkl", "arrays, pickles and code are not accepted")
def pickle_file(root: Path) -> Path:
    return zip_with(root, {"model.pkl": b"\x80\x04K\x01."})


@case("edited/run.py", "arrays, pickles and code are not accepted")
def code_file(root: Path) -> Path:
    return zip_with(root, {"edited/run.py": b"import os"})


@case("notes.txt", "not part of a submission")
def stray_file(root: Path) -> Path:
    return zip_with(root, {"notes.txt": b"hello"})


@case("sub/submission.json", "must be at the submission's root")
def manifest_in_a_folder(root: Path) -> Path:
    entries = files()
    return write_zip(root / "sub.zip", {"sub/submission.json": entries.pop("submission.json"), **entries})


@case("submission.json", "missing")
def no_manifest(root: Path) -> Path:
    return zip_with(root, drop=("submission.json",))


@case("sub.zip", "not a zip archive")
def not_a_zip(root: Path) -> Path:
    (root / "sub.zip").write_bytes(b"GIF89a not a zip")
    return root / "sub.zip"


# --- sample ids ------------------------------------------------------------------------------------------------------


@case("edited/\u0455yn0.png", "is not a safe sample id")
def cyrillic_look_alike(root: Path) -> Path:
    return zip_with(root, {"edited/\u0455yn0.png": edited_png()})  # Cyrillic 'ѕ' for 's'


@case("edited/\uff53yn0.png", "is a look-alike of 'syn0' (NFKC)")
def full_width_look_alike(root: Path) -> Path:
    return zip_with(root, {"edited/\uff53yn0.png": edited_png()})  # full-width 'ｓ'


@case("edited/a b.png", "is not a safe sample id")
def space_in_id(root: Path) -> Path:
    return zip_with(root, {"edited/a b.png": edited_png()})


@case("edited/s1\\u202egnp.png", "not a safe sample id")
def bidi_override_in_id(root: Path) -> Path:
    return zip_with(root, {"edited/s1\u202egnp.png": edited_png()})


# --- the manifest ----------------------------------------------------------------------------------------------------


def manifest_text(**changes) -> str:
    return json.dumps(manifest(**changes))


@case("submission.json", "NaN is not a JSON number")
def nan_in_manifest(root: Path) -> Path:
    return with_manifest(root, manifest_text().replace('"seed": 0', '"seed": NaN'))


@case("submission.json", "Infinity is not a JSON number")
def infinity_in_manifest(root: Path) -> Path:
    return with_manifest(root, manifest_text().replace('"time_s_per_image": 1.5', '"time_s_per_image": -Infinity'))


@case("submission.json", "1e400 is out of range")
def float_overflow(root: Path) -> Path:
    return with_manifest(root, manifest_text().replace('"time_s_per_image": 1.5', '"time_s_per_image": 1e400'))


@case("submission.json", "a number of 31 digits")
def huge_integer(root: Path) -> Path:
    return with_manifest(root, manifest_text(seed=10**30))


@case("submission.json", "field 'seed': Input should be less than or equal to 9223372036854775807")
def seed_out_of_range(root: Path) -> Path:
    return with_manifest(root, manifest_text(seed=2**64))


@case("submission.json", "field 'seed': Input should be a valid integer")
def seed_as_text(root: Path) -> Path:
    return with_manifest(root, manifest_text(seed="0"))


@case("submission.json", "field 'resolution': Input should be a valid integer")
def resolution_as_bool(root: Path) -> Path:
    return with_manifest(root, manifest_text(resolution=True))


@case("submission.json", "field 'self_reported.nfe_per_image': Input should be less than or equal to 10000000")
def huge_nfe(root: Path) -> Path:
    return with_manifest(root, manifest_text(self_reported={"nfe_per_image": 1e300}))


@case("submission.json", "field 'method.name': Input should be a valid string")
def name_as_list(root: Path) -> Path:
    return with_manifest(root, manifest_text(method={"name": ["x"]}))


@case("submission.json", "field 'method.paper_url': Value error, not an http(s) URL")
def javascript_url(root: Path) -> Path:
    return with_manifest(root, manifest_text(method={"name": "m", "paper_url": "javascript:alert(1)"}))


@case("submission.json", "field 'method.name': Value error, holds the control or format character \\u202e")
def bidi_override_in_name(root: Path) -> Path:
    return with_manifest(root, manifest_text(method={"name": "good\u202edab"}))


@case("submission.json", "field 'dataset.checksum': String should match pattern")
def checksum_not_hex(root: Path) -> Path:
    return with_manifest(root, manifest_text(dataset={"name": "synthetic", "checksum": "not-a-checksum"}))


@case("submission.json", "field 'homepage': Extra inputs are not permitted")
def unknown_field(root: Path) -> Path:
    return with_manifest(root, manifest_text(homepage="https://example.org"))


@case("submission.json", "field 'dataset': Field required")
def missing_field(root: Path) -> Path:
    body = manifest()
    del body["dataset"]
    return with_manifest(root, json.dumps(body))


@case("submission.json", "key 'seed' appears twice in one object")
def duplicate_key(root: Path) -> Path:
    return with_manifest(root, manifest_text()[:-1] + ', "seed": 7}')


@case("submission.json", "field 'format_version': 2; this harness reads version 1")
def future_version(root: Path) -> Path:
    return with_manifest(root, manifest_text(format_version=2))


@case("submission.json", "not JSON")
def manifest_not_json(root: Path) -> Path:
    return with_manifest(root, "{'method': 'single quotes'}")


@case("submission.json", "not UTF-8")
def manifest_not_utf8(root: Path) -> Path:
    return with_manifest(root, manifest_text().encode("utf-16"))


@case("submission.json", "not a JSON object (a list)")
def manifest_a_list(root: Path) -> Path:
    return with_manifest(root, "[1, 2]")


@case("submission.json", "nested too deeply")
def manifest_deeply_nested(root: Path) -> Path:
    return with_manifest(root, "[" * 100_000 + "]" * 100_000)


@case("submission.json", "nested deeper than 32 levels")
def manifest_config_deep(root: Path) -> Path:
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    return with_manifest(root, manifest_text(harness={"version": "0.1.0", "config": deep}))


@case("submission.json", "bytes, over the limit of 1048576")
def manifest_too_large(root: Path) -> Path:
    noise = np.random.default_rng(0).bytes(800_000).hex()  # incompressible: the ratio check does not catch it first
    return with_manifest(root, manifest_text(harness={"version": "0.1.0", "config": {"noise": noise}}))


@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_submission_refused_with_one_line(
    hostile: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    scratch = tmp_path / "scratch"  # the validator's temporary folders go here, and must be gone after
    scratch.mkdir()
    source = hostile.build(work)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = tree(tmp_path)
    with pytest.raises(SubmissionError) as refused:
        with opened_submission(source, hostile.limits):
            pass
    problems = refused.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{hostile.entry}: "), problems[0]
    assert hostile.phrase in problems[0], problems[0]
    assert "\n" not in problems[0]
    assert tree(tmp_path) == before  # nothing written outside the temporary folder, and that one removed


def test_html_in_text_fields_is_stored_as_given(tmp_path: Path) -> None:
    """Markup is not refused: the board stores it as given and escapes it on the page (tests/test_leaderboard_site)."""
    description = '<script>window.pwned = 1</script><img src=x onerror="alert(1)">'
    source = write_zip(tmp_path / "sub.zip", files(method={"name": "<b>bold</b>", "description": description}))
    with opened_submission(source) as sub:
        assert sub.manifest.method.description == description
        assert sub.manifest.method.name == "<b>bold</b>"


def test_valid_zip_and_folder_read_the_same(tmp_path: Path) -> None:
    entries = files()
    with opened_submission(write_zip(tmp_path / "sub.zip", entries)) as from_zip:
        zip_digest, zip_ids = from_zip.digest, sorted(from_zip.samples)
        kinds = {a.folder for s in from_zip.samples.values() for a in s.images}
    with opened_submission(write_folder(tmp_path / "sub", entries)) as from_folder:
        assert (from_folder.digest, sorted(from_folder.samples)) == (zip_digest, zip_ids)
    assert zip_ids == ["s1", "s2"] and kinds == {"edited", "masks", "soft_masks"}


def test_several_problems_each_get_their_line(tmp_path: Path) -> None:
    source = zip_with(tmp_path, {"notes.txt": b"x", "edited/a b.png": edited_png()})
    with pytest.raises(SubmissionError) as refused:
        with opened_submission(source):
            pass
    assert [p.split(":")[0] for p in refused.value.problems] == ["notes.txt", "edited/a b.png"]


EXPECTED = {f"s{i}": ExpectedSample(f"s{i}", 8, 8, "replace_shape") for i in (1, 2, 3)}


def dataset_check(source: Path, policy: str = "fail", expected=EXPECTED, checksum: str = CHECKSUM):
    with opened_submission(source) as sub:
        return check_against_dataset(sub, "synthetic", checksum, expected, (EDITED,), policy, 200)


def test_missing_samples_are_failures_or_refused_as_the_board_says(tmp_path: Path) -> None:
    source = zip_with(tmp_path)  # s1, s2 of s1..s3
    assert dataset_check(source, "fail") == ["s3"]
    with pytest.raises(SubmissionError) as refused:
        dataset_check(source, "refuse")
    assert refused.value.problems == ("edited/s3.png: missing (this board refuses incomplete submissions)",)


def test_unknown_sample_id_refused(tmp_path: Path) -> None:
    source = zip_with(tmp_path, {"edited/s9.png": edited_png()})
    with pytest.raises(SubmissionError) as refused:
        dataset_check(source)
    assert refused.value.problems == ("edited/s9.png: sample id 's9' is not in the board's dataset (synthetic)",)


def test_wrong_size_refused(tmp_path: Path) -> None:
    source = zip_with(tmp_path, {"edited/s2.png": edited_png(1, 16)})
    with pytest.raises(SubmissionError) as refused:
        dataset_check(source)
    assert refused.value.problems == (
        "edited/s2.png: 16×16 pixels; the dataset's image is 8×8 (an edited image has its source's size)",
    )


def test_mask_at_a_lower_resolution_of_the_same_shape_is_accepted(tmp_path: Path) -> None:
    wide = {"s1": ExpectedSample("s1", 16, 8, "t"), "s2": ExpectedSample("s2", 16, 8, "t")}
    entries = {
        "submission.json": files()["submission.json"],
        "edited/s1.png": png(np.zeros((8, 16, 3), np.uint8)),
        "masks/s1.png": png(np.zeros((4, 8), np.uint8)),  # half the resolution, same shape
        "edited/s2.png": png(np.zeros((8, 16, 3), np.uint8)),
        "masks/s2.png": png(np.zeros((8, 8), np.uint8)),  # square: not the image's shape
    }
    with pytest.raises(SubmissionError) as refused:
        dataset_check(write_zip(tmp_path / "sub.zip", entries), expected=wide)
    assert refused.value.problems == ("masks/s2.png: 8×8 pixels, not the shape of the dataset's image (16×8)",)


def test_another_dataset_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError) as refused:
        dataset_check(zip_with(tmp_path), checksum="d" * 64)
    (line,) = refused.value.problems
    assert line.startswith("submission.json: field 'dataset.checksum': cccccccccccc… (synthetic) is not this board's")
