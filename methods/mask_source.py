"""Where a mask-driven method (``blended_latent``, ``gt_inpaint``) takes its mask from.

- ``gt``: the sample's ground-truth mask (the oracle setting);
- ``file``: ``<mask_dir>/<sample id>.png`` (white = edit; grey levels are kept as the soft mask);
- ``method``: another finished run's output for the same sample, ``<mask_run_dir>/samples/<mask_method>/<id>/``
  (its ``mask.png``, or its ``soft_mask.npz`` re-binarised at ``mask_threshold``), e.g. Blended Latent Diffusion
  driven by InstDiffEdit's masks.

A missing file fails that sample with one line naming the file. ``fingerprint`` hashes the bytes read, so the
sample cache never reuses a result made from a different mask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.adapter import MethodSettings, setting
from benchmark.rundir import MASK_FILE, SOFT_MASK_FILE, RunFolder
from benchmark.types import EditSample, MissingInputError, SampleError

MASK_SOURCES = ("gt", "file", "method")


@dataclass(frozen=True)
class MaskInput:
    """A mask at its own resolution: ``soft`` float32 in [0, 1] and its binarisation ``binary``."""

    soft: np.ndarray
    binary: np.ndarray
    origin: str


@dataclass(frozen=True)
class MaskSourceSettings(MethodSettings):
    """Where a mask-driven method takes its mask from (the settings of ``MaskSource``)."""

    mask_source: str = setting(
        "gt",
        "ours",
        "where the mask comes from: gt (the dataset's mask), file (mask_dir/<sample id>.png) or method (another "
        "run's output: mask_run_dir/samples/<mask_method>/<id>/mask.png, or its soft_mask.npz binarised at "
        "mask_threshold)",
    )
    mask_dir: str | None = setting(None, "ours", "mask_source=file: the folder of <sample id>.png masks")
    mask_run_dir: str | None = setting(None, "ours", "mask_source=method: the finished run to take masks from")
    mask_method: str | None = setting(None, "ours", "mask_source=method: the method of that run whose masks to use")
    mask_threshold: float | None = setting(
        None,
        "ours",
        "null: the stored binary mask (a PNG's grey levels > 0.5); a number: re-binarise at it (mask_source=method: "
        "the stored soft mask)",
    )

    def check(self) -> None:
        """A wrong combination is one line naming the setting."""
        super().check()
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source='{self.mask_source}': use one of {', '.join(MASK_SOURCES)}")
        if self.mask_source == "file" and not self.mask_dir:
            raise ValueError("mask_dir: required with mask_source=file (a folder of <sample id>.png)")
        if self.mask_source == "method" and not (self.mask_run_dir and self.mask_method):
            raise ValueError(
                "mask_run_dir and mask_method: required with mask_source=method (a finished run directory and the "
                "method whose masks to use)"
            )
        if self.mask_source == "method" and not Path(str(self.mask_run_dir)).expanduser().is_dir():
            raise ValueError(f"mask_run_dir='{self.mask_run_dir}': no such run directory")
        if self.mask_source == "file" and not Path(str(self.mask_dir)).expanduser().is_dir():
            raise ValueError(f"mask_dir='{self.mask_dir}': no such directory")


@dataclass(frozen=True)
class MaskSource:
    kind: str = "gt"
    mask_dir: str | None = None
    run_dir: str | None = None
    method: str | None = None
    threshold: float | None = None

    @classmethod
    def from_settings(cls, settings: MaskSourceSettings) -> MaskSource:
        """The mask source of a method's (checked) settings."""
        s = settings
        return cls(s.mask_source, s.mask_dir, s.mask_run_dir, s.mask_method, s.mask_threshold)

    @property
    def needs_gt(self) -> bool:
        return self.kind == "gt"

    def files(self, sample: EditSample) -> list[Path]:
        """The files this source reads for ``sample`` (empty for ``gt``)."""
        if self.kind == "file":
            return [Path(str(self.mask_dir)).expanduser() / f"{sample.id}.png"]
        if self.kind == "method":
            folder = RunFolder(Path(str(self.run_dir)).expanduser()).sample_dir(str(self.method), sample.id)
            return [folder / (SOFT_MASK_FILE if self.threshold is not None else MASK_FILE)]
        return []

    def fingerprint(self, sample: EditSample) -> str | None:
        if self.kind == "gt":
            return None
        h = hashlib.sha256()
        for path in self.files(sample):
            h.update(str(path.name).encode())
            h.update(path.read_bytes() if path.exists() else b"<missing>")
        return h.hexdigest()

    def load(self, sample: EditSample) -> MaskInput:
        if self.kind == "gt":
            if sample.mask is None or not sample.mask.any():
                where = sample.meta.get("source", sample.id)
                raise MissingInputError(f"{where}: field 'mask': mask_source=gt needs a non-empty GT mask")
            gt = np.asarray(sample.mask, dtype=bool)
            return MaskInput(gt.astype(np.float32), gt, "gt")
        path = self.files(sample)[0]
        field = f"mask (mask_source={self.kind})"
        if not path.exists():
            hint = (
                f" (run has no output of method '{self.method}' for sample {sample.id})"
                if self.kind == "method"
                else ""
            )
            raise SampleError(f"{path}: field '{field}': file not found{hint}")
        if path.suffix == ".npz":
            try:
                with np.load(path) as z:
                    soft = np.asarray(z["soft_mask"], dtype=np.float32)
            except (OSError, KeyError, ValueError) as err:
                raise SampleError(f"{path}: field 'soft_mask': cannot read ({type(err).__name__}: {err})") from err
            return MaskInput(soft, soft > float(self.threshold), f"{path}")
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise SampleError(f"{path}: field '{field}': cannot decode mask ({type(err).__name__}: {err})") from err
        thr = 0.5 if self.threshold is None else self.threshold
        return MaskInput(arr, arr > thr, f"{path}")
