"""Tiny datasets in each official layout, written to a temporary folder (tests only; no network, no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 16  # image side of the tiny fixtures


def rgb(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    """A deterministic noise image (w, h)."""
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


def rect_mask(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """A non-empty rectangle mask (h, w) that differs per seed."""
    w, h = size
    m = np.zeros((h, w), dtype=bool)
    x0, y0 = seed % (w // 2), (seed * 3) % (h // 2)
    m[y0 : y0 + h // 3, x0 : x0 + w // 3] = True
    return m


def save_mask(mask: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


# --- Editing-Mask -----------------------------------------------------------------------------------------------
IMAGEN_LINES = [
    (
        "5",
        "A photo of a Persian cat wearing a sunglasses and red shirt riding a bike on a beach.",
        "Persian cat",
        "a Shiba Inu dog",
    ),
    (
        "7",
        "A photo of a Shiba Inu dog wearing a sunglasses and black leather jacket playing a guitar on top of a "
        "mountain.",
        "on top of a mountain",
        "on a beach",
    ),
    (
        "9",
        "An oil painting of a fuzzy panda wearing a cowboy hat and red shirt riding a bike on top of a mountain.",
        "riding a bike",
        "go skateboarding",
    ),
    (
        "33",
        "A photo of a raccoon wearing a sunglasses and black leather jacket riding a bike on top of a mountain.",
        "raccoon",
        "British Shorthair cat",
    ),
    (
        "54",
        "A photo of a Shiba Inu dog wearing a sunglasses and black leather jacket skateboarding on a beach.",
        "black leather jacket",
        "red shirt",
    ),
    (
        "90",
        "A photo of a Shiba Inu dog wearing a cowboy hat and red shirt skateboarding in a garden.",
        "wearing a cowboy hat",
        "wearing a sunglasses",
    ),
    (
        "91",
        "A photo of a fuzzy panda wearing a sunglasses and red shirt riding a bike on top of a mountain.",
        "FUZZY panda",
        "a Persian cat",
    ),
]
IMAGENET_LINES = [
    ("ILSVRC2012_val_00028602.JPEG", "beagle", "Afghan hound"),
    ("ILSVRC2012_val_00024508.JPEG", "standard schnauzer", "American Staffordshire terrier"),
    ("ILSVRC2012_val_00010418.JPEG", "lesser panda", "American black bear"),
    ("ILSVRC2012_val_00017155.JPEG", "brown bear", "American black bear"),
    ("ILSVRC2012_val_00009312.JPEG", "red wolf", "Arctic fox"),
    ("ILSVRC2012_val_00041718.JPEG", "wire-haired fox terrier", "Border terrier"),
    ("ILSVRC2012_val_00000722.JPEG", "plastic bag", "backpack"),
]


def make_editing_mask(root: Path, extra_lines: list[str] = ()) -> dict[str, np.ndarray]:
    """The official layout: dataset_txt/Editing-Mask_list.txt (CRLF, both line shapes) and
    dataset/Editing-Mask/{image,mask}/. Returns sample id → GT mask."""
    image_dir = root / "dataset" / "Editing-Mask" / "image"
    mask_dir = root / "dataset" / "Editing-Mask" / "mask"
    image_dir.mkdir(parents=True)
    masks = {}
    lines = []
    for k, (sid, caption, phrase, rep) in enumerate(IMAGEN_LINES):
        rgb(k).save(image_dir / f"{sid}.jpg", quality=95)
        masks[f"imagen-{sid}"] = rect_mask(k)
        save_mask(masks[f"imagen-{sid}"], mask_dir / f"{sid}.png")
        lines.append(" <> ".join((sid, caption, phrase, rep)))
    for k, (file, src, tgt) in enumerate(IMAGENET_LINES, start=100):
        stem = Path(file).stem
        rgb(k, (SIZE + 4, SIZE)).save(image_dir / file, format="JPEG", quality=95)
        masks[f"imagenet-{stem}"] = rect_mask(k, (SIZE + 4, SIZE))
        save_mask(masks[f"imagenet-{stem}"], mask_dir / f"{stem}.png")
        lines.append(" <> ".join((file, src, tgt)))
    (root / "dataset_txt").mkdir()
    # the official file has CRLF line ends
    (root / "dataset_txt" / "Editing-Mask_list.txt").write_bytes("\r\n".join([*lines, *extra_lines]).encode() + b"\r\n")
    return masks


# --- PIE-Bench --------------------------------------------------------------------------------------------------
def pie_record(k: int, type_id: int, rle: list[int], image_path: str) -> dict:
    return {
        "image_path": image_path,
        "original_prompt": f"a [cat] sitting on a bench number {k}",
        "editing_prompt": f"a [dog] sitting on a bench number {k}",
        "editing_instruction": "change the cat to a dog",
        "editing_type_id": str(type_id),
        "blended_word": "cat dog",
        "mask": rle,
    }


def hand_mask_and_rle(k: int, shape: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """A mask built pixel by pixel and its (start, length) pairs written out by hand, row by row."""
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    rle = []
    y0, x0 = 2 + k % 4, 3 + k % 5
    for y in range(y0, y0 + 5):
        mask[y, x0 : x0 + 6] = True
        rle += [y * w + x0, 6]
    return mask, rle


def make_pie_bench(root: Path, n: int = 14, shape: tuple[int, int] = (SIZE, SIZE)) -> dict[str, np.ndarray]:
    """data/ with mapping_file.json and annotation_images/<type folder>/<id>.jpg. Returns id → raw mask."""
    folders = ["0_random_140", "1_change_object_80", "2_add_object_80", "9_change_style_80"]
    type_ids = [0, 1, 2, 9]
    mapping, masks = {}, {}
    for k in range(n):
        t = k % len(folders)
        key = f"{type_ids[t]}{k:011d}"
        rel = f"{folders[t]}/{key}.jpg"
        (root / "annotation_images" / folders[t]).mkdir(parents=True, exist_ok=True)
        rgb(k, (shape[1], shape[0])).save(root / "annotation_images" / rel, quality=95)
        masks[key], rle = hand_mask_and_rle(k, shape)
        mapping[key] = pie_record(k, type_ids[t], rle, rel)
    (root / "mapping_file.json").write_text(json.dumps(mapping))
    return masks


# --- COCO -------------------------------------------------------------------------------------------------------
COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 17, "name": "cat", "supercategory": "animal"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 19, "name": "horse", "supercategory": "animal"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 6, "name": "bus", "supercategory": "vehicle"},
]


def make_coco(root: Path, n_images: int = 8, size: tuple[int, int] = (40, 30)) -> dict:
    """annotations/instances_val2017.json with polygon annotations and val2017/*.jpg. Returns the JSON."""
    w, h = size
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    ann_id = 1000
    cat_ids = [c["id"] for c in COCO_CATEGORIES]
    for i in range(n_images):
        img_id = 500 + i
        file_name = f"{img_id:012d}.jpg"
        rgb(i, size).save(root / "val2017" / file_name, quality=95)
        images.append({"id": img_id, "file_name": file_name, "height": h, "width": w})
        # a big rectangle, a middle triangle and a tiny square (below the default min area fraction)
        x0, y0 = 2 + i % 3, 3
        big = [x0, y0, x0 + 20, y0, x0 + 20, y0 + 15, x0, y0 + 15]
        tri = [25, 5, 38, 5, 31, 20]
        tiny = [1, 25, 3, 25, 3, 27, 1, 27]
        for poly, area in ((big, 20 * 15), (tri, 13 * 15 / 2), (tiny, 4)):
            xs, ys = poly[0::2], poly[1::2]
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": cat_ids[(i + ann_id) % len(cat_ids)],
                    "segmentation": [[float(v) for v in poly]],
                    "area": float(area),
                    "iscrowd": 0,
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                }
            )
            ann_id += 1
    data = {
        "images": images,
        "annotations": anns,
        "categories": COCO_CATEGORIES,
        "info": {"description": "emb test fixture"},
        "licenses": [],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return data


# --- Hugging Face datasets --------------------------------------------------------------------------------------
def hf_rows(n: int = 14) -> dict[str, list]:
    """Columns with our own names deliberately different, to exercise the column mapping."""
    return {
        "uid": [f"row-{k:03d}" for k in range(n)],
        "picture": [rgb(k) for k in range(n)],
        "region": [Image.fromarray(rect_mask(k).astype(np.uint8) * 255) for k in range(n)],
        "caption": [f"a photo of a cat number {k}" for k in range(n)],
        "edited_caption": [f"a photo of a dog number {k}" for k in range(n)],
        "words": [["cat", "dog"] for _ in range(n)],
        "kind": ["change_object"] * n,
        "difficulty": list(range(n)),
    }


HF_COLUMNS = {
    "id": "uid",
    "image": "picture",
    "mask": "region",
    "source_prompt": "caption",
    "target_prompt": "edited_caption",
    "edit_words": "words",
    "edit_type": "kind",
}


def make_hf(root: Path, n: int = 14, layout: str = "parquet") -> Path:
    """A local HF dataset: parquet files under data/ (what the hub serves), or a save_to_disk folder."""
    import datasets

    features = datasets.Features(
        {
            "uid": datasets.Value("string"),
            "picture": datasets.Image(),
            "region": datasets.Image(),
            "caption": datasets.Value("string"),
            "edited_caption": datasets.Value("string"),
            "words": datasets.Sequence(datasets.Value("string")),
            "kind": datasets.Value("string"),
            "difficulty": datasets.Value("int64"),
        }
    )
    ds = datasets.Dataset.from_dict(hf_rows(n), features=features)
    if layout == "parquet":
        (root / "data").mkdir(parents=True)
        ds.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    else:
        ds.save_to_disk(str(root))
    return root


# --- own format, large --------------------------------------------------------------------------------------------
def make_big_manifest(root: Path, n: int = 10_000) -> None:
    """n manifest lines that all point at one image and one mask (cheap to write, costly to hold decoded)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rgb(0).save(root / "images" / "a.png")
    save_mask(rect_mask(0), root / "masks" / "a.png")
    with open(root / "manifest.jsonl", "w") as f:
        for k in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"s{k:05d}",
                        "image": "images/a.png",
                        "mask": "masks/a.png",
                        "source_prompt": "a cat",
                        "target_prompt": "a dog",
                        "edit_words": ["cat", "dog"],
                        "edit_type": "change_object",
                        "meta": {},
                    }
                )
                + "\n"
            )
