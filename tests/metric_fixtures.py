"""Shared material of the metric tests: real photographs with drawn masks, and random-weight network files.

Weight files are written once per pytest session under the session's base temp folder (each writer is idempotent),
so several test modules share them. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from benchmark.metrics import random_weights as rw
from benchmark.metrics.base import ScoreItem
from benchmark.types import EditOutput, EditSample

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
# a ViT of DINO's family (patch 8) small enough for tests; the real ViT-B/8 has its own test
TINY_VIT = {"embed_dim": 48, "depth": 2, "num_heads": 3}


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()[..., :3]).convert("RGB").resize(size, Image.Resampling.BICUBIC)


def ellipse_mask(size: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    from skimage.draw import ellipse

    w, h = size
    m = np.zeros((h, w), dtype=bool)
    rr, cc = ellipse(centre[1] * h, centre[0] * w, radii[1] * h, radii[0] * w, shape=(h, w))
    m[rr, cc] = True
    return m


def edited_version(source: Image.Image, other: Image.Image, mask: np.ndarray, seed: int) -> Image.Image:
    """An 'edit': another photo pasted inside the mask, plus a mild global change outside (blur, brightness)."""
    rng = np.random.default_rng(seed)
    src = np.asarray(source.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) * float(rng.uniform(0.9, 1.1))
    out = np.where(mask[..., None], np.asarray(other.resize(source.size), dtype=np.float32), src)
    return Image.fromarray(np.clip(out + rng.normal(0, 3, out.shape), 0, 255).astype(np.uint8))


def photo_items(n: int = 4, size: tuple[int, int] = (96, 96), sizes: list[tuple[int, int]] | None = None) -> list:
    """ScoreItems of real photographs: source, an edited version, a GT mask (ellipse), prompts, a reference edit."""
    items = []
    for i in range(n):
        sz = sizes[i % len(sizes)] if sizes else size
        src = photo(PHOTOS[i % len(PHOTOS)], sz)
        other = photo(PHOTOS[(i + 1) % len(PHOTOS)], sz)
        mask = ellipse_mask(sz, (0.35 + 0.1 * (i % 3), 0.5), (0.22, 0.3))
        edited = edited_version(src, other, mask, seed=i)
        target = edited_version(src, other, mask, seed=100 + i)
        sample = EditSample(
            id=f"photo{i}",
            image=src,
            mask=mask,
            source_prompt=f"a photo of {PHOTOS[i % len(PHOTOS)]}",
            target_prompt=f"a photo of a [{PHOTOS[(i + 1) % len(PHOTOS)]}] in the scene",
            target_image=target,
        )
        noise = np.random.default_rng(i).uniform(0, 0.5, mask.shape)
        soft = np.clip(mask * 0.6 + noise, 0, 1).astype(np.float32)  # imperfect: thresholds matter
        items.append(ScoreItem(sample, EditOutput(image=edited, soft_mask=soft, mask=soft > 0.5)))
    return items


class Weights:
    """Paths of random-weight files for every metric network, built on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def inception(self) -> Path:
        return rw.inception(self.root / "weights-inception-random.pth")

    def lpips_backbone(self, net: str) -> Path:
        return rw.lpips_backbone(net, self.root / f"lpips-{net}-backbone.pth")

    def torch_home(self, net: str) -> Path:
        """A TORCH_HOME whose hub cache holds the backbone under torchvision's file name (for lpips/torchmetrics)."""
        from benchmark.metrics.lpips_distance import backbone_url

        home = self.root / "torch_home"
        target = home / "hub" / "checkpoints" / backbone_url(net).rsplit("/", 1)[-1]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.lpips_backbone(net).read_bytes())
        return home

    @property
    def clip_config(self) -> Path:
        return rw.tiny_clip_config(self.root / "clip_configs")

    @property
    def clip(self) -> Path:
        """Tiny CLIP, random towers plus one shared direction in both projections.

        Random towers give image–text cosines of random sign, so 100·max(cos, 0) would mostly be 0 and test little;
        a common offset (LayerNorm bias 1 before each projection, the same vector added through both projections)
        makes the cosines positive (~0.3–0.7) while still different per image and prompt."""
        import torch

        path = self.root / "tiny-clip.pt"
        if not path.exists():
            state = torch.load(rw.clip(rw.TINY_CLIP, self.root / "tiny-clip-random.pt", self.clip_config))
            shared = torch.linspace(0.5, 1.5, state["text_projection"].shape[1])
            for ln, proj in (("visual.ln_post", "visual.proj"), ("ln_final", "text_projection")):
                state[f"{ln}.bias"] = torch.ones_like(state[f"{ln}.bias"])
                width = state[proj].shape[0]
                state[proj] = state[proj] + torch.outer(torch.ones(width) / width, shared) * 2
            torch.save(state, path)
        return path

    @property
    def vit_tiny(self) -> Path:
        return rw.vit("vit_base_patch8_224", self.root / "vit-tiny-patch8.safetensors", TINY_VIT)

    @property
    def vit_b8(self) -> Path:
        return rw.vit("vit_base_patch8_224", self.root / "vit-base-patch8.safetensors")


def weights_for_session(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    return Weights(tmp_path_factory.getbasetemp() / "metric-weights")


@contextmanager
def one_thread() -> Iterator[None]:
    """Small CPU convolutions on a shared 2-core machine: 2 OpenMP threads spin-wait on each other (seconds per
    call under load), one thread does not. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
