"""Blended Latent Diffusion (Avrahami et al., SIGGRAPH 2023): text-driven local editing inside a given mask.

Follows the official script (omriav/blended-latent-diffusion, scripts/text_editing_SD2.py): SD 2.1-base
(model=sd21-base), DDIM, 50 steps, CFG 7.5; the prompt describes the masked content only (the README's usage:
``--prompt "a stone"`` with a mask; here the dataset's target edit words, ``prompt: target_words``); the source is
encoded with the VAE posterior mean; the mask is resized to the latent size (nearest) and binarised at 0.5;
denoising starts from Gaussian noise after skipping the first 25% of the timesteps, and after each step
``latents = latents·m + add_noise(source, fresh noise, t)·(1 − m)``. The official script makes a batch of 4
candidates per edit; the benchmark makes one.

The mask comes from ``mask_source`` (methods/mask_source.py): the GT, a folder of PNGs, or another run's method
output (e.g. InstDiffEdit's masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from benchmark.adapter import EditContext, MethodAdapter, setting
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.blending import LatentBlender
from methods.image_ops import resize_image
from methods.mask_source import MaskSource, MaskSourceSettings
from methods.sd_common import (
    decode_latents,
    encode_image,
    guided_step,
    make_scheduler,
    mask_tensor,
    model_resolution,
    prompt_embeddings,
    prompt_text,
)
from methods.sd_settings import NegativePromptSettings, SchedulerSettings, SDSettings, check_prompt_field


@dataclass(frozen=True)
class BlendedLatentSettings(MaskSourceSettings, SchedulerSettings, NegativePromptSettings, SDSettings):
    """The official script's defaults (text_editing_SD2.py)."""

    scheduler: str | None = setting(
        "DDIMScheduler",
        "official code",
        "the script's DDIMScheduler(scaled_linear 0.00085-0.012, no clipping, alpha_1 off), model's betas",
    )
    scheduler_config: dict[str, Any] = setting(
        {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 0, "timestep_spacing": "leading"},
        "official code",
        "the script's DDIMScheduler(...) keys",
    )
    blending_start: float = setting(0.25, "official code", "fraction of the timesteps skipped before denoising starts")
    prompt: str = setting(
        "target_words",
        "official code",
        "the text conditioned on: target_words (the dataset's replacement phrase; the caption when a sample has "
        "none), as the official usage prompts with a local description of the masked content ('a stone'), or "
        "target_prompt (the whole target caption)",
    )

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.blending_start < 1.0:
            raise ValueError(f"blending_start={self.blending_start}: must be in [0, 1)")
        check_prompt_field("prompt", self.prompt)


@METHODS.register("blended_latent")
class BlendedLatent(MethodAdapter):
    """Blended Latent Diffusion: text-driven editing inside a mask (official script text_editing_SD2.py defaults:
    SD 2.1-base = model=sd21-base, DDIM 50 steps, CFG 7.5, blending from 25% of the steps on, mask resized to the
    latent size nearest and binarised at 0.5; prompt = a local description of the masked content: the target edit
    words). One image per edit (the script makes a batch of 4 candidates)."""

    settings_class = BlendedLatentSettings
    settings: BlendedLatentSettings
    base_model = "sd21-base"
    produces_mask = True
    pipelines = ("text2img",)

    def __init__(self, models: Any = None, settings: BlendedLatentSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self.mask_source = MaskSource.from_settings(self.settings)
        self.needs_gt_mask = self.mask_source.needs_gt

    def input_fingerprint(self, sample: EditSample) -> str | None:
        return self.mask_source.fingerprint(sample)

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        mask = self.mask_source.load(sample)
        pipe = self.models.pipeline("text2img")
        device = pipe._execution_device
        res = model_resolution(s.resolution, self.models)
        scheduler = make_scheduler(pipe, s.scheduler, s.scheduler_config)
        source = encode_image(pipe, resize_image(sample.image, (res, res)), "mean")
        m = mask_tensor(mask.binary, source.shape[-1], device, source.dtype)
        scheduler.set_timesteps(s.num_inference_steps, device=device)
        timesteps = scheduler.timesteps[int(len(scheduler.timesteps) * s.blending_start) :]
        generator = ctx.generator()
        latents = randn_tensor(source.shape, generator=generator, device=device, dtype=source.dtype)
        latents = latents * scheduler.init_noise_sigma
        cfg = s.guidance_scale > 1.0
        embeds = prompt_embeddings(pipe, prompt_text(sample, s.prompt), 1, s.negative_prompt, guidance=cfg)
        blender = LatentBlender(scheduler, source, fresh_noise=True, generator=generator)
        for t in timesteps:
            latents, _ = guided_step(pipe.unet, scheduler, latents, t, embeds, s.guidance_scale)
            latents = blender(latents, m, t)
        image = decode_latents(pipe, latents)[0]
        return EditOutput(
            image=resize_image(image, sample.size),
            soft_mask=mask.soft,
            mask=mask.binary,
            extras={"mask_origin": mask.origin},
        )
