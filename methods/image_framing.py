"""What part of a sample a method's model sees, at what size, and the way back to the sample's frame.

The official scripts do not squash a non-square image into a square:

- Prompt-to-Prompt's notebooks (``load_512``) trim the given offsets, centre-crop the longer side to a square
  (offset = (long − short) // 2) and resize that square to 512 (PIL's default filter, bicubic);
- InstructPix2Pix's ``edit_cli.py`` keeps the aspect ratio: factor = R / longer side, then the shorter side is
  rounded *up* to a multiple of 64 (factor = ceil(short·factor / 64)·64 / short) and each side becomes
  floor(side·factor / 64)·64; ``ImageOps.fit`` (Lanczos) centre-crops the small aspect difference away.

A :class:`Framing` holds the crop box and the model's input size. The model's output covers the box only, so it is
mapped back by resizing it to the box and pasting it over the sample (outside the box the sample's own pixels
stay: the method never saw them); a mask is resized to the box (nearest) and is empty outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

Box = tuple[float, float, float, float]  # left, top, right, bottom in the sample's pixels (PIL's order)


@dataclass(frozen=True)
class Framing:
    source_size: tuple[int, int]  # the sample's (width, height)
    box: Box  # the region the model sees
    size: tuple[int, int]  # the model input's (width, height)
    fit: bool = False  # True: ImageOps.fit (Lanczos, fractional box); False: integer crop, then bicubic resize

    @property
    def whole(self) -> bool:
        """The model sees the whole sample (only resized)."""
        return self.box == (0, 0, *self.source_size)

    def model_input(self, image: Image.Image) -> Image.Image:
        if self.fit:
            return ImageOps.fit(image, self.size, method=Image.Resampling.LANCZOS)
        cropped = image if self.whole else image.crop(tuple(int(v) for v in self.box))
        return cropped if cropped.size == self.size else cropped.resize(self.size, Image.Resampling.BICUBIC)

    def paste_box(self) -> tuple[int, int, int, int]:
        """The box rounded to whole pixels: where the model's output goes back."""
        left, top, right, bottom = (int(round(v)) for v in self.box)
        return left, top, right, bottom

    def image_back(self, output: Image.Image, source: Image.Image) -> Image.Image:
        """The model's output in the sample's frame: resized (bicubic) to the box, pasted over the sample."""
        left, top, right, bottom = self.paste_box()
        part = output.resize((right - left, bottom - top), Image.Resampling.BICUBIC)
        if self.whole:
            return part
        framed = source.convert("RGB").copy()
        framed.paste(part, (left, top))
        return framed

    def mask_back(self, mask: np.ndarray) -> np.ndarray:
        """A bool or float mask over the model's view, at the sample's size (nearest); empty outside the box."""
        left, top, right, bottom = self.paste_box()
        size = (right - left, bottom - top)
        if mask.dtype == bool:
            part = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
        else:
            im = Image.fromarray(np.asarray(mask, dtype=np.float32), mode="F")
            part = np.asarray(im.resize(size, Image.Resampling.NEAREST), dtype=np.float32)
        width, height = self.source_size
        framed = np.zeros((height, width), dtype=part.dtype)
        framed[top:bottom, left:right] = part
        return framed


def p2p_framing(source_size: tuple[int, int], side: int, offsets: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Framing:
    """Prompt-to-Prompt's ``load_512`` at ``side``: offsets (left, right, top, bottom) trimmed with the notebook's
    clamping (its ``top`` bound uses ``left``, kept as written), then the centred square of the shorter side."""
    w, h = source_size
    left, right, top, bottom = (int(v) for v in offsets)
    left = min(left, w - 1)
    right = min(right, w - left - 1)
    top = min(top, h - left - 1)
    bottom = min(bottom, h - top - 1)
    x0, y0, x1, y1 = left, top, w - right, h - bottom
    cw, ch = x1 - x0, y1 - y0
    if ch < cw:
        x0 += (cw - ch) // 2
        x1 = x0 + ch
    elif cw < ch:
        y0 += (ch - cw) // 2
        y1 = y0 + cw
    return Framing(source_size, (x0, y0, x1, y1), (side, side))


def ip2p_size(source_size: tuple[int, int], resolution: int = 512) -> tuple[int, int]:
    """InstructPix2Pix ``edit_cli.py``'s model input (width, height) for a sample of ``source_size``."""
    width, height = source_size
    factor = resolution / max(width, height)
    factor = math.ceil(min(width, height) * factor / 64) * 64 / min(width, height)
    return int((width * factor) // 64) * 64, int((height * factor) // 64) * 64


def fit_box(source_size: tuple[int, int], size: tuple[int, int]) -> Box:
    """The centred box ``ImageOps.fit`` (bleed 0) resizes to ``size``: the largest region of ``size``'s aspect."""
    w, h = source_size
    ratio = size[0] / size[1]
    if w / h == ratio:
        cw, ch = float(w), float(h)
    elif w / h > ratio:
        cw, ch = ratio * h, float(h)
    else:
        cw, ch = float(w), w / ratio
    left, top = (w - cw) * 0.5, (h - ch) * 0.5
    return left, top, left + cw, top + ch


def ip2p_framing(source_size: tuple[int, int], resolution: int = 512) -> Framing:
    size = ip2p_size(source_size, resolution)
    return Framing(source_size, fit_box(source_size, size), size, fit=True)
