"""DiffEdit (Couairon et al., ICLR 2023) through diffusers' ``StableDiffusionDiffEditPipeline``.

Mask: the image is noised to ``mask_encode_strength`` for ``num_maps_per_mask`` noise draws and the noise is
predicted with the target (query) and source (reference) prompts under CFG; |ε_target − ε_source| averaged over
draws and channels, clamped at ``mask_thresholding_ratio`` × its mean and divided by that → the soft mask at latent
resolution; binary = soft > ``mask_threshold`` (0.5). ``diffedit_mask`` computes this with the pipeline's own
pieces in the pipeline's order, so its binary mask equals ``pipe.generate_mask`` bit for bit (tested) while also
returning the soft map ``generate_mask`` discards. Then DDIM inversion of the image with the source prompt
(``invert``, ``inpaint_strength`` 0.8) and masked decoding with the target prompt (``__call__``).

``diffedit_repo`` is the DiffEdit baseline as the InstDiffEdit paper ran it (its repo's model/diffedit.py: ten pairs
of full img2img passes, blur, threshold 0.3, SD inpainting) — the baseline of that paper's IoU and timing tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import resize_image
from methods.mask_ops import gaussian_blur, min_max
from methods.sd_common import (
    PROMPT_FIELDS,
    encode_image,
    guided_step,
    inpaint,
    make_scheduler,
    model_resolution,
    prompt_embeddings,
    prompt_text,
    strength_timesteps,
    with_scheduler,
)


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
        super().__init__(models, **init_params(locals()))
        self.steps = int(num_inference_steps)
        self.guidance = float(guidance_scale)
        self.mask_kwargs = dict(
            num_maps_per_mask=int(num_maps_per_mask),
            mask_encode_strength=float(mask_encode_strength),
            mask_thresholding_ratio=float(mask_thresholding_ratio),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            mask_threshold=float(mask_threshold),
        )
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
        soft, binary = diffedit_mask(
            pipe, image, sample.target_prompt, source_prompt, ctx.generator(), **self.mask_kwargs
        )
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


@torch.no_grad()
def repo_diffedit_mask(
    pipe: Any,
    scheduler: Any,
    source_latents: torch.Tensor,
    query: str,
    reference: str,
    generators: list[torch.Generator],
    num_inference_steps: int = 50,
    strength: float = 0.5,
    guidance_scale: float = 7.5,
    blur_kernel: int = 5,
    blur_sigma: float = 1.0,
    mask_threshold: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """The DiffEdit baseline of the InstDiffEdit repo (model/diffedit.py): for each noise draw, two full img2img
    passes (reference and query text, same noise) of ``int(N·strength)`` steps; the L2 norm over channels of the
    difference of their last guided noise predictions, averaged over draws, min-max scaled and quantised to 0–255,
    blurred (cv2.GaussianBlur 5×5, σ = 1) → soft mask; binary = soft > ``mask_threshold``."""
    device = source_latents.device
    embeds = {text: prompt_embeddings(pipe, text, 1, "", guidance=guidance_scale > 1.0) for text in (query, reference)}
    diffs = []
    for generator in generators:
        noise = randn_tensor(source_latents.shape, generator=generator, device=device, dtype=source_latents.dtype)
        last = {}
        for text in (reference, query):
            timesteps = strength_timesteps(scheduler, num_inference_steps, strength, device)
            latents = scheduler.add_noise(source_latents, noise, timesteps[:1])
            eps = None
            for t in timesteps:
                latents, eps = guided_step(pipe.unet, scheduler, latents, t, embeds[text], guidance_scale)
            last[text] = eps
        diffs.append((last[reference] - last[query])[0].pow(2).sum(0).sqrt())
    diff = min_max(torch.stack(diffs).mean(0).float().cpu().numpy())
    img = (diff * 255.0).astype(np.uint8).astype(np.float32)
    soft = gaussian_blur(img, blur_kernel, blur_sigma) / 255.0
    return soft.astype(np.float32), soft > mask_threshold


@METHODS.register("diffedit_repo")
class DiffEditRepo(MethodAdapter):
    """DiffEdit as the InstDiffEdit paper ran it (its repo's model/diffedit.py): the baseline of its IoU (33.0) and
    timing (64.0 s vs 10.8 s) tables. Mask from 10 × 2 img2img passes, then SD inpainting with the target text."""

    name = "diffedit_repo"
    produces_mask = True
    pipelines = ("text2img", "inpaint")

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        strength: float = 0.5,
        guidance_scale: float = 7.5,
        num_draws: int = 10,
        scheduler: str | None = "LMSDiscreteScheduler",
        scheduler_config: dict | None = None,
        query_prompt: str = "official_prompt",
        reference_prompt: str = "source_words",
        blur_kernel: int = 5,
        blur_sigma: float = 1.0,
        mask_threshold: float = 0.3,
        mask_only: bool = False,
        inpaint_num_inference_steps: int | None = None,
        inpaint_guidance_scale: float = 7.5,
        resolution: int | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        for field in (query_prompt, reference_prompt):
            if field not in PROMPT_FIELDS:
                raise ValueError(f"diffedit_repo prompt field '{field}': use one of {', '.join(PROMPT_FIELDS)}")
        self.steps, self.strength, self.guidance = int(num_inference_steps), float(strength), float(guidance_scale)
        self.num_draws = int(num_draws)
        self.scheduler_name, self.scheduler_config = scheduler, dict(scheduler_config or {})
        self.query_field, self.reference_field = query_prompt, reference_prompt
        self.blur = dict(
            blur_kernel=int(blur_kernel), blur_sigma=float(blur_sigma), mask_threshold=float(mask_threshold)
        )
        self.mask_only = bool(mask_only)
        self.produces_image = not self.mask_only
        self.inpaint_steps = int(inpaint_num_inference_steps or num_inference_steps)
        self.inpaint_guidance = float(inpaint_guidance_scale)
        self.resolution = resolution

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.models.pipeline("text2img")
        res = model_resolution(self.resolution, self.models)
        image = resize_image(sample.image, (res, res))
        query = prompt_text(sample, self.query_field)
        scheduler = make_scheduler(pipe, self.scheduler_name, self.scheduler_config)
        source = encode_image(pipe, image, res, ctx.generator())
        generators = [ctx.generator(offset=1 + i) for i in range(self.num_draws)]
        soft, binary = repo_diffedit_mask(
            pipe,
            scheduler,
            source,
            query,
            prompt_text(sample, self.reference_field),
            generators,
            self.steps,
            self.strength,
            self.guidance,
            **self.blur,
        )
        extras = {"mask_area": float(binary.mean())}
        if self.mask_only:
            return EditOutput(image=None, soft_mask=soft, mask=binary, extras=extras)
        mask_image = Image.fromarray(binary.astype(np.uint8) * 255).resize((res, res), Image.Resampling.BICUBIC)
        out = inpaint(self.models, query, image, mask_image, self.inpaint_steps, self.inpaint_guidance, ctx.generator())
        return EditOutput(image=resize_image(out, sample.size), soft_mask=soft, mask=binary, extras=extras)
