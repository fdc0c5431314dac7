"""Blended Latent Diffusion (Avrahami et al., SIGGRAPH 2023): text-driven local editing inside a given mask.

Follows the official script (omriav/blended-latent-diffusion, scripts/text_editing_SD2.py): SD 2.1-base
(model=sd21-base), DDIM, 50 steps, CFG 7.5; the source is encoded with the VAE posterior mean; the mask is resized to
the latent size (nearest) and binarised at 0.5; denoising starts from Gaussian noise after skipping the first 25% of
the timesteps, and after each step ``latents = latents·m + add_noise(source, fresh noise, t)·(1 − m)``.
The official script makes a batch of 4 candidates per edit; the benchmark makes one (``num_images``).

The mask comes from ``mask_source`` (methods/mask_source.py): the GT, a folder of PNGs, or another run's method
output (e.g. InstDiffEdit's masks).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.blending import LatentBlender
from methods.image_ops import resize_image
from methods.mask_source import MaskSource
from methods.sd_common import (
    PROMPT_FIELDS,
    decode_latents,
    encode_image,
    guided_step,
    make_scheduler,
    mask_tensor,
    model_resolution,
    prompt_embeddings,
    prompt_text,
)


@METHODS.register("blended_latent")
class BlendedLatent(MethodAdapter):
    name = "blended_latent"
    produces_mask = True
    pipelines = ("text2img",)

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        blending_start: float = 0.25,
        negative_prompt: str = "",
        prompt: str = "target_prompt",
        scheduler: str | None = "DDIMScheduler",
        scheduler_config: dict | None = None,
        mask_source: str = "gt",
        mask_dir: str | None = None,
        mask_run_dir: str | None = None,
        mask_method: str | None = None,
        mask_threshold: float | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        if not 0.0 <= float(blending_start) < 1.0:
            raise ValueError(f"blended_latent.blending_start={blending_start}: must be in [0, 1)")
        if prompt not in PROMPT_FIELDS:
            raise ValueError(f"blended_latent.prompt='{prompt}': use one of {', '.join(PROMPT_FIELDS)}")
        self.steps, self.guidance = int(num_inference_steps), float(guidance_scale)
        self.blending_start = float(blending_start)
        self.negative_prompt, self.prompt_field = negative_prompt, prompt
        self.scheduler_name, self.scheduler_config = scheduler, dict(scheduler_config or {})
        self.mask_source = MaskSource.from_params(
            mask_source, mask_dir, mask_run_dir, mask_method, mask_threshold, owner=self.name
        )
        self.needs_gt_mask = self.mask_source.needs_gt
        self.resolution = resolution

    def input_fingerprint(self, sample: EditSample) -> str | None:
        return self.mask_source.fingerprint(sample)

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        mask = self.mask_source.load(sample)
        pipe = self.models.pipeline("text2img")
        device = pipe._execution_device
        res = model_resolution(self.resolution, self.models)
        scheduler = make_scheduler(pipe, self.scheduler_name, self.scheduler_config)
        source = encode_image(pipe, resize_image(sample.image, (res, res)), res, mode="mean")
        m = mask_tensor(mask.binary, source.shape[-1], device, source.dtype)
        scheduler.set_timesteps(self.steps, device=device)
        timesteps = scheduler.timesteps[int(len(scheduler.timesteps) * self.blending_start) :]
        generator = ctx.generator()
        latents = randn_tensor(source.shape, generator=generator, device=device, dtype=source.dtype)
        latents = latents * scheduler.init_noise_sigma
        cfg = self.guidance > 1.0
        embeds = prompt_embeddings(pipe, prompt_text(sample, self.prompt_field), 1, self.negative_prompt, guidance=cfg)
        blender = LatentBlender(scheduler, source, fresh_noise=True, generator=generator)
        for t in timesteps:
            latents, _ = guided_step(pipe.unet, scheduler, latents, t, embeds, self.guidance)
            latents = blender(latents, m, t)
        image = decode_latents(pipe, latents)[0]
        return EditOutput(
            image=resize_image(image, sample.size),
            soft_mask=mask.soft,
            mask=mask.binary,
            extras={"mask_origin": mask.origin},
        )
