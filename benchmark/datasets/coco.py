"""COCO instances as an editing dataset: one edit per chosen object annotation.

The instances JSON is read with pycocotools (the index stays in memory, images stay on disk). For every image (by
id), the annotations that pass the filters (category, area fraction, crowd) are taken largest first, up to
``max_edits_per_image``. Each becomes "replace the <category> with a <target>": the GT mask is the object's
``annToMask``; the target category comes from ``replacements`` or is drawn deterministically from ``seed`` and the
annotation id (the same in every process, shard and order).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.datasets.base import (
    EditDataset,
    SampleRef,
    load_rgb,
    sha256_file,
    spec_checksum,
    stable_rng,
    under,
)
from benchmark.registry import DATASETS
from benchmark.types import EditSample, SampleError


@DATASETS.register("coco")
class COCODataset(EditDataset):
    name = "coco"

    def __init__(
        self,
        root: str,
        annotations: str = "annotations/instances_val2017.json",
        images: str = "val2017",
        seed: int = 0,
        categories: list[str] | None = None,
        target_categories: list[str] | None = None,
        same_supercategory: bool = True,
        replacements: dict[str, str] | None = None,
        min_area_fraction: float = 0.05,
        max_area_fraction: float = 0.8,
        max_edits_per_image: int = 1,
        include_crowd: bool = False,
        source_template: str = "a photo of a {category}",
        target_template: str = "a photo of a {target}",
        instruction_template: str | None = "replace the {category} with a {target}",
        edit_type: str = "replace_object",
    ) -> None:
        self.root = Path(root).expanduser()
        self.annotations = under(self.root, annotations)
        self.images = under(self.root, images)
        if not self.annotations.is_file():
            raise FileNotFoundError(
                f"{self.annotations}: COCO instances file not found (dataset.root='{root}', "
                f"dataset.annotations='{annotations}'); see data/coco.md"
            )
        self.seed = int(seed)
        self.categories = list(categories) if categories else None
        self.target_categories = list(target_categories) if target_categories else None
        self.same_supercategory = bool(same_supercategory)
        self.replacements = dict(replacements or {})
        self.min_area_fraction = float(min_area_fraction)
        self.max_area_fraction = float(max_area_fraction)
        self.max_edits_per_image = int(max_edits_per_image)
        self.include_crowd = bool(include_crowd)
        self.source_template = source_template
        self.target_template = target_template
        self.instruction_template = instruction_template
        self.edit_type = edit_type
        for name, template, fields in (
            ("source_template", source_template, {"category": "x", "target": "y"}),
            ("target_template", target_template, {"category": "x", "target": "y"}),
            ("instruction_template", instruction_template or "", {"category": "x", "target": "y"}),
        ):
            try:
                template.format(**fields)
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"dataset.{name}: '{template}' uses an unknown placeholder ({err}); known: {{category}}, {{target}}"
                ) from err
        self._coco = None

    @property
    def coco(self):
        """The pycocotools index, built on first use (pycocotools prints progress: kept off stdout)."""
        if self._coco is None:
            from pycocotools.coco import COCO

            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    self._coco = COCO(str(self.annotations))
            except (ValueError, AssertionError, KeyError, TypeError) as err:
                msg = f"{self.annotations}: not a COCO instances file ({type(err).__name__}: {err})"
                raise ValueError(msg) from err
            names = {c["name"] for c in self._coco.loadCats(self._coco.getCatIds())}
            options = (("categories", self.categories or []), ("target_categories", self.target_categories or []))
            for opt, values in options:
                unknown = [v for v in values if v not in names]
                if unknown:
                    raise ValueError(f"dataset.{opt}: unknown COCO categories {unknown} in {self.annotations}")
        return self._coco

    def _chosen(self, img: dict[str, Any]) -> list[dict[str, Any]]:
        coco = self.coco
        h, w = img.get("height"), img.get("width")
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        keep = []
        for ann in anns:
            if ann.get("iscrowd", 0) and not self.include_crowd:
                continue
            cat = coco.cats.get(ann.get("category_id"), {}).get("name")
            if self.categories is not None and cat not in self.categories:
                continue
            if h and w and "area" in ann:
                frac = float(ann["area"]) / float(h * w)
                if not (self.min_area_fraction <= frac <= self.max_area_fraction):
                    continue
            keep.append(ann)
        keep.sort(key=lambda a: (-float(a.get("area", 0.0)), a["id"]))
        return keep[: self.max_edits_per_image] if self.max_edits_per_image >= 0 else keep

    def target_for(self, ann_id: int, category: dict[str, Any]) -> str:
        """The target phrase of one edit: the replacement map first, else a seeded draw among other categories."""
        name = category["name"]
        if name in self.replacements:
            return str(self.replacements[name])
        cats = list(self.coco.cats.values())
        pool = [c for c in cats if c["name"] != name]
        if self.target_categories is not None:
            pool = [c for c in pool if c["name"] in self.target_categories]
        if self.same_supercategory:
            same = [c for c in pool if c.get("supercategory") == category.get("supercategory")]
            pool = same or pool
        if not pool:
            raise SampleError(f"{self.annotations}: annotation {ann_id}: no target category left for '{name}'")
        pool.sort(key=lambda c: c["id"])
        return str(pool[int(stable_rng("emb-coco", self.seed, ann_id).integers(len(pool)))]["name"])

    def refs(self) -> Iterator[SampleRef]:
        coco = self.coco
        for img_id in sorted(coco.imgs):
            img = coco.imgs[img_id]
            for ann in self._chosen(img):
                where = f"{self.annotations}[annotation id={ann['id']}]"
                yield SampleRef(
                    id=f"coco-{img_id}-{ann['id']}",
                    load=lambda img=img, ann=ann, where=where: self._load(img, ann, where),
                    source=where,
                )

    def _load(self, img: dict[str, Any], ann: dict[str, Any], where: str) -> EditSample:
        coco = self.coco
        category = coco.cats.get(ann.get("category_id"))
        if category is None:
            raise SampleError(f"{where}: field 'category_id': {ann.get('category_id')!r} is not a category")
        if "file_name" not in img:
            raise SampleError(f"{self.annotations}[image id={img['id']}]: field 'file_name': missing")
        if "segmentation" not in ann:
            raise SampleError(f"{where}: field 'segmentation': missing")
        try:
            mask = coco.annToMask(ann).astype(bool)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise SampleError(f"{where}: field 'segmentation': cannot decode ({type(err).__name__}: {err})") from err
        image_path = self.images / img["file_name"]
        image = load_rgb(image_path, "file_name")
        name = category["name"]
        target = self.target_for(ann["id"], category)
        fields = {"category": name, "target": target}
        return EditSample(
            id=f"coco-{img['id']}-{ann['id']}",
            image=image,
            mask=mask,
            source_prompt=self.source_template.format(**fields),
            target_prompt=self.target_template.format(**fields),
            edit_words=(name, target),
            instruction=self.instruction_template.format(**fields) if self.instruction_template else None,
            edit_type=self.edit_type,
            meta={
                "source": where,
                "image_id": img["id"],
                "annotation_id": ann["id"],
                "category": name,
                "supercategory": category.get("supercategory"),
                "area": ann.get("area"),
                "bbox": ann.get("bbox"),
                "image_path": str(image_path),
                "mask_path": f"{where}.segmentation",
            },
        )

    def checksum(self) -> str:
        return spec_checksum(
            {
                "loader": self.name,
                "files": {self.annotations.name: sha256_file(self.annotations)},
                "options": {
                    "seed": self.seed,
                    "categories": self.categories,
                    "target_categories": self.target_categories,
                    "same_supercategory": self.same_supercategory,
                    "replacements": self.replacements,
                    "min_area_fraction": self.min_area_fraction,
                    "max_area_fraction": self.max_area_fraction,
                    "max_edits_per_image": self.max_edits_per_image,
                    "include_crowd": self.include_crowd,
                    "source_template": self.source_template,
                    "target_template": self.target_template,
                    "instruction_template": self.instruction_template,
                    "edit_type": self.edit_type,
                },
            }
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "annotations": str(self.annotations),
            "annotations_sha256": sha256_file(self.annotations),
            "images": str(self.images),
            "seed": self.seed,
        }
