"""Latent blending with a noised source: keep the source outside the mask while denoising inside it.

After a denoising step, ``x ← noised(x₀, t) + M · (x − noised(x₀, t))`` (equivalently ``x·M + noised·(1 − M)``),
where ``noised(x₀, t)`` is the source latent noised to timestep ``t`` with the scheduler's own forward process.
Both official codes this serves blend with the source noised to the timestep *just denoised* (not the next one):
InstDiffEdit reuses each seed's fixed noise, Blended Latent Diffusion draws fresh noise at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor


def noised_source(scheduler: Any, source: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """``source`` noised to timestep ``t`` by ``scheduler.add_noise`` (works for DDIM/PNDM alphas and LMS sigmas)."""
    t = torch.as_tensor(t, device=source.device).reshape(1)
    return scheduler.add_noise(source, noise, t)


def blend(latents: torch.Tensor, mask: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
    """``noised + mask · (latents − noised)``: ``latents`` inside the mask (1), the noised source outside (0)."""
    return noised + mask.to(latents.dtype) * (latents - noised)


@dataclass
class LatentBlender:
    """Blends each step's latents with the source; ``fresh_noise`` draws new noise per step (BLD), otherwise the
    fixed ``noise`` is reused (InstDiffEdit: each seed's own starting noise)."""

    scheduler: Any
    source: torch.Tensor
    noise: torch.Tensor | None = None
    fresh_noise: bool = False
    generator: torch.Generator | None = None

    def __call__(self, latents: torch.Tensor, mask: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        if self.fresh_noise or self.noise is None:
            noise = randn_tensor(latents.shape, generator=self.generator, device=latents.device, dtype=latents.dtype)
        else:
            noise = self.noise
        source = self.source.expand_as(latents) if self.source.shape[0] == 1 else self.source
        return blend(latents, mask, noised_source(self.scheduler, source, noise, t))
