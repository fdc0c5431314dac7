"""Model-card figures drawn with PIL (no plotting dependency): loss curves and a sample grid."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PANEL = (360, 220)
ORDER = ("clip", "clip_long", "vae", "unet", "inpaint")  # the order the stages run (train.SCHEDULE)
MARGIN = 36


def _smooth(values: list[float], window: int) -> list[float]:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return list(np.convolve(padded, kernel, mode="valid"))


def _panel(name: str, steps: list[int], losses: list[float]) -> Image.Image:
    w, h = PANEL
    im = Image.new("RGB", PANEL, "white")
    d = ImageDraw.Draw(im)
    d.text((MARGIN, 4), f"{name} (log10 loss; grey raw, blue smoothed)", fill="black")
    if not losses:
        return im
    logv = [math.log10(max(v, 1e-8)) for v in losses]
    lo, hi = min(logv), max(logv)
    hi = hi if hi > lo else lo + 1
    x0, x1, y0, y1 = MARGIN, w - 8, 20, h - 24
    d.rectangle([x0, y0, x1, y1], outline="black")
    smax = max(steps[-1], 1)

    def xy(s: int, v: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * s / smax, y1 - (y1 - y0) * (v - lo) / (hi - lo)

    d.line([xy(s, v) for s, v in zip(steps, logv, strict=True)], fill=(190, 190, 190), width=1)
    smooth = _smooth(logv, max(1, len(logv) // 40))
    d.line([xy(s, v) for s, v in zip(steps, smooth, strict=True)], fill=(30, 80, 200), width=2)
    d.text((2, y0), f"{hi:.2f}", fill="black")
    d.text((2, y1 - 10), f"{lo:.2f}", fill="black")
    d.text((x0, y1 + 4), "0", fill="black")
    d.text((x1 - 40, y1 + 4), f"{steps[-1] + 1} steps", fill="black")
    return im


def plot_loss_curves(log_dir: Path, out: Path) -> Path:
    panels = []
    for path in sorted(Path(log_dir).glob("*.csv"), key=lambda p: ORDER.index(p.stem) if p.stem in ORDER else 9):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        panels.append(_panel(path.stem, [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]))
    cols = max(1, min(3, len(panels)))
    rows_n = max(1, math.ceil(len(panels) / cols))
    sheet = Image.new("RGB", (PANEL[0] * cols, PANEL[1] * rows_n), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, ((i % cols) * PANEL[0], (i // cols) * PANEL[1]))
    sheet.save(out)
    return out


def sample_grid(model_dir: Path, out: Path, seed: int = 0, n: int = 8, steps: int = 25) -> Path:
    """Row 1: rendered scenes; row 2: the text-to-image model's images from their captions; captions below."""
    import torch
    from diffusers import StableDiffusionPipeline

    from benchmark.datasets.synthetic import _rng, caption, random_scene

    pipe = StableDiffusionPipeline.from_pretrained(
        str(Path(model_dir) / "text2img"), dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    scenes = [random_scene(_rng("emb-toyworld-samples", seed, i)) for i in range(n)]
    captions = [caption(s) for s in scenes]
    gen = torch.Generator().manual_seed(seed)
    images = pipe(captions, height=64, width=64, num_inference_steps=steps, guidance_scale=7.5, generator=gen).images
    return grid_sheet(scenes, images, captions, out)


def grid_sheet(scenes: list, images: list[Image.Image], captions: list[str], out: Path) -> Path:
    """Rendered scenes over generated images, captions below."""
    from benchmark.datasets.synthetic import render

    n = len(scenes)
    scale, text_h = 2, 56
    tile = 64 * scale
    sheet = Image.new("RGB", (tile * n, tile * 2 + text_h), "white")
    d = ImageDraw.Draw(sheet)
    for i, (scene, img, cap) in enumerate(zip(scenes, images, captions, strict=True)):
        real = Image.fromarray(render(scene, 64)[0])
        sheet.paste(real.resize((tile, tile), Image.Resampling.NEAREST), (i * tile, 0))
        sheet.paste(img.resize((tile, tile), Image.Resampling.NEAREST), (i * tile, tile))
        words, lines, line = cap.split(), [], ""
        for w in words:
            if len(line) + len(w) + 1 > 21:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
        for j, text in enumerate(lines[:5]):
            d.text((i * tile + 2, 2 * tile + 2 + 11 * j), text, fill="black")
    sheet.save(out)
    return out
