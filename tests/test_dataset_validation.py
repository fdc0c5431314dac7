"""Bad dataset input fails one sample with one line naming the file and field; nothing else is lost.

Sample ids (safe folder names, no duplicates), manifest field types, BOM / malformed JSON lines, how GT mask images
are read, empty GT masks in a run, and the toy world's set reporting under its own name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict
from PIL import Image

from benchmark.cli import main
from benchmark.datasets import build_dataset, iter_selected
from benchmark.datasets.base import EditDataset, SampleRef, clean_id, id_problem, load_mask, mask_from_image
from benchmark.types import EditSample, SampleError
from tests.conftest import compose
from tests.dataset_fixtures import SIZE, make_big_manifest, rect_mask, rgb, save_mask


def folder(root: Path, records: list[dict], raw_lines: list[str] = ()) -> Path:
    """A folder dataset whose manifest holds ``records`` (each completed from a valid base record), then
    ``raw_lines`` as they are. Every record points at images/a.png and the non-empty masks/a.png."""
    make_big_manifest(root, n=0)
    base = {"image": "images/a.png", "mask": "masks/a.png", "source_prompt": "a cat", "target_prompt": "a dog"}
    with open(root / "manifest.jsonl", "w") as f:
        for rec in records:
            f.write(json.dumps({**base, **rec}) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return root / "manifest.jsonl"


def outcomes(root: Path, check_sizes: bool = True) -> list[tuple[str, str]]:
    """(ref id, 'ok' or the SampleError line) for each selected sample of the folder dataset, in order."""
    cfg = {"name": "folder", "path": str(root), "limit": None, "shard": None}
    out = []
    for ref in iter_selected(build_dataset(cfg), cfg, check_sizes=check_sizes):
        try:
            ref.load()
            out.append((ref.id, "ok"))
        except SampleError as err:
            out.append((ref.id, str(err)))
    return out


def check(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["data", "check", *args])
    return code, capsys.readouterr().out.splitlines()


# --- 1. sample ids are one safe path component ------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../../escape", "/tmp/x", "a/b", "a\\b", "..", ".", "", "a b", "x" * 201, "é"])
def test_unsafe_ids_are_named(bad):
    assert id_problem(bad) is not None


@pytest.mark.parametrize("good", ["syn0-00003", "imagen-5", "imagenet-ILSVRC2012_val_00028602", "coco-9-12", "0001"])
def test_every_loaders_id_shape_is_safe(good):
    assert id_problem(good) is None and clean_id(good) == good


def test_unsafe_manifest_id_fails_its_record_in_run_and_check(tmp_path, capsys):
    m = folder(tmp_path, [{"id": "../../escape"}, {"id": "/tmp/x"}, {"id": "fine"}])
    got = outcomes(tmp_path)
    assert got[2] == ("fine", "ok")
    for (sid, msg), lineno in zip(got[:2], (1, 2), strict=True):
        assert msg.startswith(f"{m}:{lineno}: field 'id': {sid!r} is not a safe sample id") and "\n" not in msg
    code, out = check(capsys, str(tmp_path))
    assert code == 1 and "1 samples ok, 2 broken (3 checked)" in out
    assert any(ln.startswith(f"{m}:1: field 'id': '../../escape' is not a safe") for ln in out)


def test_hf_ids_from_arbitrary_values_are_cleaned_not_rejected(tmp_path):
    import datasets

    uids = ["a/b", "a b", "a_b", "", "..", "ok-1"]
    n = len(uids)
    ds = datasets.Dataset.from_dict(
        {
            "uid": uids,
            "picture": [rgb(k) for k in range(n)],
            "region": [Image.fromarray(rect_mask(k).astype(np.uint8) * 255) for k in range(n)],
            "edited_caption": ["a dog"] * n,
        },
        features=datasets.Features(
            {
                "uid": datasets.Value("string"),
                "picture": datasets.Image(),
                "region": datasets.Image(),
                "edited_caption": datasets.Value("string"),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    cfg = compose(["dataset=hf"]).dataset
    with open_dict(cfg):
        cfg.path = str(tmp_path / "hf")
        cfg.cache_dir = str(tmp_path / "cache")
        cfg.columns = {
            "id": "uid",
            "image": "picture",
            "mask": "region",
            "source_prompt": None,
            "target_prompt": "edited_caption",
        }
    refs = list(iter_selected(build_dataset(cfg), cfg))
    ids = [r.id for r in refs]
    assert all(id_problem(i) is None for i in ids) and len(set(ids)) == n  # "a/b", "a b", "a_b" stay apart
    assert ids[-1] == "ok-1" and ids[2] == "a_b"
    assert [r.load().id for r in refs] == ids


# --- 2. duplicate ids: the first runs, a later one fails -----------------------------------------------------------
def test_duplicate_id_fails_the_later_record_only(tmp_path, capsys):
    m = folder(tmp_path, [{"id": "x"}, {"id": "y"}, {"id": "x", "target_prompt": "another"}])
    got = outcomes(tmp_path)
    assert got[0] == ("x", "ok") and got[1] == ("y", "ok")
    sid, msg = got[2]
    assert sid != "x"  # its failure record must not replace the first one's result in the store
    assert msg == f"{m}:3: field 'id': 'x' already used by {m}:1"
    # data check: the same one line, once
    code, out = check(capsys, str(tmp_path))
    assert code == 1 and [ln for ln in out if "field 'id'" in ln] == [msg]
    # shards agree on which one is first: the duplicate fails in the shard it lands in
    cfg = {"name": "folder", "path": str(tmp_path), "limit": None, "shard": "0/2"}
    shard0 = list(iter_selected(build_dataset(cfg), cfg))
    assert [r.id for r in shard0][0] == "x" and len(shard0) == 2
    with pytest.raises(SampleError, match="already used by"):
        shard0[1].load()


def test_run_keeps_unsafe_and_duplicate_ids_out_of_the_run_folder(tmp_path, model_cache):
    """`emb run` on a manifest with "../../escape", "/tmp/x…" and a repeated id: those fail with one line each, the
    rest is scored, nothing is written outside the run's samples/METHOD/<id>/ folders, counts agree."""
    import pandas as pd

    from benchmark.runner import run
    from benchmark.store import load_records

    outside = tmp_path / "outside"
    data = tmp_path / "data"
    m = folder(data, [{"id": "a"}, {"id": "../../escape"}, {"id": str(outside)}, {"id": "b"}, {"id": "a"}])
    cfg = compose(["method=identity", "dataset=folder"], tmp_path, model_cache)
    with open_dict(cfg):
        cfg.dataset.path = str(data)
    run_dir = tmp_path / "runs" / "r"
    run(cfg, run_dir)
    assert not outside.exists() and not any((d / "escape").exists() for d in (tmp_path, run_dir.parent, run_dir))
    assert sorted(p.name for p in (run_dir / "samples" / "identity").iterdir()) == ["a", "b"]
    rows = pd.read_parquet(run_dir / "samples.parquet").drop_duplicates("sample_id").set_index("sample_id")
    assert (rows["status"] == "ok").sum() == 2 and (rows["status"] == "failed").sum() == 3
    errors = {r["sample_id"]: r["error"] for r in load_records(run_dir) if r["status"] == "failed"}
    assert errors["a#2"] == f"{m}:5: field 'id': 'a' already used by {m}:1"
    assert errors["../../escape"].startswith(f"{m}:2: field 'id': '../../escape' is not a safe sample id")
    summary = json.loads((run_dir / "results.json").read_text())["summary"]
    rows_of_identity = [s for s in summary if s["method"] == "identity"]
    assert {s["failures"] for s in rows_of_identity} == {3} and max(s["n"] for s in rows_of_identity) == 2


# --- 3. manifest fields of the wrong JSON type ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("image", 5, "field 'image': expected a file path (a non-empty string), got a number"),
        ("mask", ["masks/a.png"], "field 'mask': expected a file path (a non-empty string), got an array"),
        ("target_image", {"p": 1}, "field 'target_image': expected a file path (a non-empty string), got an object"),
        ("image", "  ", "field 'image': expected a file path (a non-empty string), got a blank string"),
        ("target_prompt", 12345, "field 'target_prompt': expected a string, got a number"),
        ("target_prompt", ["a", "b"], "field 'target_prompt': expected a string, got an array"),
        ("source_prompt", True, "field 'source_prompt': expected a string, got true/false"),
        ("instruction", 3.5, "field 'instruction': expected a string, got a number"),
        ("edit_type", [], "field 'edit_type': expected a string, got an array"),
        ("edit_words", "cat dog", "field 'edit_words': expected [source, target] (two strings), got a string"),
        ("edit_words", ["a"], "field 'edit_words': expected [source, target] (two strings), got an array of 1"),
        ("edit_words", ["a", 2], "field 'edit_words': expected [source, target] (two strings), got a number"),
        ("meta", "x", "field 'meta': expected an object, got a string"),
        ("id", 7, "field 'id': expected a string, got a number"),
    ],
)
def test_wrong_field_type_is_one_line_and_the_rest_runs(tmp_path, field, value, expected):
    m = folder(tmp_path, [{"id": "good"}, {"id": "bad", field: value}, {"id": "good2"}])
    got = outcomes(tmp_path)
    assert got[0] == ("good", "ok") and got[2] == ("good2", "ok")
    assert got[1][1] == f"{m}:2: {expected}"


def test_wrong_types_in_data_check_are_lines_not_a_traceback(tmp_path, capsys):
    m = folder(tmp_path, [{"id": "i", "image": 5}, {"id": "k", "mask": [1]}, {"id": "ok"}])
    code, out = check(capsys, str(tmp_path))
    assert code == 1 and "1 samples ok, 2 broken (3 checked)" in out
    assert f"{m}:1: field 'image': expected a file path (a non-empty string), got a number" in out


def test_null_edit_words_and_optional_nulls_read_as_absent(tmp_path):
    folder(
        tmp_path,
        [
            {"id": "n", "edit_words": [None, None], "source_prompt": None, "edit_type": None, "meta": None},
            {"id": "h", "edit_words": ["cat", None], "instruction": None, "target_image": None},
        ],
    )
    cfg = {"name": "folder", "path": str(tmp_path)}
    a, b = (r.load() for r in build_dataset(cfg).refs())
    assert a.edit_words == ("", "") and a.source_prompt == "" and a.edit_type == "unknown"
    assert b.edit_words == ("cat", "") and b.instruction is None and b.target_image is None


# --- 4. byte-order mark, malformed JSON lines ----------------------------------------------------------------------
def test_manifest_with_a_byte_order_mark_reads_record_one(tmp_path):
    m = folder(tmp_path, [{"id": "first"}, {"id": "second"}])
    m.write_bytes(b"\xef\xbb\xbf" + m.read_bytes())
    assert outcomes(tmp_path) == [("first", "ok"), ("second", "ok")]


def test_malformed_json_line_names_line_and_column(tmp_path):
    m = folder(tmp_path, [{"id": "a"}], raw_lines=['{"id": "b\tc"}', '{"id": "d",}', b"\xff".decode("latin-1")])
    with open(m, "ab") as f:
        f.write(b'{"id": "\xff"}\n')  # not UTF-8: that line fails, the others are read
    got = outcomes(tmp_path)
    assert got[0] == ("a", "ok")
    assert got[1][1] == f"{m}:2: not valid JSON (Invalid control character at column 10)"
    assert got[2][1] == f"{m}:3: not valid JSON (Expecting property name enclosed in double quotes at column 12)"
    assert got[3][1].startswith(f"{m}:4: not valid JSON (Expecting value at column 1)")
    assert got[4][1].startswith(f"{m}:5: not valid UTF-8 (byte 9")


# --- 5. GT mask images: binary in any encoding, alpha, colour, soft ---------------------------------------------------
REGION = rect_mask(3)


def encoded(kind: str) -> Image.Image:
    """REGION written the ways masks come in the wild."""
    r = REGION
    if kind == "0/255":
        return Image.fromarray(r.astype(np.uint8) * 255)
    if kind == "0/1":
        return Image.fromarray(r.astype(np.uint8))
    if kind == "0/100":
        return Image.fromarray(r.astype(np.uint8) * 100)
    if kind == "1-bit":
        return Image.fromarray(r.astype(np.uint8) * 255).convert("1")
    if kind == "16-bit":
        return Image.fromarray(r.astype(np.uint16) * 65535)
    if kind == "red on black":
        rgb_arr = np.zeros((*r.shape, 3), np.uint8)
        rgb_arr[r, 0] = 255
        return Image.fromarray(rgb_arr)
    if kind == "alpha, white colour":
        rgba = np.full((*r.shape, 4), 255, np.uint8)
        rgba[..., 3] = r * 255
        return Image.fromarray(rgba)
    if kind == "opaque RGBA":
        rgba = np.full((*r.shape, 4), 255, np.uint8)
        rgba[..., :3] = (r * 255)[..., None]
        return Image.fromarray(rgba)
    if kind == "palette":  # index 0 black, index 1 green
        im = Image.new("P", (r.shape[1], r.shape[0]))
        im.putdata(r.astype(np.uint8).ravel().tolist())
        im.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
        return im
    if kind == "soft":  # anti-aliased: grey edge levels around a white core
        soft = r.astype(np.uint8) * 255
        edge = np.zeros_like(r)
        edge[:, 1:] |= r[:, :-1] & ~r[:, 1:]
        soft[edge] = 60  # below half: background
        soft[r & np.roll(~r, 1, axis=1)] = 200  # the region's own first column, above half: region
        return Image.fromarray(soft)
    raise ValueError(kind)


KINDS = ["0/255", "0/1", "0/100", "1-bit", "16-bit", "red on black", "alpha, white colour", "opaque RGBA", "palette"]


@pytest.mark.parametrize("kind", [*KINDS, "soft"])
def test_mask_encodings_read_as_the_same_region(tmp_path, kind):
    path = tmp_path / "m.png"
    encoded(kind).save(path)
    assert np.array_equal(load_mask(path), REGION), kind


def test_constant_and_soft_masks_and_an_explicit_threshold():
    assert mask_from_image(Image.new("L", (4, 4), 255)).all()
    assert not mask_from_image(Image.new("L", (4, 4), 0)).any()
    soft = Image.fromarray(np.array([[0, 60, 130, 255]], np.uint8))
    assert mask_from_image(soft).tolist() == [[False, False, True, True]]  # half of the brightest level
    assert mask_from_image(soft, threshold=50).tolist() == [[False, True, True, True]]  # a loader's mask_threshold
    soft16 = Image.fromarray(np.array([[0, 60 * 257, 130 * 257, 65535]], np.uint16))
    assert mask_from_image(soft16, threshold=127).tolist() == [[False, False, True, True]]


def test_a_zero_one_mask_is_not_empty_in_a_folder_dataset(tmp_path):
    folder(tmp_path, [{"id": "a", "mask": "masks/b.png"}])
    Image.fromarray(rect_mask(5).astype(np.uint8)).save(tmp_path / "masks" / "b.png")
    (ref,) = iter_selected(build_dataset(cfg := {"name": "folder", "path": str(tmp_path)}), cfg)
    assert np.array_equal(ref.load().mask, rect_mask(5))


# --- 6. an empty GT mask fails the sample in a run -------------------------------------------------------------------
def test_empty_mask_fails_in_a_run_and_is_reported_by_check(tmp_path, capsys):
    folder(tmp_path, [{"id": "a"}, {"id": "e", "mask": "masks/empty.png"}])
    empty = tmp_path / "masks" / "empty.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(empty)
    got = outcomes(tmp_path)
    assert got == [("a", "ok"), ("e", f"{empty}: field 'mask': empty (no pixel marked to edit)")]
    assert outcomes(tmp_path, check_sizes=False)[1] == ("e", "ok")  # data check reports it among the others
    code, out = check(capsys, str(tmp_path))
    assert code == 1 and [ln for ln in out if "field 'mask'" in ln] == [got[1][1]]


class NoMaskDataset(EditDataset):
    """Samples without any GT mask (mask=None), as a loader of a mask-less edit set would yield."""

    name = "no_mask"

    def refs(self) -> Iterator[SampleRef]:
        for k in range(2):
            sample = EditSample(id=f"n{k}", image=rgb(k), mask=None, source_prompt="a", target_prompt="b")
            yield SampleRef(id=sample.id, load=lambda s=sample: s, source=f"no_mask {k}")

    def checksum(self) -> str:
        return "none"


def test_samples_without_a_mask_are_not_failed_as_empty():
    refs = list(iter_selected(NoMaskDataset(), {"limit": None, "shard": None}))
    assert [r.load().mask for r in refs] == [None, None]


def test_a_mask_of_another_size_still_fails(tmp_path):
    folder(tmp_path, [{"id": "w", "mask": "masks/w.png"}])
    save_mask(np.ones((SIZE + 2, SIZE), bool), tmp_path / "masks" / "w.png")
    ((_, msg),) = outcomes(tmp_path)
    assert "field 'mask': size" in msg and "differs from image size" in msg


# --- 7. the toy world's set reports as toyworld -------------------------------------------------------------------
def test_toyworld_reports_its_own_name_and_loads_with_the_synthetic_loader(capsys):
    from benchmark.datasets.synthetic import SyntheticDataset

    cfg = compose(["dataset=toyworld"]).dataset
    ds = build_dataset(cfg)
    assert isinstance(ds, SyntheticDataset) and ds.describe()["name"] == "toyworld" and cfg.name == "toyworld"
    assert ds.checksum() == SyntheticDataset(num_samples=200, size=64, seed=0).checksum()  # same content as before
    assert build_dataset(compose(["dataset=synthetic"]).dataset).describe()["name"] == "synthetic"
    code, out = check(capsys, "toyworld", "limit=2")
    assert code == 0 and any(ln.startswith("dataset checksum (toyworld): ") for ln in out)
