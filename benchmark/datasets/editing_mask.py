"""The official Editing-Mask layout (InstDiffEdit, AAAI 2024): a list file plus image and mask folders.

The list file (``dataset_txt/Editing-Mask_list.txt`` in the InstDiffEdit repository, CRLF line ends) has two line
shapes, fields separated by `` <> ``:

- Imagen:   ``<id> <> <caption> <> <phrase to edit> <> <replacement>``
- ImageNet: ``<ILSVRC2012_val_XXXXXXXX.JPEG> <> <source class> <> <target class>``

Images live in ``image_dir`` (the official scripts read ``dataset/Editing-Mask/image/<id>.jpg`` for Imagen lines and
``.../image/ILSVRC2012_val_XXXXXXXX.JPEG`` for ImageNet lines). The published zip's exact mask file names are not
documented, so image and mask names are lists of file-name templates tried in order (see conf/dataset/editing_mask.yaml
and data/editing_mask.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.datasets.base import (
    EditDataset,
    SampleRef,
    failing_load,
    first_existing,
    load_mask,
    load_rgb,
    sha256_file,
    spec_checksum,
    under,
)
from benchmark.registry import DATASETS
from benchmark.types import EditSample, SampleError

SEP = " <> "
IMAGEN_FIELDS = ("id", "caption", "phrase", "replacement")
IMAGENET_FIELDS = ("file", "source_class", "target_class")
ARTICLES = ("a", "an", "the")
# placeholders file-name templates may use
TEMPLATE_FIELDS = {"id": "5", "file": "x.JPEG", "stem": "x", "num": "00000001", "short": "00001", "subset": "imagen"}


def replace_phrase(caption: str, phrase: str, replacement: str, merge_articles: bool = True) -> str | None:
    """The caption with the first case-insensitive occurrence of ``phrase`` replaced; None if it does not occur.

    With ``merge_articles``, an article right before the phrase is dropped when the replacement brings its own
    ("A photo of a Persian cat" + "a Shiba Inu dog" → "A photo of a Shiba Inu dog", not "... of a a Shiba ...").
    """
    m = re.search(re.escape(phrase.strip()), caption, flags=re.IGNORECASE)
    if m is None:
        return None
    before, after = caption[: m.start()], caption[m.end() :]
    replacement = replacement.strip()
    if merge_articles:
        rep_words = replacement.split(maxsplit=1)
        prev = re.search(r"(\b\w+)\s+$", before)
        if rep_words and rep_words[0].lower() in ARTICLES and prev and prev.group(1).lower() in ARTICLES:
            before = before[: prev.start(1)]
    return f"{before}{replacement}{after}"


@DATASETS.register("editing_mask")
class EditingMaskDataset(EditDataset):
    name = "editing_mask"

    def __init__(
        self,
        root: str,
        list_file: str = "dataset_txt/Editing-Mask_list.txt",
        image_dir: str = "dataset/Editing-Mask/image",
        mask_dir: str = "dataset/Editing-Mask/mask",
        imagen_image: list[str] | str = ("{id}.jpg", "{id}.png"),
        imagen_mask: list[str] | str = ("{id}.png", "{id}.jpg"),
        imagenet_image: list[str] | str = ("{file}", "{stem}.jpg", "{stem}.png"),
        imagenet_mask: list[str] | str = ("{stem}.png", "{stem}.jpg"),
        subsets: list[str] | tuple[str, ...] = ("imagen", "imagenet"),
        prompt_mode: str = "caption",
        merge_articles: bool = True,
        imagenet_source_template: str = "a photo of a {cls}",
        imagenet_target_template: str = "a photo of a {cls}",
        imagenet_instruction_template: str | None = "turn the {src} into a {tgt}",
        imagen_instruction_template: str | None = "replace {phrase} with {replacement}",
        imagen_edit_types: dict[str, list[str]] | None = None,
        imagen_default_edit_type: str = "imagen",
        imagenet_edit_type: str = "imagenet_class",
        mask_threshold: int = 127,
        encoding: str = "utf-8-sig",
    ) -> None:
        self.root = Path(root).expanduser()
        self.list_file = under(self.root, list_file)
        self.image_dir = under(self.root, image_dir)
        self.mask_dir = under(self.root, mask_dir)
        if not self.list_file.is_file():
            raise FileNotFoundError(
                f"{self.list_file}: Editing-Mask list file not found (dataset.root='{root}', "
                f"dataset.list_file='{list_file}'); see data/editing_mask.md"
            )
        self.templates = {
            ("imagen", "image"): _as_list(imagen_image),
            ("imagen", "mask"): _as_list(imagen_mask),
            ("imagenet", "image"): _as_list(imagenet_image),
            ("imagenet", "mask"): _as_list(imagenet_mask),
        }
        for (subset, kind), templates in self.templates.items():
            for t in templates:
                try:
                    t.format(**TEMPLATE_FIELDS)
                except (KeyError, IndexError, ValueError) as err:
                    raise ValueError(
                        f"dataset.{subset}_{kind}: template '{t}' uses an unknown placeholder ({err}); "
                        f"known: {', '.join('{' + k + '}' for k in TEMPLATE_FIELDS)}"
                    ) from err
        self.subsets = tuple(subsets)
        for s in self.subsets:
            if s not in ("imagen", "imagenet"):
                raise ValueError(f"dataset.subsets: unknown '{s}'; known: imagen, imagenet")
        if prompt_mode not in ("caption", "official"):
            raise ValueError(f"dataset.prompt_mode='{prompt_mode}': expected 'caption' or 'official'")
        self.prompt_mode = prompt_mode
        self.merge_articles = bool(merge_articles)
        self.imagenet_source_template = imagenet_source_template
        self.imagenet_target_template = imagenet_target_template
        self.imagenet_instruction_template = imagenet_instruction_template
        self.imagen_instruction_template = imagen_instruction_template
        self.imagen_edit_types = {k: [p.lower() for p in v] for k, v in (imagen_edit_types or {}).items()}
        self.imagen_default_edit_type = imagen_default_edit_type
        self.imagenet_edit_type = imagenet_edit_type
        self.mask_threshold = int(mask_threshold)
        self.encoding = encoding

    # --- parsing ---------------------------------------------------------------------------------------------
    def refs(self) -> Iterator[SampleRef]:
        # newline=None: universal newlines, so the official CRLF file and LF copies read the same
        with open(self.list_file, encoding=self.encoding, newline=None) as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                where = f"{self.list_file}:{lineno}"
                fields = [x.strip() for x in line.split(SEP)]
                if len(fields) == 4:
                    subset, rec = "imagen", dict(zip(IMAGEN_FIELDS, fields, strict=True))
                    sample_id = f"imagen-{rec['id']}" if rec["id"] else f"line{lineno}"
                elif len(fields) == 3:
                    subset, rec = "imagenet", dict(zip(IMAGENET_FIELDS, fields, strict=True))
                    sample_id = f"imagenet-{Path(rec['file']).stem}" if rec["file"] else f"line{lineno}"
                else:
                    msg = (
                        f"{where}: expected 4 fields (Imagen: id, caption, phrase, replacement) or 3 fields "
                        f"(ImageNet: file, source class, target class) separated by '{SEP}', got {len(fields)}"
                    )
                    yield SampleRef(id=f"line{lineno}", load=failing_load(msg), source=where)
                    continue
                if subset not in self.subsets:
                    continue
                empty = [k for k, v in rec.items() if not v]
                if empty:
                    msg = f"{where}: field '{empty[0]}': empty"
                    yield SampleRef(id=sample_id, load=failing_load(msg), source=where)
                    continue
                yield SampleRef(
                    id=sample_id,
                    load=lambda subset=subset, rec=rec, where=where, sid=sample_id: self._load(subset, rec, where, sid),
                    source=where,
                )

    def _names(self, subset: str, rec: dict[str, str]) -> dict[str, str]:
        if subset == "imagen":
            return {**{k: "" for k in TEMPLATE_FIELDS}, "id": rec["id"], "subset": subset}
        file = rec["file"]
        stem = Path(file).stem
        num = stem.rsplit("_", 1)[-1]
        # the official scripts name ImageNet samples by the last five digits (file name [18:-5])
        return {"id": stem, "file": file, "stem": stem, "num": num, "short": num[-5:], "subset": subset}

    def _find(self, subset: str, kind: str, rec: dict[str, str], where: str) -> Path:
        folder = self.image_dir if kind == "image" else self.mask_dir
        path, tried = first_existing(folder, self.templates[(subset, kind)], self._names(subset, rec))
        if path is None:
            names = ", ".join(p.name for p in tried)
            raise SampleError(
                f"{where}: field '{kind}': no {kind} file in {folder} (tried {names}; "
                f"set dataset.{subset}_{kind} to the layout's file names)"
            )
        return path

    def _load(self, subset: str, rec: dict[str, str], where: str, sample_id: str) -> EditSample:
        if subset == "imagen":
            caption, phrase, replacement = rec["caption"], rec["phrase"], rec["replacement"]
            edited = replace_phrase(caption, phrase, replacement, self.merge_articles)
            if edited is None:
                raise SampleError(f"{where}: field 'phrase': '{phrase}' not found in the caption '{caption}'")
            official = replacement  # the official code conditions on the replacement text alone
            source_prompt, target_prompt = (caption, edited) if self.prompt_mode == "caption" else (phrase, official)
            words = (phrase, replacement)
            edit_type = self._imagen_edit_type(phrase)
            instruction = (
                self.imagen_instruction_template.format(phrase=phrase, replacement=replacement)
                if self.imagen_instruction_template
                else None
            )
        else:
            src, tgt = rec["source_class"], rec["target_class"]
            official = f"a {tgt}"  # the official code's prompt: 'a ' + target class
            if self.prompt_mode == "caption":
                source_prompt = self.imagenet_source_template.format(cls=src)
                target_prompt = self.imagenet_target_template.format(cls=tgt)
            else:
                source_prompt, target_prompt = f"a {src}", official
            words = (src, tgt)
            edit_type = self.imagenet_edit_type
            instruction = (
                self.imagenet_instruction_template.format(src=src, tgt=tgt)
                if self.imagenet_instruction_template
                else None
            )
        image_path = self._find(subset, "image", rec, where)
        mask_path = self._find(subset, "mask", rec, where)
        image = load_rgb(image_path, "image")
        mask = load_mask(mask_path, "mask", threshold=self.mask_threshold)
        return EditSample(
            id=sample_id,
            image=image,
            mask=mask,
            source_prompt=source_prompt,
            target_prompt=target_prompt,
            edit_words=words,
            instruction=instruction,
            edit_type=edit_type,
            meta={
                "source": where,
                "subset": subset,
                "record": rec,
                "official_prompt": official,
                "image_path": str(image_path),
                "mask_path": str(mask_path),
            },
        )

    def _imagen_edit_type(self, phrase: str) -> str:
        p = phrase.lower()
        for edit_type, phrases in self.imagen_edit_types.items():
            if p in phrases:
                return edit_type
        for edit_type, phrases in self.imagen_edit_types.items():
            if any(k in p for k in phrases):
                return edit_type
        return self.imagen_default_edit_type

    # --- identity --------------------------------------------------------------------------------------------
    def _content_options(self) -> dict[str, Any]:
        return {
            "subsets": list(self.subsets),
            "prompt_mode": self.prompt_mode,
            "merge_articles": self.merge_articles,
            "imagenet_source_template": self.imagenet_source_template,
            "imagenet_target_template": self.imagenet_target_template,
            "imagenet_instruction_template": self.imagenet_instruction_template,
            "imagen_instruction_template": self.imagen_instruction_template,
            "imagen_edit_types": self.imagen_edit_types,
            "imagen_default_edit_type": self.imagen_default_edit_type,
            "imagenet_edit_type": self.imagenet_edit_type,
            "mask_threshold": self.mask_threshold,
        }

    def checksum(self) -> str:
        return spec_checksum(
            {
                "loader": self.name,
                "files": {self.list_file.name: sha256_file(self.list_file)},
                "options": self._content_options(),
            }
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "list_file": str(self.list_file),
            "list_file_sha256": sha256_file(self.list_file),
            "image_dir": str(self.image_dir),
            "mask_dir": str(self.mask_dir),
            "prompt_mode": self.prompt_mode,
        }


def _as_list(x: list[str] | tuple[str, ...] | str) -> list[str]:
    return [x] if isinstance(x, str) else [str(t) for t in x]
