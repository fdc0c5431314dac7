"""PixArt-alpha pieces for the transformer methods: prompt embeddings with their T5 masks, one guided denoiser
call, and DPM-Solver++ (multistep, order 2) sampling and inversion on the same timestep grid.

Sampling is diffusers' ``DPMSolverMultistepScheduler`` and inversion its ``DPMSolverMultistepInverseScheduler``, both
built from the pipeline's scheduler config with ``timestep_spacing="linspace"``, so that the inversion visits exactly
the levels the sampler walks back (0, t_N-1, ..., t_1 up to the noisiest step t_0 = 999; the sampler then goes from
t_0 down to sigma 0). The inverse scheduler is explicit: the model output at the unknown, noisier end of a step is
replaced by the one evaluated at the known, cleaner end (the backward-Euler estimate DiT4Edit describes), and the
second-order correction is the difference of the last two known data predictions (a backward difference in
log-SNR). Both runs cost one denoiser call per step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# PixArt-alpha's max_sequence_length in diffusers' PixArtAlphaPipeline (the T5 token count the transformer sees)
MAX_TOKENS = 120
# both schedulers on one grid (see the module docstring); order 2, data prediction
DPM_OVERRIDES = {"timestep_spacing": "linspace", "algorithm_type": "dpmsolver++", "solver_order": 2}


@dataclass(frozen=True)
class TextCond:
    """T5 embeddings (n, L, d) of n prompts and their attention masks (n, L): padded tokens get no attention."""

    embeds: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: slice | list[int]) -> TextCond:
        return TextCond(self.embeds[index], self.mask[index])

    def repeat(self, n: int) -> TextCond:
        return TextCond(self.embeds.expand(n, *self.embeds.shape[1:]), self.mask.expand(n, -1))

    @staticmethod
    def cat(parts: Sequence[TextCond]) -> TextCond:
        return TextCond(torch.cat([p.embeds for p in parts]), torch.cat([p.mask for p in parts]))


@torch.no_grad()
def encode_text(pipe: Any, prompts: Sequence[str], max_tokens: int = MAX_TOKENS) -> TextCond:
    """The pipeline's own T5 prompt encoder (padding to ``max_tokens``, no caption cleaning)."""
    embeds, mask, _, _ = pipe.encode_prompt(
        list(prompts),
        do_classifier_free_guidance=False,
        device=pipe.transformer.device,
        clean_caption=False,
        max_sequence_length=max_tokens,
    )
    return TextCond(embeds, mask)


def tokenizer_at(pipe: Any, max_tokens: int) -> Any:
    """The pipeline's tokenizer reporting ``max_tokens`` as its length, so the Prompt-to-Prompt token bookkeeping
    (``methods.p2p_tokens``) builds mappers as long as the key sequence the transformer attends to."""
    tokenizer = copy.copy(pipe.tokenizer)
    tokenizer.model_max_length = max_tokens
    return tokenizer


def micro_conditions(transformer: Any, rows: int, height: int, width: int) -> dict[str, torch.Tensor | None]:
    """PixArt's resolution and aspect-ratio conditions: used by the 1024-px multi-aspect model (sample size 128)
    only, as in ``PixArtAlphaPipeline``."""
    if transformer.config.sample_size != 128:
        return {"resolution": None, "aspect_ratio": None}
    dtype, device = transformer.dtype, transformer.device
    resolution = torch.tensor([height, width], dtype=dtype, device=device).repeat(rows, 1)
    aspect_ratio = torch.tensor([float(height / width)], dtype=dtype, device=device).repeat(rows, 1)
    return {"resolution": resolution, "aspect_ratio": aspect_ratio}


def predict_noise(
    transformer: Any,
    latents: torch.Tensor,
    t: torch.Tensor,
    cond: TextCond,
    uncond: TextCond | None,
    guidance_scale: float | torch.Tensor,
    image_hw: tuple[int, int],
) -> torch.Tensor:
    """ε for ``latents`` (n rows): one transformer call on [uncond rows, cond rows] combined by classifier-free
    guidance (2n evaluations), or on the conditional rows alone when every scale is 1 (n evaluations).
    ``guidance_scale``: one scale, or one per row (n,). The learned-sigma half of PixArt's 8 output channels is
    dropped, as the pipeline does."""
    n = latents.shape[0]
    scale = torch.as_tensor(guidance_scale, dtype=torch.float32)
    guided = bool((scale != 1.0).any()) and uncond is not None
    if guided:
        uncond = uncond.repeat(n) if uncond.embeds.shape[0] == 1 else uncond
        text = TextCond.cat([uncond, cond])
        model_in = torch.cat([latents, latents])
    else:
        text, model_in = cond, latents
    rows = model_in.shape[0]
    out = transformer(
        model_in,
        encoder_hidden_states=text.embeds,
        encoder_attention_mask=text.mask,
        timestep=t.reshape(1).expand(rows).to(latents.device),
        added_cond_kwargs=micro_conditions(transformer, rows, *image_hw),
        return_dict=False,
    )[0]
    if transformer.config.out_channels // 2 == latents.shape[1]:
        out = out.chunk(2, dim=1)[0]
    if guided:
        eps_uncond, eps_cond = out.chunk(2)
        scale = scale.to(out.device, out.dtype).reshape(-1, *[1] * (out.ndim - 1)) if scale.ndim else float(scale)
        return eps_uncond + scale * (eps_cond - eps_uncond)
    return out


def dpm_schedulers(
    pipe: Any, num_steps: int, device: torch.device | None = None, inverse_order: int = 2
) -> tuple[Any, Any]:
    """(sampling DPMSolverMultistepScheduler, DPMSolverMultistepInverseScheduler) on one grid of ``num_steps``;
    ``inverse_order`` 1 drops the inversion's second-order term (DDIM-like inversion, for comparison)."""
    from diffusers import DPMSolverMultistepInverseScheduler, DPMSolverMultistepScheduler

    config = {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}
    sampler = DPMSolverMultistepScheduler.from_config(config, **DPM_OVERRIDES)
    inverse = DPMSolverMultistepInverseScheduler.from_config(config, **{**DPM_OVERRIDES, "solver_order": inverse_order})
    sampler.set_timesteps(num_steps, device=device)
    inverse.set_timesteps(num_steps, device=device)
    return sampler, inverse


StepHook = Callable[[int, torch.Tensor], None]
LatentHook = Callable[[int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def dpm_invert(
    pipe: Any,
    latents: torch.Tensor,
    cond: TextCond,
    num_steps: int,
    image_hw: tuple[int, int],
    guidance_scale: float = 1.0,
    uncond: TextCond | None = None,
    before_step: StepHook | None = None,
    order: int = 2,
) -> torch.Tensor:
    """z_T of the clean latents ``latents`` (z_0) with the source prompt ``cond``: ``num_steps`` transformer calls
    (one row each at scale 1, two with guidance)."""
    _, inverse = dpm_schedulers(pipe, num_steps, latents.device, order)
    for i, t in enumerate(inverse.timesteps):
        if before_step is not None:
            before_step(i, t)
        eps = predict_noise(pipe.transformer, latents, t, cond, uncond, guidance_scale, image_hw)
        latents = inverse.step(eps, t, latents).prev_sample
    return latents


@torch.no_grad()
def dpm_sample(
    pipe: Any,
    latents: torch.Tensor,
    cond: TextCond,
    num_steps: int,
    image_hw: tuple[int, int],
    guidance_scale: float | torch.Tensor,
    uncond: TextCond | None = None,
    before_step: StepHook | None = None,
    after_step: LatentHook | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) sampling of ``latents`` (n rows) with prompts ``cond`` (n rows): one call per step;
    ``before_step(i, t)`` runs before the call of step i, ``after_step(i, latents)`` may replace the latents after
    the update (LocalBlend)."""
    sampler, _ = dpm_schedulers(pipe, num_steps, latents.device)
    for i, t in enumerate(sampler.timesteps):
        if before_step is not None:
            before_step(i, t)
        eps = predict_noise(pipe.transformer, latents, t, cond, uncond, guidance_scale, image_hw)
        latents = sampler.step(eps, t, latents).prev_sample
        if after_step is not None:
            latents = after_step(i, latents)
    return latents


def token_grid(transformer: Any, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The transformer's token grid (rows, columns) for latents of ``latent_hw`` (patchified by its patch size)."""
    patch = int(transformer.config.patch_size)
    return latent_hw[0] // patch, latent_hw[1] // patch
