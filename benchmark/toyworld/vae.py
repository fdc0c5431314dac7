"""The toy world's autoencoder: a diffusers ``AutoencoderKL`` with 3 blocks (downsampling ×4), so 64×64 images map
to 16×16×4 latents and a UNet's 16×16 attention maps cover the image as SD's do at 512 px (InstDiffEdit's setting)."""

from __future__ import annotations

from typing import Any

import torch

VAE_CFG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "norm_num_groups": 8,
    "sample_size": 64,
    "mid_block_add_attention": False,
}
KL_WEIGHT = 1e-6  # as SD's KL-f8: a nearly deterministic autoencoder; the scale is fixed by scaling_factor


def build_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**VAE_CFG)


def vae_loss(vae, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """L1 + L2 reconstruction (images in [-1, 1]) + a weak KL term."""
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    err = recon - images
    return err.abs().mean() + err.pow(2).mean() + KL_WEIGHT * posterior.kl().mean()


@torch.no_grad()
def latent_scaling_factor(vae, images: torch.Tensor) -> float:
    """1 / std of the latents (SD's 0.18215 was found the same way), so scaled latents have unit variance."""
    return float(1.0 / vae.encode(images).latent_dist.sample().std())
