"""Image and mask resizing shared by the method adapters."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool or float mask to (width, height)."""
    if mask.shape[1] == size[0] and mask.shape[0] == size[1]:
        return mask
    if mask.dtype == bool:
        im = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        return np.asarray(im) > 127
    im = Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.Resampling.NEAREST)
    return np.asarray(im, dtype=np.float32)


def mask_to_pil(mask: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """A bool/float mask as an L image (white = edit), optionally resized nearest to (width, height)."""
    im = Image.fromarray((np.asarray(mask) > 0.5).astype(np.uint8) * 255)
    return im if size is None or im.size == size else im.resize(size, Image.Resampling.NEAREST)
