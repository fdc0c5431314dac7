"""Image preparation shared by the image metrics: size rule, resampling, regions, batching by shape.

Size rule (explicit in every preset): ``resolution: null`` scores at the source image's size, resizing the edited
image (and a reference edit) to it with ``resample`` when they differ; ``resolution: N`` resizes every image to
N×N. Images are resized as uint8 (PIL), then scaled to float [0, 1] by /255 exactly like PIE-Bench's evaluator.
The GT mask is resized with nearest neighbour. ``mask_border: k`` marks the outer k pixels of the mask as edit
region (PIE-Bench's decoder sets the first/last rows and columns to 1 against annotation errors at the border).
Prepared tensors are memoised on the ScoreItem, so every metric of a batch reuses them.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from benchmark.metrics.base import REFERENCES, Metric, ScoreItem, value_name

log = logging.getLogger("emb")

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def check_resample(resample: str, who: str) -> str:
    if resample not in RESAMPLE:
        raise ValueError(f"metric '{who}': resample='{resample}' unknown; use one of {', '.join(RESAMPLE)}")
    return resample


def resized(image: Image.Image, size: tuple[int, int], resample: str) -> Image.Image:
    return image if image.size == size else image.resize(size, RESAMPLE[resample])


def mask_at(mask: np.ndarray, size: tuple[int, int], border: int = 0) -> np.ndarray:
    """A bool mask resized (nearest) to (width, height), with the outer ``border`` pixels set to True."""
    m = np.asarray(mask, dtype=bool)
    if m.shape[::-1] != tuple(size):
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
    if border > 0:
        m = m.copy()
        m[:border, :] = m[-border:, :] = True
        m[:, :border] = m[:, -border:] = True
    return m


def to_unit(image: Image.Image) -> torch.Tensor:
    """PIL RGB → float32 CHW in [0, 1] (uint8 / 255)."""
    arr = np.array(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass
class Pair:
    """An edited image and what it is compared with, at the scoring size; ``mask`` True = edit region."""

    edited: torch.Tensor  # 3×H×W float [0, 1]
    reference: torch.Tensor  # 3×H×W float [0, 1]
    mask: torch.Tensor | None  # H×W bool


def reference_image(item: ScoreItem, reference: str) -> Image.Image | None:
    return item.sample.image if reference == "source" else item.sample.target_image


def scoring_size(item: ScoreItem, resolution: int | None) -> tuple[int, int]:
    return (int(resolution), int(resolution)) if resolution else item.sample.image.size


def scoring_pair(
    item: ScoreItem, reference: str, resolution: int | None, resample: str, mask_border: int = 0
) -> Pair | None:
    """The (edited, reference, mask) tensors of an item, or None when the edited or reference image is absent."""
    key = ("pair", reference, resolution, resample, mask_border)
    if key not in item.cache:
        ref = reference_image(item, reference)
        if item.output.image is None or ref is None:
            item.cache[key] = None
        else:
            size = scoring_size(item, resolution)
            mask = None
            if item.sample.mask is not None:
                mask = torch.from_numpy(mask_at(item.sample.mask, size, mask_border))
            item.cache[key] = Pair(
                to_unit(resized(item.output.image, size, resample)), to_unit(resized(ref, size, resample)), mask
            )
    return item.cache[key]


def region_is_empty(mask: torch.Tensor | None, region: str) -> bool:
    if region == "whole":
        return False
    if mask is None:
        return True
    return not bool((~mask).any()) if region == "background" else not bool(mask.any())


@dataclass
class PairBatch:
    """Pairs of the same size stacked for one batched call; ``index`` = positions of the items in the batch."""

    index: list[int]
    edited: torch.Tensor  # N×3×H×W
    reference: torch.Tensor  # N×3×H×W
    mask: torch.Tensor  # N×H×W bool (all False where a sample has no GT mask)
    has_mask: list[bool]

    def empty(self, region: str) -> list[bool]:
        """Per item: is the region empty (or undefined for lack of a GT mask)? Its values are then NaN."""
        if region == "whole":
            return [False] * len(self.index)
        return [not h or region_is_empty(m, region) for h, m in zip(self.has_mask, self.mask, strict=True)]

    def weight(self, region: str) -> torch.Tensor | None:
        """N×1×H×W float weights of the region (None for whole)."""
        if region == "whole":
            return None
        m = self.mask.to(torch.float32)[:, None]
        return 1.0 - m if region == "background" else m


def pair_batches(
    items: list[ScoreItem], reference: str, resolution: int | None, resample: str, mask_border: int = 0
) -> list[PairBatch]:
    """The items' pairs grouped by size and stacked; items without an edited or reference image are left out."""
    groups: dict[tuple[int, ...], list[tuple[int, Pair]]] = defaultdict(list)
    for i, item in enumerate(items):
        pair = scoring_pair(item, reference, resolution, resample, mask_border)
        if pair is not None:
            groups[tuple(pair.edited.shape)].append((i, pair))
    out = []
    for members in groups.values():
        h, w = members[0][1].edited.shape[1:]
        masks = [p.mask if p.mask is not None else torch.zeros(h, w, dtype=torch.bool) for _, p in members]
        out.append(
            PairBatch(
                [i for i, _ in members],
                torch.stack([p.edited for _, p in members]),
                torch.stack([p.reference for _, p in members]),
                torch.stack(masks),
                [p.mask is not None for _, p in members],
            )
        )
    return out


def chunks(n: int, per_item_pixels: int, max_pixels: int, max_items: int | None = None) -> list[slice]:
    """Slices of 0..n so that one call handles at most ``max_pixels`` pixels (bounds memory at large sizes)."""
    step = max(1, max_pixels // max(1, per_item_pixels))
    if max_items:
        step = min(step, max_items)
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


MODES = ("select", "multiply")


class PairMetric(Metric):
    """A metric of (edited, reference) image pairs per region.

    ``mode: select`` (default) scores only the region's pixels: the metric's per-pixel map (squared error, SSIM map,
    LPIPS spatial map) averaged over the region; context outside the region still enters SSIM windows and LPIPS
    receptive fields. ``mode: multiply`` is PIE-Bench's rule: both images are multiplied by the region mask
    (background: 1 − mask) and the metric is computed on the whole image, zeros included. ``whole`` is the same in
    both modes. An empty region (or a sample without GT mask) gives NaN.
    """

    family: ClassVar[str] = "pair"
    modes: ClassVar[tuple[str, ...]] = MODES
    needs_image = True
    # at most this many image pairs per network call (None: bounded by pixel count only)
    max_items_per_call: ClassVar[int | None] = None

    def __init__(
        self,
        region: str | list[str] = "whole",
        reference: str = "source",
        mode: str = "select",
        resolution: int | None = None,
        resample: str = "bicubic",
        mask_border: int = 0,
        prefix: str = "",
        **params: Any,
    ) -> None:
        super().__init__(
            region,
            reference=reference,
            mode=mode,
            resolution=resolution,
            resample=resample,
            mask_border=mask_border,
            prefix=prefix,
            **params,
        )
        if reference not in REFERENCES:
            raise ValueError(f"metric '{self.name}': reference='{reference}'; use one of {', '.join(REFERENCES)}")
        if mode not in self.modes:
            raise ValueError(f"metric '{self.name}': mode='{mode}' not supported; use one of {', '.join(self.modes)}")
        self.reference, self.mode, self.resolution = reference, mode, resolution
        self.resample = check_resample(resample, self.name)
        self.mask_border, self.prefix = int(mask_border), prefix
        self.missing_reference = 0

    def names(self) -> dict[str, str]:
        return {r: value_name(self.family, r, self.reference, self.prefix) for r in self.regions}

    def directions(self) -> dict[str, bool]:
        return {name: self.higher_is_better[self.family] for name in self.names().values()}

    # --- what a family implements -------------------------------------------------------------------------------
    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image value over whole N×3×H×W images in [0, 1] (on the metric's device)."""
        raise NotImplementedError

    def pixel_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """N×H×W per-pixel map whose region mean is the ``select`` value."""
        raise NotImplementedError

    def from_map(self, pixel_map: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-image value from a pixel map and N×H×W region weights (default: the weighted mean)."""
        return (pixel_map * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=1e-12)

    # --- batching ---------------------------------------------------------------------------------------------
    def pixels_per_call(self) -> int:
        """Pixels per network call. A GPU wants big batches; on a CPU a big batch spills the caches and page-faults
        fresh memory (measured: slower than one image per call), so CPU calls take about one 512×512 image
        (smaller images are still stacked)."""
        return (1 if self.device.type == "cpu" else 16) * 512 * 512

    def _prepared(self, t: torch.Tensor) -> torch.Tensor:
        # channels-last is the layout oneDNN / cuDNN convolutions run fastest in: torchmetrics' SSIM gives
        # bit-identical values and is 2.5× faster on a CPU, LPIPS agrees to float rounding and is 2.7× faster
        return t.to(self.device).contiguous(memory_format=torch.channels_last)

    def _calls(self, fn: Any, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = x.shape
        outs = []
        with torch.no_grad():
            for s in chunks(n, h * w, self.pixels_per_call(), self.max_items_per_call):
                xs, ys = (x[s], y[s]) if weight is None else (x[s] * weight[s], y[s] * weight[s])
                outs.append(fn(self._prepared(xs), self._prepared(ys)).detach().to("cpu", torch.float64))
        return torch.cat(outs)

    def score_batch(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        x, y = batch.edited, batch.reference
        out: dict[str, torch.Tensor] = {}
        by_map = [r for r in self.regions if r != "whole" and self.mode == "select"]
        for r in self.regions:
            if r not in by_map:  # whole, or a region by the multiply rule: the metric on (masked) whole images
                out[r] = self._calls(self.whole, x, y, batch.weight(r))
        if by_map:
            pixel_map = self._calls(self.pixel_map, x, y, None)
            for r in by_map:
                out[r] = self.from_map(pixel_map, batch.weight(r)[:, 0].to(torch.float64))
        return out

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        rows: list[dict[str, float]] = [{} for _ in items]
        names = self.names()
        batches = pair_batches(items, self.reference, self.resolution, self.resample, self.mask_border)
        scored = sum(len(b.index) for b in batches)
        self.missing_reference += sum(1 for it in items if it.output.image is not None) - scored
        for batch in batches:
            for region, values in self.score_batch(batch).items():
                empty = batch.empty(region)
                for j, i in enumerate(batch.index):
                    rows[i][names[region]] = math.nan if empty[j] else float(values[j])
        return rows

    def compute(self) -> dict[str, float]:
        if self.missing_reference:
            log.info(
                "metric %s (reference=%s): %d samples have no %s image; their values are left out",
                self.name,
                self.reference,
                self.missing_reference,
                "target" if self.reference == "target" else "source",
            )
        return {}

    def reset(self) -> None:
        self.missing_reference = 0
