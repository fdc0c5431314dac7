"""DDIM inversion and DDIM sampling on a diffusers Stable Diffusion pipeline.

Inversion runs the deterministic DDIM update backwards (diffusers' ``DDIMInverseScheduler``): from the image
latent z_0 (VAE posterior mean × scaling factor, ``inversion_latent``) up to z_T, evaluating the noise at each next
timestep with the source prompt, at classifier-free-guidance scale 1 by default (as P2P's null-text code). Sampling
runs the forward DDIM update (``DDIMScheduler``, eta 0) from z_T with optional CFG, per-step unconditional embeddings
(null-text inversion) and per-step hooks (attention control, latent blending).

Schedulers are built from the pipeline's config with ``clip_sample=False`` and ``set_alpha_to_one=False`` (P2P's
DDIM), so the last sampling step lands on exactly the level the first inversion step started from, and the
pipeline's own scheduler (shared with other methods) is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from methods.sd_common import encode_image

# The official P2P / null-text code (and PnPInversion's) builds DDIMScheduler(beta_start=0.00085, beta_end=0.012,
# beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False): steps_offset 0, so 50 steps are
# t = 980, 960, ..., 0 (SD 1.4's own scheduler config has steps_offset 1: 981, ..., 1).
DDIM_OVERRIDES = {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 0}


def ddim_schedulers(pipe, num_steps: int, device: torch.device | None = None):
    """(sampling DDIMScheduler, DDIMInverseScheduler) with ``num_steps`` steps, from the pipeline's config."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    sampler = DDIMScheduler.from_config(pipe.scheduler.config, **DDIM_OVERRIDES)
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config, **DDIM_OVERRIDES)
    sampler.set_timesteps(num_steps, device=device)
    inverse.set_timesteps(num_steps, device=device)
    return sampler, inverse


def inversion_latent(pipe, image: Image.Image) -> torch.Tensor:
    """z_0 of ``image`` (at the working resolution) as P2P's official code encodes it: the VAE posterior mean of
    the pixels in contiguous layout (``methods.sd_common.encode_image``)."""
    return encode_image(pipe, image, "mean", memory_format=torch.contiguous_format)


@torch.no_grad()
def text_embeddings(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """CLIP text embeddings (n, 77, d) through the pipeline's own prompt encoder (padding to max length)."""
    embeds, _ = pipe.encode_prompt(list(prompts), pipe.unet.device, 1, do_classifier_free_guidance=False)
    return embeds


def predict_noise(
    unet, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None, guidance_scale: float
) -> torch.Tensor:
    """ε for ``latents`` (n rows) with CFG: one UNet call on [uncond rows, cond rows] (2n evaluations), or on the
    conditional rows only when the scale is 1 (n evaluations)."""
    n = latents.shape[0]
    if guidance_scale == 1.0 or uncond is None:
        return unet(latents, t, encoder_hidden_states=cond).sample
    uncond = uncond.expand(n, *uncond.shape[1:]) if uncond.shape[0] == 1 else uncond
    eps = unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


@dataclass
class Trajectory:
    """Latents of a DDIM inversion: ``latents[0]`` = z_0 (the image), ``latents[k]`` after k inverse steps,
    ``latents[-1]`` = z_T. ``timesteps``: the sampling timesteps (descending) that walk it back."""

    latents: list[torch.Tensor]
    timesteps: torch.Tensor

    @property
    def z_T(self) -> torch.Tensor:
        return self.latents[-1]

    def target(self, i: int) -> torch.Tensor:
        """The latent sampling step i should land on (the level before ``timesteps[i]``)."""
        return self.latents[len(self.latents) - i - 2]


@torch.no_grad()
def ddim_invert(
    pipe,
    latents: torch.Tensor,
    cond: torch.Tensor,
    num_steps: int,
    guidance_scale: float = 1.0,
    uncond: torch.Tensor | None = None,
) -> Trajectory:
    """Invert ``latents`` (z_0) to noise with the source prompt embedding ``cond`` (1, 77, d).

    Costs ``num_steps`` UNet evaluations at scale 1, twice that with CFG (then ``uncond`` is required).
    """
    if guidance_scale != 1.0 and uncond is None:
        raise ValueError("ddim_invert: guidance_scale != 1 needs the unconditional embedding")
    sampler, inverse = ddim_schedulers(pipe, num_steps, latents.device)
    out = [latents]
    for t in inverse.timesteps:
        eps = predict_noise(pipe.unet, latents, t, cond, uncond, guidance_scale)
        latents = inverse.step(eps, t, latents).prev_sample
        out.append(latents)
    return Trajectory(out, sampler.timesteps)


def invert_image(
    pipe, image: Image.Image, prompt: str, num_steps: int, guidance_scale: float = 1.0, negative_prompt: str = ""
) -> Trajectory:
    """Encode ``image`` (already at the model's resolution) and DDIM-invert it with ``prompt``."""
    cond = text_embeddings(pipe, [prompt])
    uncond = text_embeddings(pipe, [negative_prompt]) if guidance_scale != 1.0 else None
    return ddim_invert(pipe, inversion_latent(pipe, image), cond, num_steps, guidance_scale, uncond)


StepHook = Callable[[int, torch.Tensor], None]
LatentHook = Callable[[int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def ddim_sample(
    pipe,
    latents: torch.Tensor,
    cond: torch.Tensor,
    num_steps: int,
    guidance_scale: float,
    uncond: torch.Tensor | Sequence[torch.Tensor] | None = None,
    before_step: StepHook | None = None,
    after_step: LatentHook | None = None,
) -> torch.Tensor:
    """Deterministic DDIM sampling of ``latents`` (n rows) with prompt embeddings ``cond`` (n, 77, d).

    ``uncond``: one embedding for every step, or a list with one per step (null-text inversion);
    ``before_step(i, t)`` runs before the UNet call of step i; ``after_step(i, latents)`` may replace the
    latents after the scheduler update (LocalBlend). One UNet call per step.
    """
    sampler, _ = ddim_schedulers(pipe, num_steps, latents.device)
    per_step = isinstance(uncond, list | tuple)
    for i, t in enumerate(sampler.timesteps):
        if before_step is not None:
            before_step(i, t)
        u = uncond[i] if per_step else uncond
        eps = predict_noise(pipe.unet, sampler.scale_model_input(latents, t), t, cond, u, guidance_scale)
        latents = sampler.step(eps, t, latents).prev_sample
        if after_step is not None:
            latents = after_step(i, latents)
    return latents
