"""Any Hugging Face ``datasets`` dataset with a column mapping to our fields.

``path`` is a hub id or a local folder: a folder written by ``Dataset.save_to_disk`` is opened with
``load_from_disk``; anything else goes through ``datasets.load_dataset(path, name, split=..., streaming=...)``
(a local folder of parquet/arrow/csv/json files or an image folder works offline). Image and mask columns may hold
``datasets.Image`` values, raw bytes, file paths (relative to ``image_root``) or arrays; they are read undecoded and
decoded only in ``load()``, so iterating the references never decodes an image.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.datasets.base import EditDataset, SampleRef, clean_id, mask_from_image, spec_checksum
from benchmark.registry import DATASETS
from benchmark.types import EditSample, SampleError, error_line

# our field → default column name (None = not in the dataset)
DEFAULT_COLUMNS: dict[str, str | None] = {
    "id": None,
    "image": "image",
    "mask": "mask",
    "source_prompt": "source_prompt",
    "target_prompt": "target_prompt",
    "edit_words": None,
    "source_word": None,
    "target_word": None,
    "instruction": None,
    "edit_type": None,
    "target_image": None,
}
REQUIRED_FIELDS = ("image", "mask", "target_prompt")
IMAGE_FIELDS = ("image", "mask", "target_image")


def _is_save_to_disk(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


@DATASETS.register("hf")
class HFDataset(EditDataset):
    name = "hf"

    def __init__(
        self,
        path: str,
        config_name: str | None = None,
        split: str = "train",
        streaming: bool = False,
        data_files: Any = None,
        data_dir: str | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        columns: dict[str, str | None] | None = None,
        meta_columns: list[str] | None = None,
        image_root: str | None = None,
        mask_threshold: int = 127,
        default_edit_type: str = "unknown",
    ) -> None:
        unknown = set(columns or {}) - set(DEFAULT_COLUMNS)
        if unknown:
            known = ", ".join(DEFAULT_COLUMNS)
            raise ValueError(f"dataset.columns: unknown field(s) {sorted(unknown)}; known: {known}")
        self.path = str(path)
        self.config_name = config_name
        self.split = split
        self.streaming = bool(streaming)
        self.data_files = data_files
        self.data_dir = data_dir
        self.revision = revision
        self.cache_dir = cache_dir
        self.columns = {**DEFAULT_COLUMNS, **(columns or {})}
        self.meta_columns = list(meta_columns or [])
        local = Path(self.path).expanduser()
        self.local = local if local.exists() else None
        self.image_root = Path(image_root).expanduser() if image_root else self.local
        self.mask_threshold = int(mask_threshold)
        self.default_edit_type = default_edit_type
        for fld in REQUIRED_FIELDS:
            if not self.columns.get(fld):
                raise ValueError(f"dataset.columns.{fld}: required (the column holding the sample's {fld})")
        self.ds = self._open()
        self._check_columns()

    # --- opening ---------------------------------------------------------------------------------------------
    def _open(self):
        import datasets

        where = f"dataset.path='{self.path}'"
        if self.local is not None and _is_save_to_disk(self.local):
            ds = datasets.load_from_disk(str(self.local))
            if isinstance(ds, datasets.DatasetDict):
                if self.split not in ds:
                    raise ValueError(f"{where}: no split '{self.split}' (splits: {', '.join(ds)})")
                ds = ds[self.split]
            if self.streaming:
                ds = ds.to_iterable_dataset()
        else:
            kwargs = {
                k: v
                for k, v in (
                    ("data_files", self.data_files),
                    ("data_dir", self.data_dir),
                    ("revision", self.revision),
                    ("cache_dir", self.cache_dir),
                )
                if v is not None
            }
            try:
                ds = datasets.load_dataset(
                    self.path, self.config_name, split=self.split, streaming=self.streaming, **kwargs
                )
            except (ConnectionError, FileNotFoundError, OSError) as err:
                first = error_line(err)
                hint = (
                    "not found on the Hub or the Hub is unreachable"
                    if self.local is None
                    else "cannot be read as a dataset folder"
                )
                raise FileNotFoundError(
                    f"{where}: {hint} ({type(err).__name__}: {first}); offline, download it elsewhere with "
                    f"datasets.load_dataset(...).save_to_disk(DIR) and set dataset.path=DIR (see data/hf.md)"
                ) from err
            except ValueError as err:
                raise ValueError(f"{where}: {str(err).strip().splitlines()[0]}") from err
        # read image-like columns undecoded: bytes/paths travel in the refs, pixels only in load()
        features = getattr(ds, "features", None) or {}
        for fld in IMAGE_FIELDS:
            col = self.columns.get(fld)
            if col and col in features and isinstance(features[col], datasets.Image):
                ds = ds.cast_column(col, datasets.Image(decode=False))
        return ds

    def _available_columns(self) -> list[str] | None:
        names = getattr(self.ds, "column_names", None)
        if names is None:
            features = getattr(self.ds, "features", None)
            names = list(features) if features else None
        return names

    def _check_columns(self) -> None:
        names = self._available_columns()
        if names is None:  # a stream without declared features: columns are checked per row
            return
        wanted = [(f, c) for f, c in self.columns.items() if c] + [("meta_columns", c) for c in self.meta_columns]
        for fld, col in wanted:
            if col not in names:
                raise ValueError(
                    f"dataset.columns.{fld}='{col}': no such column in {self.path} (columns: {', '.join(names)})"
                )

    # --- iteration -------------------------------------------------------------------------------------------
    def refs(self) -> Iterator[SampleRef]:
        id_col = self.columns.get("id")
        if not self.streaming:
            # random access: the refs hold a row index only; only the id column is read while iterating
            for i, sid in enumerate(self._ids()):
                where = f"{self.path}[{self.split}][{i}]"
                yield SampleRef(
                    id=sid, load=lambda i=i, where=where, sid=sid: self._sample(self.ds[i], sid, where), source=where
                )
        else:
            # a stream: each ref carries its (undecoded) row; the iterator never holds more than one
            for i, row in enumerate(self.ds):
                sid = clean_id(str(row[id_col])) if id_col and id_col in row else clean_id(f"{self.split}-{i:06d}")
                where = f"{self.path}[{self.split}][{i}]"
                yield SampleRef(
                    id=sid, load=lambda row=row, where=where, sid=sid: self._sample(row, sid, where), source=where
                )

    def _ids(self) -> Iterator[str]:
        id_col = self.columns.get("id")
        if not id_col:
            yield from (clean_id(f"{self.split}-{i:06d}") for i in range(len(self.ds)))  # split may be "train[:10%]"
            return
        for batch in self.ds.select_columns([id_col]).iter(batch_size=1000):
            # a column holds any text ("a/b", "", spaces): ids name folders, so unsafe ones are cleaned, not rejected
            yield from (clean_id(str(v)) for v in batch[id_col])

    def _value(self, row: dict[str, Any], fld: str, where: str) -> Any:
        col = self.columns.get(fld)
        if not col:
            return None
        if col not in row:
            raise SampleError(f"{where}: field '{col}' (dataset.columns.{fld}): missing")
        return row[col]

    def _image(self, value: Any, fld: str, where: str) -> Image.Image:
        col = self.columns[fld]
        try:
            if isinstance(value, Image.Image):
                im = value
            elif isinstance(value, dict) and (value.get("bytes") or value.get("path")):
                if value.get("bytes"):
                    im = Image.open(io.BytesIO(value["bytes"]))
                else:
                    im = Image.open(self._resolve(value["path"]))
            elif isinstance(value, bytes | bytearray):
                im = Image.open(io.BytesIO(value))
            elif isinstance(value, str | Path):
                im = Image.open(self._resolve(value))
            elif isinstance(value, np.ndarray | list):
                arr = np.asarray(value)
                if arr.dtype == bool or (arr.size and arr.max() <= 1):
                    arr = arr.astype(np.uint8) * 255
                im = Image.fromarray(arr.astype(np.uint8))
            else:
                raise SampleError(
                    f"{where}: field '{col}' (dataset.columns.{fld}): empty or unsupported value "
                    f"({type(value).__name__})"
                )
            im.load()
            return im
        except FileNotFoundError as err:
            raise SampleError(f"{where}: field '{col}': file not found ({err.filename})") from err
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError) as err:
            raise SampleError(f"{where}: field '{col}': cannot decode image ({type(err).__name__}: {err})") from err

    def _resolve(self, p: str | Path) -> Path:
        path = Path(p).expanduser()
        if not path.is_absolute() and self.image_root is not None:
            path = self.image_root / path
        return path

    def _sample(self, row: dict[str, Any], sid: str, where: str) -> EditSample:
        for fld in REQUIRED_FIELDS:
            v = self._value(row, fld, where)
            if v is None or (isinstance(v, str) and not v.strip()):
                raise SampleError(f"{where}: field '{self.columns[fld]}' (dataset.columns.{fld}): missing")
        image = self._image(self._value(row, "image", where), "image", where).convert("RGB")
        mask_image = self._image(self._value(row, "mask", where), "mask", where)
        mask = mask_from_image(mask_image, self.mask_threshold)
        target_value = self._value(row, "target_image", where)
        target = self._image(target_value, "target_image", where).convert("RGB") if target_value is not None else None
        words = self._value(row, "edit_words", where)
        if words is not None:
            if not (isinstance(words, list | tuple) and len(words) == 2):
                raise SampleError(
                    f"{where}: field '{self.columns['edit_words']}': expected [source, target], got {words!r}"
                )
            edit_words = (str(words[0]), str(words[1]))
        else:
            edit_words = (
                str(self._value(row, "source_word", where) or ""),
                str(self._value(row, "target_word", where) or ""),
            )
        meta = {
            "source": where,
            "image_path": f"{where}.{self.columns['image']}",
            "mask_path": f"{where}.{self.columns['mask']}",
        }
        for col in self.meta_columns:
            if col in row:
                v = row[col]
                meta[col] = v.item() if isinstance(v, np.generic) else v
        return EditSample(
            id=sid,
            image=image,
            mask=mask,
            source_prompt=str(self._value(row, "source_prompt", where) or ""),
            target_prompt=str(self._value(row, "target_prompt", where)),
            edit_words=edit_words,
            instruction=(str(v) if (v := self._value(row, "instruction", where)) else None),
            edit_type=str(self._value(row, "edit_type", where) or self.default_edit_type),
            meta=meta,
            target_image=target,
        )

    # --- identity --------------------------------------------------------------------------------------------
    def checksum(self) -> str:
        spec: dict[str, Any] = {
            "loader": self.name,
            "path": self.path if self.local is None else self.local.name,
            "config_name": self.config_name,
            "split": self.split,
            "data_files": self.data_files,
            "data_dir": self.data_dir,
            "revision": self.revision,
            "columns": self.columns,
            "meta_columns": self.meta_columns,
            "mask_threshold": self.mask_threshold,
        }
        fingerprint = getattr(self.ds, "_fingerprint", None)
        if fingerprint is not None and not self.streaming:
            spec["fingerprint"] = fingerprint  # datasets' own hash of the data files and transforms
        elif self.local is not None:
            # a stream has no fingerprint: use the local files' names and sizes (hashing GBs would defeat streaming)
            files = [self.local] if self.local.is_file() else sorted(p for p in self.local.rglob("*") if p.is_file())
            spec["files"] = {
                str(p.relative_to(self.local) if p != self.local else p.name): p.stat().st_size for p in files
            }
        return spec_checksum(spec)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "config_name": self.config_name,
            "split": self.split,
            "streaming": self.streaming,
            "fingerprint": None if self.streaming else getattr(self.ds, "_fingerprint", None),
            "columns": {k: v for k, v in self.columns.items() if v},
        }
