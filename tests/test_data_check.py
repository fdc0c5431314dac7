"""`emb data check` / `emb data convert`: the done-when through the real CLI, the rest in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.datasets.synthetic import SyntheticDataset, write_dataset
from tests.conftest import ROOT, emb
from tests.dataset_fixtures import HF_COLUMNS, make_big_manifest, make_coco, make_editing_mask, make_hf, make_pie_bench


def run_cli(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["data", *args])
    return code, capsys.readouterr().out.splitlines()


def test_check_names_each_broken_file_and_passes_the_rest(tmp_path, capsys):
    """The issue's done-when: a corrupt image, a mask of another size and an empty mask."""
    data = tmp_path / "ds"
    write_dataset(SyntheticDataset(num_samples=6, seed=0), data)  # what `emb data synthetic` writes
    corrupt = data / "images" / "syn0-00001.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    wrong_size = data / "masks" / "syn0-00002.png"
    Image.fromarray(np.full((10, 12), 255, np.uint8)).save(wrong_size)
    empty = data / "masks" / "syn0-00004.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(empty)

    proc = emb("data", "check", str(data), "-v", cwd=ROOT, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    problems = [
        ln
        for ln in lines
        if not ln.startswith(("ok ", "dataset checksum", "content checksum")) and "samples ok" not in ln
    ]
    assert len(problems) == 3, lines
    for path, what in (
        (corrupt, "field 'image': cannot decode"),
        (wrong_size, "field 'mask': size 12x10 differs"),
        (empty, "field 'mask': empty"),
    ):
        (line,) = [ln for ln in problems if ln.startswith(str(path))]
        assert what in line
    healthy = {ln.split()[1] for ln in lines if ln.startswith("ok ")}
    assert healthy == {"syn0-00000", "syn0-00003", "syn0-00005"}
    assert "3 samples ok, 3 broken (6 checked)" in lines
    assert any(ln.startswith("dataset checksum (folder): ") for ln in lines)

    # the healthy part alone passes: exit 0
    code, out = run_cli(capsys, "check", str(data), "limit=1")
    assert code == 0 and "1 samples ok, 0 broken (1 checked)" in out


def test_detects_each_official_layout(tmp_path, capsys):
    make_editing_mask(tmp_path / "em")
    make_pie_bench(tmp_path / "pie" / "data", n=4, shape=(512, 512))
    make_coco(tmp_path / "coco", n_images=3)
    make_hf(tmp_path / "hf")
    expected = {"em": ("editing_mask", 14), "pie": ("pie_bench", 4), "coco": ("coco", 3)}
    for folder, (name, n) in expected.items():
        code, out = run_cli(capsys, "check", str(tmp_path / folder))
        assert code == 0, out
        assert f"{n} samples ok, 0 broken ({n} checked)" in out
        assert any(ln.startswith(f"dataset checksum ({name}): ") for ln in out)
    # a config name plus key=value overrides (the hf folder needs its column mapping)
    columns = ",".join(f"{k}:{v}" for k, v in HF_COLUMNS.items())
    code, out = run_cli(
        capsys,
        "check",
        "hf",
        f"path={tmp_path / 'hf'}",
        f"columns={{{columns}}}",
        f"cache_dir={tmp_path / 'cache'}",
        "shard=1/2",
    )
    assert code == 0 and "7 samples ok, 0 broken (7 checked)" in out
    # the list file alone, with image/ and mask/ next to it
    alone = tmp_path / "alone"
    (alone / "image").mkdir(parents=True)
    (alone / "Editing-Mask_list.txt").write_text("3 <> a red car on a road <> red car <> a blue bus\r\n")
    Image.new("RGB", (8, 8)).save(alone / "image" / "3.jpg")
    (alone / "mask").mkdir()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(alone / "mask" / "3.png")
    code, out = run_cli(capsys, "check", str(alone))
    assert code == 0 and "1 samples ok, 0 broken (1 checked)" in out


def test_prompt_length_missing_fields_and_duplicates(tmp_path, capsys):
    make_big_manifest(tmp_path, n=2)
    m = tmp_path / "manifest.jsonl"
    long_prompt = " ".join(["a very long prompt"] * 30)
    with open(m, "a") as f:
        for rec in (
            {"id": "long", "target_prompt": long_prompt},
            {"id": "no-target", "target_prompt": ""},
            {"id": "s00000", "target_prompt": "dup"},
        ):
            f.write(json.dumps({"image": "images/a.png", "mask": "masks/a.png", **rec}) + "\n")
    code, out = run_cli(capsys, "check", str(tmp_path))
    assert code == 1
    assert any(ln.startswith(f"{m}:3: field 'target_prompt': ") and "longer than" in ln and "77" in ln for ln in out)
    assert f"{m}:4: field 'target_prompt': missing" in out
    assert any(ln.startswith(f"{m}:5: field 'id': 's00000' already used by {m}:1") for ln in out)
    assert "2 samples ok, 3 broken (5 checked)" in out
    code, out = run_cli(capsys, "check", str(tmp_path), "--max-prompt-tokens", "0", "limit=3")
    assert code == 0


def test_unusable_targets_are_one_line(tmp_path, capsys):
    for args, expected in (
        (["check", str(tmp_path / "missing")], "no such file or folder"),
        (["check", str(tmp_path)], "no manifest.jsonl"),
        (["check", "pie_bench"], "dataset.root: required"),
        (["check", "no_such_dataset"], "dataset/no_such_dataset"),
        (["check", "pie_bench", f"root={tmp_path}"], "mapping_file.json: PIE-Bench mapping file not found"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["data", *args])
        assert info.value.code == 2
        msg = capsys.readouterr().err
        assert msg.startswith("error: ") and expected in msg and msg.count("\n") == 1, msg


def test_convert_keeps_content(tmp_path, capsys):
    """Converting to the own format changes nothing a method sees: the content checksums agree."""
    make_editing_mask(tmp_path / "em")
    code, out = run_cli(capsys, "check", str(tmp_path / "em"))
    content = [ln.split(": ")[-1] for ln in out if ln.startswith("content checksum")]
    code, conv = run_cli(capsys, "convert", str(tmp_path / "em"), str(tmp_path / "own"))
    assert code == 0 and conv[-1].startswith("wrote 14 samples")
    code, out2 = run_cli(capsys, "check", str(tmp_path / "own"))
    assert code == 0 and [ln.split(": ")[-1] for ln in out2 if ln.startswith("content checksum")] == content
    assert main(["data", "convert", str(tmp_path / "em"), str(tmp_path / "own")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


def test_content_checksum_sees_pixel_changes(tmp_path, capsys):
    make_big_manifest(tmp_path, n=3)
    _, before = run_cli(capsys, "check", str(tmp_path))
    arr = np.asarray(Image.open(tmp_path / "images" / "a.png")).copy()
    arr[0, 0, 0] ^= 1
    Image.fromarray(arr).save(tmp_path / "images" / "a.png")
    _, after = run_cli(capsys, "check", str(tmp_path))

    def pick(lines: list[str], prefix: str) -> str:
        return next(ln for ln in lines if ln.startswith(prefix))

    # the index checksum covers the manifest only; the content checksum sees the pixels
    assert pick(before, "dataset checksum") == pick(after, "dataset checksum")
    assert pick(before, "content checksum") != pick(after, "content checksum")


def test_dataset_cards_exist_for_every_config():
    cards = Path(ROOT / "data")
    assert (cards / "README.md").is_file()
    for cfg in (ROOT / "conf" / "dataset").glob("*.yaml"):
        if cfg.stem != "folder":
            assert (cards / f"{cfg.stem}.md").is_file(), f"no data card for dataset/{cfg.stem}"


def test_unreadable_index_is_one_line(tmp_path, capsys):
    (tmp_path / "mapping_file.json").write_text('{"000000000000": {"image_path": ')
    code, out = run_cli(capsys, "check", str(tmp_path))
    assert code == 1 and len(out) == 1
    assert out[0].startswith(f"error: {tmp_path / 'mapping_file.json'}: not valid JSON")
