"""DiffEdit (Couairon et al., ICLR 2023) through diffusers' ``StableDiffusionDiffEditPipeline``.

Mask: the image is noised to ``mask_encode_strength`` for ``num_maps_per_mask`` noise draws and the noise is
predicted with the target (query) and source (reference) prompts under CFG; |ε_target − ε_source| averaged over
draws and channels, clamped at ``mask_thresholding_ratio`` × its mean and divided by that → the soft mask at latent
resolution; binary = soft > ``mask_threshold`` (0.5). ``diffedit_mask`` computes this with the pipeline's own
pieces in the pipeline's order, so its binary mask equals ``pipe.generate_mask`` bit for bit (tested) while also
returning the soft map ``generate_mask`` discards. Then DDIM inversion of the image with the source prompt
(``invert``, ``inpaint_strength`` 0.8) and masked decoding with the target prompt (``__call__``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.base import EditContext, MethodAdapter, resize_image
from methods.sd_common import make_scheduler, model_resolution, with_scheduler


@torch.no_grad()
def diffedit_mask(
    pipe: Any,
    image: Image.Image,
    target_prompt: str,
    source_prompt: str,
    generator: torch.Generator | None,
    num_maps_per_mask: int = 10,
    mask_encode_strength: float = 0.5,
    mask_thresholding_ratio: float = 3.0,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    mask_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """(soft, binary) DiffEdit mask at latent resolution, as ``pipe.generate_mask`` computes it (same random
    draws from ``generator``, same batch layout, same arithmetic)."""
    device = pipe._execution_device
    cfg = guidance_scale > 1.0
    n = int(num_maps_per_mask)
    target_neg, target = pipe.encode_prompt(target_prompt, device, n, cfg, None)
    source_neg, source = pipe.encode_prompt(source_prompt, device, n, cfg, None)
    if cfg:
        target = torch.cat([target_neg, target])
        source = torch.cat([source_neg, source])
    pixels = pipe.image_processor.preprocess(image).repeat_interleave(n, dim=0)
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps, _ = pipe.get_timesteps(num_inference_steps, mask_encode_strength, device)
    t = timesteps[0]
    latents = pipe.prepare_image_latents(pixels, n, pipe.vae.dtype, device, generator)
    noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=pipe.vae.dtype)
    latents = pipe.scheduler.add_noise(latents, noise, t)
    model_in = pipe.scheduler.scale_model_input(torch.cat([latents] * (4 if cfg else 2)), t)
    eps = pipe.unet(model_in, t, encoder_hidden_states=torch.cat([source, target])).sample
    if cfg:
        neg_src, eps_src, neg_tgt, eps_tgt = eps.chunk(4)
        eps_src = neg_src + guidance_scale * (eps_src - neg_src)
        eps_tgt = neg_tgt + guidance_scale * (eps_tgt - neg_tgt)
    else:
        eps_src, eps_tgt = eps.chunk(2)
    guide = torch.abs(eps_tgt - eps_src).reshape(1, n, *eps_tgt.shape[-3:]).mean([1, 2])
    clamp = guide.mean() * mask_thresholding_ratio
    soft = (guide.clamp(0, clamp) / clamp)[0]
    soft_np = soft.float().cpu().numpy()
    return soft_np, (soft > mask_threshold).cpu().numpy()


@METHODS.register("diffedit")
class DiffEdit(MethodAdapter):
    name = "diffedit"
    produces_mask = True
    pipelines = ("diffedit",)

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        num_maps_per_mask: int = 10,
        mask_encode_strength: float = 0.5,
        mask_thresholding_ratio: float = 3.0,
        mask_threshold: float = 0.5,
        inpaint_strength: float = 0.8,
        invert_guidance_scale: float = 7.5,
        scheduler: str | None = "DDIMScheduler",
        scheduler_config: dict | None = None,
        mask_only: bool = False,
        resolution: int | None = None,
    ) -> None:
        params = dict(locals())
        for k in ("self", "models", "__class__"):
            params.pop(k, None)
        super().__init__(models, **params)
        self.steps = int(num_inference_steps)
        self.guidance = float(guidance_scale)
        self.mask_kwargs = dict(num_maps_per_mask=int(num_maps_per_mask), mask_encode_strength=float(
            mask_encode_strength), mask_thresholding_ratio=float(mask_thresholding_ratio),
            num_inference_steps=self.steps, guidance_scale=self.guidance, mask_threshold=float(mask_threshold))
        self.inpaint_strength = float(inpaint_strength)
        self.invert_guidance = float(invert_guidance_scale)
        self.scheduler_name = scheduler
        self.scheduler_config = dict(scheduler_config or {})
        self.mask_only = bool(mask_only)
        self.produces_image = not self.mask_only
        self.resolution = resolution
        self._pipe = None

    def pipeline(self) -> Any:
        """The bundle's DiffEdit pipeline with this method's scheduler and a DDIM inverse scheduler on its config."""
        if self._pipe is None:
            from diffusers import DDIMInverseScheduler

            base = self.models.pipeline("diffedit")
            scheduler = make_scheduler(base, self.scheduler_name, self.scheduler_config)
            inverse = DDIMInverseScheduler.from_config(scheduler.config)
            self._pipe = with_scheduler(base, self.scheduler_name, self.scheduler_config, inverse_scheduler=inverse)
        return self._pipe

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.pipeline()
        res = model_resolution(self.resolution, self.models)
        image = resize_image(sample.image, (res, res))
        source_prompt = sample.source_prompt or ""
        soft, binary = diffedit_mask(pipe, image, sample.target_prompt, source_prompt, ctx.generator(),
                                     **self.mask_kwargs)
        extras = {"mask_area": float(binary.mean())}
        if self.mask_only:
            return EditOutput(image=None, soft_mask=soft, mask=binary, extras=extras)
        inverted = pipe.invert(
            prompt=source_prompt,
            image=image,
            num_inference_steps=self.steps,
            inpaint_strength=self.inpaint_strength,
            guidance_scale=self.invert_guidance,
            generator=ctx.generator(offset=1),
        ).latents
        mask = torch.from_numpy(binary.astype(np.float32))[None, None]
        out = pipe(
            prompt=sample.target_prompt,
            mask_image=mask,
            image_latents=inverted,
            inpaint_strength=self.inpaint_strength,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=ctx.generator(offset=2),
        ).images[0]
        return EditOutput(image=resize_image(out, sample.size), soft_mask=soft, mask=binary, extras=extras)
