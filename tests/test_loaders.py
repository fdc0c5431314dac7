"""Dataset loaders on tiny fixtures in each official layout, built through the real Hydra dataset configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from omegaconf import open_dict

from benchmark.datasets import build_dataset, iter_selected
from benchmark.datasets.base import select
from benchmark.datasets.editing_mask import replace_phrase
from benchmark.datasets.pie_bench import decode_rle, encode_rle
from benchmark.types import SampleError
from tests.conftest import compose
from tests.dataset_fixtures import (
    COCO_CATEGORIES,
    HF_COLUMNS,
    IMAGEN_LINES,
    IMAGENET_LINES,
    hand_mask_and_rle,
    hf_rows,
    make_big_manifest,
    make_coco,
    make_editing_mask,
    make_hf,
    make_pie_bench,
    rect_mask,
)


def dataset_cfg(name: str, **options):
    """conf/dataset/<name>.yaml as `emb run dataset=<name>` composes it, with options set (paths need no quoting)."""
    cfg = compose([f"dataset={name}"]).dataset
    with open_dict(cfg):
        for k, v in options.items():
            cfg[k] = v
    return cfg


def build(name: str, **options):
    cfg = dataset_cfg(name, **options)
    return build_dataset(cfg), cfg


@pytest.fixture
def count_opens(monkeypatch):
    """Counts PIL.Image.open calls (every loader decodes through it), recording what was opened."""
    opened: list[str] = []
    real_open = PIL.Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    return opened


# --- one builder per loader, each with >= 14 samples, for the shared limit / shard / streaming checks ------------
def _editing_mask(tmp: Path):
    make_editing_mask(tmp)
    return build("editing_mask", root=str(tmp))


def _pie(tmp: Path):
    make_pie_bench(tmp, shape=(16, 16))
    return build("pie_bench", root=str(tmp), mask_shape=[16, 16])


def _coco(tmp: Path):
    make_coco(tmp, n_images=8)
    return build("coco", root=str(tmp), max_edits_per_image=2)


def _hf(tmp: Path):
    make_hf(tmp / "hf")
    return build("hf", path=str(tmp / "hf"), columns=HF_COLUMNS, cache_dir=str(tmp / "hf_cache"))


def _hf_stream(tmp: Path):
    make_hf(tmp / "hf")
    return build("hf", path=str(tmp / "hf"), columns=HF_COLUMNS, streaming=True)


def _folder(tmp: Path):
    make_big_manifest(tmp, n=20)
    return build("folder", path=str(tmp))


def _synthetic(tmp: Path):
    return build("synthetic", num_samples=20, limit=None)


BUILDERS = {
    "editing_mask": _editing_mask,
    "pie_bench": _pie,
    "coco": _coco,
    "hf": _hf,
    "hf_streaming": _hf_stream,
    "folder": _folder,
    "synthetic": _synthetic,
}


@pytest.mark.parametrize("which", list(BUILDERS))
def test_limit_and_shards_cover_the_same_samples(which, tmp_path):
    ds, cfg = BUILDERS[which](tmp_path)
    all_ids = [r.id for r in ds.refs()]
    assert len(all_ids) >= 14 and len(set(all_ids)) == len(all_ids), "ids must be unique"
    first12 = [r.id for r in select(ds.refs(), limit=12)]
    s0 = [r.id for r in select(ds.refs(), limit=12, shard="0/2")]
    s1 = [r.id for r in select(ds.refs(), limit=12, shard="1/2")]
    assert first12 == all_ids[:12]
    assert len(s0) == len(s1) == 6 and not set(s0) & set(s1)
    assert sorted(s0 + s1) == sorted(first12)
    # through the config keys, as the runner applies them
    with open_dict(cfg):
        cfg.limit, cfg.shard = 12, "1/2"
    assert [r.id for r in iter_selected(ds, cfg)] == s1
    # a rebuilt dataset gives the same ids, samples and checksum (per-sample seeds hang on stable ids)
    ds2 = build_dataset(cfg)
    assert [r.id for r in ds2.refs()] == all_ids and ds2.checksum() == ds.checksum()
    a, b = next(iter(ds.refs())).load(), next(iter(ds2.refs())).load()
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and np.array_equal(a.mask, b.mask)
    assert (a.source_prompt, a.target_prompt, a.edit_words) == (b.source_prompt, b.target_prompt, b.edit_words)


@pytest.mark.parametrize("which", [w for w in BUILDERS if w != "synthetic"])
def test_refs_decode_nothing_until_loaded(which, tmp_path, count_opens):
    ds, _ = BUILDERS[which](tmp_path)
    count_opens.clear()  # building the fixture itself may open files
    n = sum(1 for _ in ds.refs())
    assert n >= 14 and count_opens == [], f"iterating the references opened {count_opens[:3]}"
    for ref in select(ds.refs(), limit=3):
        sample = ref.load()
        assert sample.mask.shape == (sample.image.size[1], sample.image.size[0])
    per_sample = 1 if which in ("pie_bench", "coco") else 2  # their masks are in the index, not files
    assert len(count_opens) == 3 * per_sample


def test_streaming_10000_samples_loads_only_what_is_taken(tmp_path, count_opens):
    make_big_manifest(tmp_path, n=10_000)
    ds, cfg = build("folder", path=str(tmp_path))
    count_opens.clear()
    refs = ds.refs()
    assert not isinstance(refs, list | tuple), "refs() must be lazy"
    taken = [r.load() for r in select(refs, limit=3)]
    images = [p for p in count_opens if "/images/" in p]
    assert len(taken) == 3 and len(images) == 3 and len(count_opens) == 6
    # the whole selection can be counted (as the runner's progress bar does) without decoding any image
    count_opens.clear()
    with open_dict(cfg):
        cfg.shard = "3/4"
    assert sum(1 for _ in iter_selected(ds, cfg)) == 2500 and count_opens == []


# --- Editing-Mask ---------------------------------------------------------------------------------------------
def test_editing_mask_official_layout(tmp_path):
    masks = make_editing_mask(tmp_path)
    ds, _ = build("editing_mask", root=str(tmp_path))
    samples = {r.id: r.load() for r in ds.refs()}
    assert len(samples) == len(IMAGEN_LINES) + len(IMAGENET_LINES)
    for sid, s in samples.items():
        assert np.array_equal(s.mask, masks[sid]), sid
        assert s.mask.shape == (s.image.size[1], s.image.size[0])
        assert "\r" not in s.source_prompt + s.target_prompt + "".join(s.edit_words)

    cat = samples["imagen-5"]
    assert cat.source_prompt == IMAGEN_LINES[0][1]
    # the phrase replaced in the caption; the doubled article merged
    assert cat.target_prompt == (
        "A photo of a Shiba Inu dog wearing a sunglasses and red shirt riding a bike on a beach."
    )
    assert cat.edit_words == ("Persian cat", "a Shiba Inu dog")
    assert cat.edit_type == "animal" and cat.meta["official_prompt"] == "a Shiba Inu dog"
    assert samples["imagen-7"].target_prompt.endswith("playing a guitar on a beach.")
    assert samples["imagen-7"].edit_type == "location"
    assert samples["imagen-9"].edit_type == "activity" and samples["imagen-54"].edit_type == "clothing"
    assert samples["imagen-33"].target_prompt.startswith("A photo of a British Shorthair cat wearing")
    # case-insensitive match: "FUZZY panda" finds "fuzzy panda"
    assert samples["imagen-91"].target_prompt.startswith("A photo of a Persian cat wearing a sunglasses")

    beagle = samples["imagenet-ILSVRC2012_val_00028602"]
    assert (beagle.source_prompt, beagle.target_prompt) == ("a photo of a beagle", "a photo of a Afghan hound")
    assert beagle.edit_words == ("beagle", "Afghan hound") and beagle.edit_type == "imagenet_class"
    assert beagle.meta["official_prompt"] == "a Afghan hound"
    assert beagle.image.size == (20, 16)


def test_editing_mask_methods_condition_on_the_official_codes_texts(tmp_path):
    """The InstDiffEdit repo conditions InstDiffEdit and its DiffEdit baseline on the list file's texts: the
    replacement ("a Shiba Inu dog") or "a " + the target class, not the bare class (a one-word prompt would skip
    InstDiffEdit's word labelling); the baseline's reference is the phrase / the bare source class."""
    from methods.sd_common import prompt_text

    make_editing_mask(tmp_path)
    ds, _ = build("editing_mask", root=str(tmp_path))
    samples = {r.id: r.load() for r in ds.refs()}
    cat, beagle = samples["imagen-5"], samples["imagenet-ILSVRC2012_val_00028602"]
    instdiffedit = compose(["method=instdiffedit"]).method
    repo = compose(["method=diffedit_repo"]).method
    assert [prompt_text(s, instdiffedit.prompt) for s in (cat, beagle)] == ["a Shiba Inu dog", "a Afghan hound"]
    assert [prompt_text(s, repo.query_prompt) for s in (cat, beagle)] == ["a Shiba Inu dog", "a Afghan hound"]
    assert [prompt_text(s, repo.reference_prompt) for s in (cat, beagle)] == ["Persian cat", "beagle"]
    # a dataset without official texts: the target edit words, as before
    toy, _ = build("toyworld", limit=1)
    sample = next(iter(toy.refs())).load()
    assert prompt_text(sample, "official_prompt") == prompt_text(sample, "target_words") == sample.edit_words[1]


def test_editing_mask_options(tmp_path):
    make_editing_mask(tmp_path)
    ds, _ = build(
        "editing_mask",
        root=str(tmp_path),
        prompt_mode="official",
        subsets=["imagenet"],
        imagenet_source_template="x",
        merge_articles=False,
    )
    samples = [r.load() for r in ds.refs()]
    assert len(samples) == len(IMAGENET_LINES)
    assert (samples[0].source_prompt, samples[0].target_prompt) == ("a beagle", "a Afghan hound")
    assert (
        replace_phrase("A photo of a Persian cat.", "persian CAT", "a dog", merge_articles=False)
        == "A photo of a a dog."
    )
    assert replace_phrase("A photo of a cat.", "dog", "a cow") is None
    # another layout: masks named <id>_mask.png in one folder with the images
    other = tmp_path / "other"
    other.mkdir()
    (other / "list.txt").write_text("3 <> a red car on a road <> red car <> a blue bus\n")
    PIL.Image.new("RGB", (8, 8)).save(other / "3.png")
    PIL.Image.fromarray(np.full((8, 8), 255, np.uint8)).save(other / "3_mask.png")
    ds, _ = build(
        "editing_mask",
        root=str(other),
        list_file="list.txt",
        image_dir=".",
        mask_dir=".",
        imagen_image=["{id}.png"],
        imagen_mask=["{id}_mask.png"],
    )
    (s,) = [r.load() for r in ds.refs()]
    assert s.target_prompt == "a blue bus on a road" and s.mask.all()
    with pytest.raises(ValueError, match="unknown placeholder"):
        build("editing_mask", root=str(other), list_file="list.txt", imagen_mask=["{nope}.png"])


def test_editing_mask_bad_lines_fail_alone(tmp_path):
    make_editing_mask(
        tmp_path,
        extra_lines=[
            "400 <> A photo of a cat on a mat. <> purple dragon <> a dog",
            "only one field",
            "401 <> A photo of a cat. <> cat <> a dog",  # fine in the list, but no image file
        ],
    )
    ds, _ = build("editing_mask", root=str(tmp_path))
    list_file = tmp_path / "dataset_txt" / "Editing-Mask_list.txt"
    n_good = len(IMAGEN_LINES) + len(IMAGENET_LINES)
    good, errors = 0, []
    for ref in ds.refs():
        try:
            ref.load()
            good += 1
        except SampleError as err:
            errors.append(str(err))
    assert good == n_good and len(errors) == 3
    assert all("\n" not in e for e in errors)
    assert errors[0].startswith(f"{list_file}:{n_good + 1}: field 'phrase'") and "purple dragon" in errors[0]
    assert errors[1].startswith(f"{list_file}:{n_good + 2}:") and "fields" in errors[1]
    assert errors[2].startswith(f"{list_file}:{n_good + 3}: field 'image'") and "401.jpg" in errors[2]


# --- PIE-Bench ------------------------------------------------------------------------------------------------
def test_rle_decode_matches_hand_built_masks():
    mask, rle = hand_mask_and_rle(1, (16, 16))
    assert np.array_equal(decode_rle(rle, (16, 16), border_rule=False), mask)
    with_border = mask.copy()
    with_border[0, :] = with_border[-1, :] = with_border[:, 0] = with_border[:, -1] = True
    assert np.array_equal(decode_rle(rle, (16, 16), border_rule=True), with_border)
    # 512x512, one run across a row boundary and one past the end (clipped, as their decoder does)
    expected = np.zeros(512 * 512, dtype=bool)
    expected[510:515] = True  # row 0 cols 510-511, row 1 cols 0-2
    expected[512 * 512 - 3 :] = True
    got = decode_rle([510, 5, 512 * 512 - 3, 100], (512, 512), border_rule=False)
    assert np.array_equal(got, expected.reshape(512, 512))
    assert got[0, 511] and got[1, 2] and not got[1, 3] and got[511, 509:].all()
    assert encode_rle(got) == [510, 5, 512 * 512 - 3, 3]
    with pytest.raises(ValueError, match="odd"):
        decode_rle([1, 2, 3])


def test_pie_bench_fields_and_border_rule(tmp_path):
    masks = make_pie_bench(tmp_path, n=8, shape=(16, 16))
    ds, _ = build("pie_bench", root=str(tmp_path), mask_shape=[16, 16])
    samples = [r.load() for r in ds.refs()]
    assert [s.id for s in samples] == sorted(masks)
    s = samples[0]
    assert s.source_prompt == "a cat sitting on a bench number 0"  # brackets stripped
    assert s.target_prompt == "a dog sitting on a bench number 0"
    assert s.meta["editing_prompt_raw"] == "a [dog] sitting on a bench number 0"
    assert s.instruction == "change the cat to a dog" and s.edit_words == ("cat", "dog")
    # the fixture's ids start with their editing_type_id
    assert {x.id[0]: x.edit_type for x in samples} == {
        "0": "random",
        "1": "change_object",
        "2": "add_object",
        "9": "change_style",
    }
    bordered = masks[s.id].copy()
    bordered[0, :] = bordered[-1, :] = bordered[:, 0] = bordered[:, -1] = True
    assert np.array_equal(s.mask, bordered)
    raw, _ = build("pie_bench", root=str(tmp_path), mask_shape=[16, 16], border_rule=False)
    assert all(np.array_equal(r.load().mask, masks[r.id]) for r in raw.refs())
    assert raw.checksum() != ds.checksum()
    only, _ = build("pie_bench", root=str(tmp_path), mask_shape=[16, 16], edit_types=["change_object", 9])
    assert {r.load().edit_type for r in only.refs()} == {"change_object", "change_style"}


def test_pie_bench_default_512_and_malformed_records(tmp_path):
    rel = "0_random_140/000000000000.jpg"
    (tmp_path / "annotation_images" / "0_random_140").mkdir(parents=True)
    PIL.Image.new("RGB", (512, 512)).save(tmp_path / "annotation_images" / rel)
    from tests.dataset_fixtures import pie_record

    good = pie_record(0, 0, [1030, 10], rel)
    good["blended_word"] = ""  # falls back to the bracketed words
    mapping = {
        "000000000000": good,
        "000000000001": {**pie_record(1, 0, [5, 1, 7], rel)},
        "000000000002": {k: v for k, v in pie_record(2, 0, [1, 1], rel).items() if k != "editing_prompt"},
        "000000000003": pie_record(3, 0, [1, 1], "0_random_140/missing.jpg"),
    }
    (tmp_path / "mapping_file.json").write_text(json.dumps(mapping))
    ds, _ = build("pie_bench", root=str(tmp_path))
    refs = list(ds.refs())
    s = refs[0].load()
    assert s.mask.shape == (512, 512) and s.mask[2, 6:16].all() and not s.mask[2, 16]
    assert s.edit_words == ("cat", "dog")
    errors = []
    for ref in refs[1:]:
        with pytest.raises(SampleError) as info:
            ref.load()
        errors.append(str(info.value))
    mf = tmp_path / "mapping_file.json"
    assert errors[0].startswith(f"{mf}[000000000001]: field 'mask'") and "odd" in errors[0]
    assert errors[1] == f"{mf}[000000000002]: field 'editing_prompt': missing"
    assert "missing.jpg" in errors[2] and "field 'image_path'" in errors[2]


# --- COCO -----------------------------------------------------------------------------------------------------
def test_coco_edits_from_polygons(tmp_path):
    data = make_coco(tmp_path, n_images=8)
    ds, _ = build("coco", root=str(tmp_path), max_edits_per_image=2, seed=3)
    samples = [r.load() for r in ds.refs()]
    cats = {c["id"]: c for c in COCO_CATEGORIES}
    anns = {a["id"]: a for a in data["annotations"]}
    # the tiny squares fall under min_area_fraction; two edits per image, the larger first
    assert len(samples) == 16
    for s in samples:
        ann = anns[s.meta["annotation_id"]]
        cat = cats[ann["category_id"]]
        assert s.image.size == (40, 30) and s.mask.shape == (30, 40)
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(s.mask)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
        assert abs(int(s.mask.sum()) - ann["area"]) <= 0.25 * ann["area"]
        src, tgt = s.edit_words
        assert src == cat["name"] and tgt != src
        assert s.source_prompt == f"a photo of a {src}" and s.target_prompt == f"a photo of a {tgt}"
        assert s.instruction == f"replace the {src} with a {tgt}"
        others = [c for c in COCO_CATEGORIES if c["supercategory"] == cat["supercategory"] and c["id"] != cat["id"]]
        if others:
            assert tgt in {c["name"] for c in others}
    first = [s for s in samples if s.meta["image_id"] == 500]
    assert first[0].meta["area"] > first[1].meta["area"]
    # the target draw depends on the seed only (not on the order or shard)
    same = {
        r.id: r.load().edit_words
        for r in select(build("coco", root=str(tmp_path), max_edits_per_image=2, seed=3)[0].refs(), shard="1/3")
    }
    assert all(same[s.id] == s.edit_words for s in samples if s.id in same)
    other_seed = [
        r.load().edit_words for r in build("coco", root=str(tmp_path), max_edits_per_image=2, seed=4)[0].refs()
    ]
    assert other_seed != [s.edit_words for s in samples]


def test_coco_filters_and_replacements(tmp_path):
    make_coco(tmp_path, n_images=8)
    ds, _ = build(
        "coco",
        root=str(tmp_path),
        categories=["dog", "cat"],
        replacements={"dog": "wolf"},
        max_edits_per_image=-1,
        min_area_fraction=0.0,
    )
    samples = [r.load() for r in ds.refs()]
    assert samples and {s.edit_words[0] for s in samples} <= {"dog", "cat"}
    assert all(s.edit_words[1] == "wolf" for s in samples if s.edit_words[0] == "dog")
    with pytest.raises(ValueError, match="unknown COCO categories"):
        list(build("coco", root=str(tmp_path), categories=["dragon"])[0].refs())
    with pytest.raises(FileNotFoundError, match="instances"):
        build("coco", root=str(tmp_path / "nowhere"))


# --- Hugging Face datasets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout,streaming", [("parquet", False), ("parquet", True), ("disk", False)])
def test_hf_local_dataset_with_column_mapping(tmp_path, layout, streaming):
    make_hf(tmp_path / "hf", layout=layout)
    ds, _ = build(
        "hf",
        path=str(tmp_path / "hf"),
        columns=HF_COLUMNS,
        streaming=streaming,
        cache_dir=str(tmp_path / "cache"),
        meta_columns=["difficulty"],
    )
    rows = hf_rows()
    samples = [r.load() for r in ds.refs()]
    assert [s.id for s in samples] == rows["uid"]
    for k, s in enumerate(samples):
        assert np.array_equal(np.asarray(s.image), np.asarray(rows["picture"][k]))
        assert np.array_equal(s.mask, rect_mask(k))
        assert (s.source_prompt, s.target_prompt) == (rows["caption"][k], rows["edited_caption"][k])
        assert s.edit_words == ("cat", "dog") and s.edit_type == "change_object" and s.meta["difficulty"] == k
    assert (
        len(ds.checksum()) == 64
        and ds.checksum()
        == build(
            "hf",
            path=str(tmp_path / "hf"),
            columns=HF_COLUMNS,
            streaming=streaming,
            cache_dir=str(tmp_path / "cache"),
            meta_columns=["difficulty"],
        )[0].checksum()
    )


def test_hf_file_path_columns_and_errors(tmp_path):
    import datasets

    (tmp_path / "files").mkdir()
    for k in range(3):
        PIL.Image.new("RGB", (8, 6), (k, 0, 0)).save(tmp_path / "files" / f"im{k}.png")
        PIL.Image.fromarray(np.full((6, 8), 255 * (k != 1), np.uint8)).save(tmp_path / "files" / f"m{k}.png")
    datasets.Dataset.from_dict(
        {
            "image": [f"files/im{k}.png" for k in range(3)],
            "mask": [f"files/m{k}.png" if k != 2 else "files/absent.png" for k in range(3)],
            "target_prompt": ["a", "b", "c"],
        }
    ).to_parquet(str(tmp_path / "table.parquet"))
    ds, _ = build(
        "hf",
        path="parquet",
        data_files=str(tmp_path / "table.parquet"),
        image_root=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        columns={"source_prompt": None},
    )
    refs = list(ds.refs())
    assert [r.id for r in refs] == ["train-000000", "train-000001", "train-000002"]
    s = refs[0].load()
    assert s.image.size == (8, 6) and s.mask.all() and s.source_prompt == ""
    assert not refs[1].load().mask.any()
    with pytest.raises(SampleError, match=r"field 'mask': file not found .*absent.png"):
        refs[2].load()
    with pytest.raises(ValueError, match=r"dataset.columns.target_prompt='caption': no such column"):
        build(
            "hf",
            path="parquet",
            data_files=str(tmp_path / "table.parquet"),
            cache_dir=str(tmp_path / "cache"),
            columns={"target_prompt": "caption", "source_prompt": None},
        )


def test_hf_missing_hub_dataset_is_one_line():
    # conftest sets HF_HUB_OFFLINE=1: the hub id cannot be reached
    with pytest.raises(FileNotFoundError) as info:
        build("hf", path="nobody-here/no-such-dataset")
    msg = str(info.value)
    assert "\n" not in msg and "nobody-here/no-such-dataset" in msg and "save_to_disk" in msg


# --- own format + synthetic -----------------------------------------------------------------------------------
def test_synthetic_written_and_read_back_in_own_format(tmp_path):
    from benchmark.datasets.synthetic import SyntheticDataset, write_dataset

    syn = SyntheticDataset(num_samples=4, seed=2)
    assert write_dataset(syn, tmp_path) == 4
    ds, _ = build("folder", path=str(tmp_path))
    for a, b in zip((r.load() for r in syn.refs()), (r.load() for r in ds.refs()), strict=True):
        assert a.id == b.id and np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert np.array_equal(a.mask, b.mask) and np.array_equal(np.asarray(a.target_image), np.asarray(b.target_image))
        assert (a.source_prompt, a.target_prompt, a.edit_words, a.instruction, a.edit_type) == (
            b.source_prompt,
            b.target_prompt,
            b.edit_words,
            b.instruction,
            b.edit_type,
        )


def test_folder_malformed_lines_fail_alone(tmp_path):
    make_big_manifest(tmp_path, n=2)
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write("{not json\n[1, 2]\n")
        f.write(json.dumps({"id": "x", "image": "images/a.png", "mask": "masks/a.png"}) + "\n")
    ds, _ = build("folder", path=str(tmp_path))
    refs = list(ds.refs())
    assert len(refs) == 5
    refs[0].load()
    m = tmp_path / "manifest.jsonl"
    for ref, expected in zip(
        refs[2:],
        (f"{m}:3: not valid JSON", f"{m}:4: expected a JSON object", f"{m}:5: field 'target_prompt': missing"),
        strict=True,
    ):
        with pytest.raises(SampleError) as info:
            ref.load()
        assert str(info.value).startswith(expected)


def test_unknown_or_missing_options_are_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'pie_bench': unknown option\(s\) bordr_rule"):
        build("pie_bench", root=str(tmp_path), bordr_rule=False)
    with pytest.raises(ValueError, match=r"dataset.root: required"):
        build_dataset(compose(["dataset=pie_bench"]).dataset)


# --- through the runner ---------------------------------------------------------------------------------------
def test_run_over_an_official_layout_records_bad_samples_and_goes_on(tmp_path, model_cache):
    """`emb run dataset=editing_mask`: the bad line fails alone, the others are scored, the checksum is stamped."""
    import pandas as pd

    from benchmark.runner import run

    make_editing_mask(tmp_path / "em", extra_lines=["400 <> A photo of a cat. <> purple dragon <> a dog"])
    cfg = compose(["method=identity", "dataset=editing_mask"], tmp_path, model_cache)
    with open_dict(cfg):
        cfg.dataset.root = str(tmp_path / "em")
        cfg.dataset.subsets = ["imagen"]
    run(cfg, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    ds = build_dataset(cfg.dataset)
    assert results["dataset"]["checksum"] == ds.checksum() and results["dataset"]["name"] == "editing_mask"
    rows = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    status = rows.drop_duplicates("sample_id").set_index("sample_id")["status"]
    assert (status == "ok").sum() == len(IMAGEN_LINES) and status["imagen-400"] == "failed"


@pytest.mark.parametrize(
    ("limit", "shard", "message"),
    [
        ("abc", None, "dataset.limit='abc': expected a whole number (or null for all samples)"),
        (None, "1-4", "dataset.shard='1-4': expected 'i/n', e.g. 0/4"),
        (None, "4/4", "dataset.shard='4/4': need 0 <= i < n"),
    ],
)
def test_bad_limit_or_shard_is_one_line_naming_the_key(limit, shard, message, tmp_path):
    ds, _ = BUILDERS["synthetic"](tmp_path)
    with pytest.raises(ValueError) as err:
        list(select(ds.refs(), limit=limit, shard=shard))
    assert str(err.value) == message
