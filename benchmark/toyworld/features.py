"""The toy CLIP's image tower as a feature network (e.g. for torchmetrics' FrechetInceptionDistance(feature=...)),
so a FID on this world compares images in the space of a network trained on it."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.toyworld import CLIP, SHIPPED_DIR


class ToyClipFeatures(torch.nn.Module):
    """images (N, 3, H, W), uint8 in [0, 255] or float in [0, 1] → L2-normalised toy-CLIP embeddings (N, 64),
    preprocessed as open_clip's transform for the shipped model does (bicubic resize to 64, OpenAI mean/std)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        super().__init__()
        from benchmark.models import resolve_local_path
        from benchmark.toyworld.clip import CLIP_PREPROCESS_CFG, load_open_clip

        path = Path(resolve_local_path(str(folder))) if folder else SHIPPED_DIR / CLIP
        self.model = load_open_clip(path)[0].requires_grad_(False)
        self.size = int(CLIP_PREPROCESS_CFG["size"])
        self.register_buffer("mean", torch.tensor(CLIP_PREPROCESS_CFG["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_PREPROCESS_CFG["std"]).view(1, 3, 1, 1), persistent=False)
        self.num_features = int(self.model.visual.output_dim)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        return F.normalize(self.model.encode_image(x), dim=-1)
