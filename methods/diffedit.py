"""DiffEdit (Couairon et al., ICLR 2023) through diffusers' ``StableDiffusionDiffEditPipeline``.

Mask: the image is noised to ``mask_encode_strength`` for ``num_maps_per_mask`` noise draws and the noise is
predicted with the target (query) and source (reference) prompts under CFG; |ε_target − ε_source| averaged over
draws and channels, clamped at ``mask_thresholding_ratio`` × its mean and divided by that → the soft mask at latent
resolution; binary = soft > ``mask_threshold`` (0.5). ``diffedit_mask`` computes this with the pipeline's own
pieces in the pipeline's order, so its binary mask equals ``pipe.generate_mask`` bit for bit (tested) while also
returning the soft map ``generate_mask`` discards. Then DDIM inversion of the image with the source prompt
(``invert``, ``inpaint_strength`` 0.8) and masked decoding with the target prompt (``__call__``), the source prompt
as negative prompt as diffusers' DiffEdit guide does (``decode_negative_prompt``).

``diffedit_repo`` is the DiffEdit baseline as the InstDiffEdit paper ran it (its repo's model/diffedit.py: ten pairs
of full img2img passes, blur, threshold 0.3, SD inpainting) — the baseline of that paper's IoU and timing tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from benchmark.adapter import EditContext, MethodAdapter, setting
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import resize_image
from methods.mask_ops import gaussian_blur, min_max
from methods.sd_common import (
    decode_latents,
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
from methods.sd_settings import (
    LMS,
    LMS_CONFIG,
    LMS_CONFIG_DOC,
    InpaintPassSettings,
    SchedulerSettings,
    SDSettings,
    check_prompt_field,
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


@dataclass(frozen=True)
class DiffEditSettings(SchedulerSettings, SDSettings):
    """diffusers' ``StableDiffusionDiffEditPipeline`` defaults (DiffEdit has no official code of its own)."""

    scheduler: str | None = setting(
        "DDIMScheduler", "diffusers", "the pipeline's documented scheduler pair (DDIM + DDIMInverse), model's betas"
    )
    num_maps_per_mask: int = setting(10, "paper", "noise draws whose noise differences are averaged into the mask")
    mask_encode_strength: float = setting(0.5, "paper", "strength the image is noised to for the mask")
    mask_thresholding_ratio: float = setting(3.0, "diffusers", "the difference map is clamped at this × its mean")
    mask_threshold: float = setting(0.5, "diffusers", "binarisation of the soft mask (diffusers: > 0.5)")
    inpaint_strength: float = setting(0.8, "diffusers", "fraction of the schedule inverted and re-denoised")
    invert_guidance_scale: float = setting(7.5, "diffusers", "CFG scale of the inversion (diffusers' invert())")
    decode_negative_prompt: str | None = setting(
        "source_prompt",
        "diffusers",
        "negative prompt of the final masked decoding: a prompt field (source_prompt: diffusers' DiffEdit guide "
        "passes the source caption, so guidance pushes away from it) or null (the empty prompt)",
    )
    mask_only: bool = setting(False, "ours", "true: stop after the mask")

    def check(self) -> None:
        super().check()
        if self.decode_negative_prompt is not None:
            check_prompt_field("decode_negative_prompt", self.decode_negative_prompt)

    def mask_kwargs(self) -> dict[str, Any]:
        """The keywords of ``diffedit_mask`` these settings fix."""
        return dict(
            num_maps_per_mask=self.num_maps_per_mask,
            mask_encode_strength=self.mask_encode_strength,
            mask_thresholding_ratio=self.mask_thresholding_ratio,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            mask_threshold=self.mask_threshold,
        )


@METHODS.register("diffedit")
class DiffEdit(MethodAdapter):
    """DiffEdit (Couairon et al., ICLR 2023) via diffusers' StableDiffusionDiffEditPipeline, with its defaults:
    mask from noise-prediction differences (target vs source prompt, 10 noise draws at strength 0.5, clamp at 3x the
    mean, binarise > 0.5, latent resolution), DDIM inversion with the source prompt (inpaint_strength 0.8), masked
    decoding with the target prompt and the source prompt as negative prompt (diffusers' DiffEdit guide). Base model:
    SD 1.4/1.5 (model=sd14 or sd15)."""

    settings_class = DiffEditSettings
    settings: DiffEditSettings
    base_model = "sd14"
    produces_mask = True
    pipelines = ("diffedit",)

    def __init__(self, models: Any = None, settings: DiffEditSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self.produces_image = not self.settings.mask_only
        self._pipe = None

    def pipeline(self) -> Any:
        """The bundle's DiffEdit pipeline with this method's scheduler and a DDIM inverse scheduler on its config."""
        if self._pipe is None:
            from diffusers import DDIMInverseScheduler

            s = self.settings
            base = self.models.pipeline("diffedit")
            scheduler = make_scheduler(base, s.scheduler, s.scheduler_config)
            inverse = DDIMInverseScheduler.from_config(scheduler.config)
            self._pipe = with_scheduler(base, s.scheduler, s.scheduler_config, inverse_scheduler=inverse)
        return self._pipe

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        pipe = self.pipeline()
        res = model_resolution(s.resolution, self.models)
        image = resize_image(sample.image, (res, res))
        source_prompt = sample.source_prompt or ""
        soft, binary = diffedit_mask(
            pipe, image, sample.target_prompt, source_prompt, ctx.generator(), **s.mask_kwargs()
        )
        extras = {"mask_area": float(binary.mean())}
        if s.mask_only:
            return EditOutput(image=None, soft_mask=soft, mask=binary, extras=extras)
        inverted = pipe.invert(
            prompt=source_prompt,
            image=image,
            num_inference_steps=s.num_inference_steps,
            inpaint_strength=s.inpaint_strength,
            guidance_scale=s.invert_guidance_scale,
            generator=ctx.generator(offset=1),
        ).latents
        mask = torch.from_numpy(binary.astype(np.float32))[None, None]
        negative = (prompt_text(sample, s.decode_negative_prompt) or None) if s.decode_negative_prompt else None
        out = pipe(
            prompt=sample.target_prompt,
            negative_prompt=negative,
            mask_image=mask,
            image_latents=inverted,
            inpaint_strength=s.inpaint_strength,
            num_inference_steps=s.num_inference_steps,
            guidance_scale=s.guidance_scale,
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
    decode_passes: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The DiffEdit baseline of the InstDiffEdit repo (model/diffedit.py): for each noise draw, two full img2img
    passes (reference and query text, same noise) of ``int(N·strength)`` steps; the L2 norm over channels of the
    difference of their last guided noise predictions, averaged over draws, min-max scaled and quantised to 0–255,
    blurred (cv2.GaussianBlur 5×5, σ = 1) → soft mask; binary = soft > ``mask_threshold``.

    ``decode_passes``: decode each pass's final latents to an image, as the official ``predict_noise`` does (it
    returns that image beside the noise; the caller discards it). The images are not used, but the VAE decodes are
    part of the baseline's time, which the InstDiffEdit paper's speedup is measured against."""
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
            if decode_passes:
                decode_latents(pipe, latents)  # official: computed and thrown away, so only its time counts
            last[text] = eps
        diffs.append(noise_distance(last[reference], last[query]))
    return repo_mask(diffs, blur_kernel, blur_sigma, mask_threshold)


def noise_distance(eps_reference: torch.Tensor, eps_query: torch.Tensor) -> torch.Tensor:
    """|ε_reference − ε_query| per latent cell: the L2 norm over channels of the first batch row, (h, w)."""
    return (eps_reference - eps_query)[0].pow(2).sum(0).sqrt()


def repo_mask(
    distances: list[torch.Tensor], blur_kernel: int = 5, blur_sigma: float = 1.0, mask_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """The official post-processing of the draws' noise distances: mean over draws, min-max to [0, 1], ×255
    quantised to uint8 (truncation, as ``astype(np.uint8)``), ``cv2.GaussianBlur`` (``blur_kernel``², σ =
    ``blur_sigma``) → soft = blurred / 255; binary = blurred > 255·``mask_threshold``."""
    diff = min_max(torch.stack(distances).mean(0).float().cpu().numpy())
    img = (diff * 255.0).astype(np.uint8).astype(np.float32)
    soft = gaussian_blur(img, blur_kernel, blur_sigma) / 255.0
    return soft.astype(np.float32), soft > mask_threshold


@dataclass(frozen=True)
class DiffEditRepoSettings(InpaintPassSettings, SchedulerSettings, SDSettings):
    """The InstDiffEdit repo's model/diffedit.py."""

    scheduler: str | None = setting(LMS, "official code")
    scheduler_config: dict[str, Any] = setting(LMS_CONFIG, "official code", LMS_CONFIG_DOC)
    strength: float = setting(0.5, "official code", "each img2img pass denoises int(steps × strength) steps")
    num_draws: int = setting(10, "official code", "noise draws, each with a reference and a query img2img pass")
    query_prompt: str = setting(
        "official_prompt",
        "official code",
        "the query text (and the inpainting prompt): the repo passes the list file's replacement phrase / 'a <target "
        "class>' (official_prompt; other datasets: target_words); any prompt field (target_prompt, target_words, "
        "source_prompt, source_words, official_prompt)",
    )
    reference_prompt: str = setting(
        "source_words", "official code", "the reference text: the phrase to edit / the bare source class"
    )
    blur_kernel: int = setting(5, "official code", "cv2.GaussianBlur kernel size of the difference map")
    blur_sigma: float = setting(1.0, "official code", "sigma of that Gaussian blur")
    mask_threshold: float = setting(0.3, "official code", "binarisation of the blurred map")
    decode_passes: bool = setting(
        True,
        "official code",
        "decode each img2img pass's image as the official predict_noise does (unused, but part of the baseline's "
        "time); false: skip those 2 x num_draws VAE decodes",
    )

    def check(self) -> None:
        super().check()
        check_prompt_field("query_prompt", self.query_prompt)
        check_prompt_field("reference_prompt", self.reference_prompt)


@METHODS.register("diffedit_repo")
class DiffEditRepo(MethodAdapter):
    """DiffEdit as the InstDiffEdit paper ran it (xiaotianqing/InstDiffEdit model/diffedit.py), the baseline of its
    Editing-Mask IoU (33.0) and timing (64.0 s vs 10.8 s per image) numbers: for each of 10 noise draws, two full
    img2img passes (reference = source phrase, query = replacement phrase or "a <class>"; LMS, 50 steps, strength
    0.5, CFG 7.5; each pass's image decoded, as the official code does); |last noise prediction difference| (L2 over
    channels) averaged, min-max, cv2.GaussianBlur 5x5 sigma 1, threshold 0.3; then SD inpainting with the mask and
    the replacement phrase."""

    settings_class = DiffEditRepoSettings
    settings: DiffEditRepoSettings
    base_model = "sd14"
    produces_mask = True
    pipelines = ("text2img", "inpaint")

    def __init__(self, models: Any = None, settings: DiffEditRepoSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self.produces_image = not self.settings.mask_only

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        pipe = self.models.pipeline("text2img")
        res = model_resolution(s.resolution, self.models)
        image = resize_image(sample.image, (res, res))
        query = prompt_text(sample, s.query_prompt)
        scheduler = make_scheduler(pipe, s.scheduler, s.scheduler_config)
        source = encode_image(pipe, image, "sample", ctx.generator())
        generators = [ctx.generator(offset=1 + i) for i in range(s.num_draws)]
        soft, binary = repo_diffedit_mask(
            pipe,
            scheduler,
            source,
            query,
            prompt_text(sample, s.reference_prompt),
            generators,
            s.num_inference_steps,
            s.strength,
            s.guidance_scale,
            blur_kernel=s.blur_kernel,
            blur_sigma=s.blur_sigma,
            mask_threshold=s.mask_threshold,
            decode_passes=s.decode_passes,
        )
        extras = {"mask_area": float(binary.mean())}
        if s.mask_only:
            return EditOutput(image=None, soft_mask=soft, mask=binary, extras=extras)
        mask_image = Image.fromarray(binary.astype(np.uint8) * 255).resize((res, res), Image.Resampling.BICUBIC)
        out = inpaint(self.models, query, image, mask_image, s.inpaint_steps, s.inpaint_guidance_scale, ctx.generator())
        return EditOutput(image=resize_image(out, sample.size), soft_mask=soft, mask=binary, extras=extras)
