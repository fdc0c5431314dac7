"""Pieces shared by the Stable-Diffusion method adapters: image ↔ latents, prompt embeddings, scheduler choice,
img2img-style timesteps, and which UNet layers hold cross-attention at which query resolution."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from benchmark.models import scheduler_class  # noqa: F401 — re-exported for the adapters


def model_resolution(resolution: int | None, models: Any) -> int:
    """The method's working resolution: its own ``resolution`` param, else the model config's (512 for SD)."""
    res = int(resolution or models.cfg.get("resolution", 512))
    if res % 8:
        raise ValueError(f"resolution={res}: must be a multiple of 8 (the VAE's downsampling factor)")
    return res


@torch.no_grad()
def encode_image(
    pipe: Any,
    image: Image.Image,
    posterior: Literal["sample", "mean"],
    generator: torch.Generator | None = None,
    memory_format: torch.memory_format = torch.channels_last,
) -> torch.Tensor:
    """VAE latents (× the VAE's scaling factor, in its dtype) of ``image`` at its own size: callers resize it to the
    working resolution first (``methods.image_ops.resize_image``), so nothing is resized here.

    ``posterior``: ``sample`` draws from the VAE posterior with ``generator`` (InstDiffEdit, the InstDiffEdit repo's
    DiffEdit, as diffusers' img2img does), ``mean`` takes its mean (Blended Latent Diffusion, P2P's inversion).
    ``memory_format``: how the pixels are laid out for the VAE. Channels-last is what diffusers' image processor
    hands its pipelines; ``torch.contiguous_format`` is P2P's official code (a permuted HWC array). The VAE's
    convolutions run other kernels for the two, so the latents differ in their last bits."""
    if posterior not in ("sample", "mean"):
        raise ValueError(f"posterior='{posterior}': use sample or mean")
    width, height = image.size
    pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width)
    vae = pipe.vae
    pixels = pixels.to(device=vae.device, dtype=vae.dtype).contiguous(memory_format=memory_format)
    dist = vae.encode(pixels).latent_dist
    latents = dist.sample(generator) if posterior == "sample" else dist.mean
    return latents * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor, float32_pixels: bool = False) -> list[Image.Image]:
    """PIL images of VAE ``latents`` (scaled as ``encode_image`` returns them).

    ``float32_pixels``: turn the decoded pixels to float32 before they are scaled to 0-255 (P2P's inversion code)
    instead of scaling them in the VAE's dtype as diffusers' pipelines do; the same on a float32 VAE."""
    vae = pipe.vae
    pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(pixels.float() if float32_pixels else pixels, output_type="pil")


@torch.no_grad()
def prompt_embeddings(
    pipe: Any, prompt: str, copies: int, negative_prompt: str = "", guidance: bool = True
) -> torch.Tensor:
    """Text embeddings for a CFG batch: [negative × copies, prompt × copies] (or only the prompt without CFG)."""
    cond, uncond = pipe.encode_prompt(prompt, pipe._execution_device, copies, guidance, negative_prompt)
    return torch.cat([uncond, cond]) if guidance else cond


def guided_step(
    unet: Any, scheduler: Any, latents: torch.Tensor, t: Any, embeds: torch.Tensor, guidance_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sampling step as the SD pipelines take it: with ``guidance_scale`` > 1 the latents are doubled into an
    [unconditional, text] batch (``embeds`` from ``prompt_embeddings`` holds both halves) and the noise predictions
    combined by classifier-free guidance. Returns (the next latents, the guided noise prediction)."""
    cfg = guidance_scale > 1.0
    model_in = scheduler.scale_model_input(torch.cat([latents] * 2) if cfg else latents, t)
    eps = unet(model_in, t, encoder_hidden_states=embeds).sample
    if cfg:
        uncond, text = eps.chunk(2)
        eps = uncond + guidance_scale * (text - uncond)
    return scheduler.step(eps, t, latents).prev_sample, eps


@torch.no_grad()
def inpaint(
    models: Any,
    prompt: str,
    image: Image.Image,
    mask_image: Image.Image,
    num_inference_steps: int,
    guidance_scale: float,
    generator: torch.Generator,
    negative_prompt: str = "",
) -> Image.Image:
    """The model bundle's SD inpainting pipeline on ``image`` inside ``mask_image`` (white = repaint), at the
    image's size: the second half of the mask-then-inpaint methods and the whole of the mask oracle."""
    width, height = image.size
    return models.pipeline("inpaint")(
        prompt=prompt,
        negative_prompt=negative_prompt,
        image=image,
        mask_image=mask_image,
        height=height,
        width=width,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=generator,
    ).images[0]


def make_scheduler(pipe: Any, name: str | None, overrides: dict[str, Any] | None = None) -> Any:
    """A fresh scheduler of class ``name`` (a diffusers scheduler class name; None: the pipeline's own class) built
    from the pipeline's scheduler config, so the model's noise schedule is kept; ``overrides`` set config keys such
    as ``timestep_spacing``."""
    cls = type(pipe.scheduler) if not name else scheduler_class(name)
    return cls.from_config(pipe.scheduler.config, **dict(overrides or {}))


def with_scheduler(pipe: Any, name: str | None, overrides: dict[str, Any] | None = None, **components: Any) -> Any:
    """The same pipeline (shared modules, nothing reloaded) with another scheduler; ``pipe`` itself is untouched,
    so other methods of the run keep the model's default."""
    if not name and not overrides and not components:
        return pipe
    with warnings.catch_warnings():
        # the img2img pipeline prints its 25-line "steps_offset should be 1" FutureWarning and sets it to 1: SDEdit's
        # official LMS config has 0 with "linspace" spacing, where steps_offset moves no timestep (tested)
        warnings.filterwarnings("ignore", message=r"(?s)The configuration file of this scheduler.*steps_offset")
        new = type(pipe).from_pipe(pipe, scheduler=make_scheduler(pipe, name, overrides), **components)
    new.set_progress_bar_config(disable=True)
    return new


def strength_timesteps(
    scheduler: Any, num_inference_steps: int, strength: float, device: torch.device | str
) -> torch.Tensor:
    """The last ``int(num_inference_steps · strength)`` timesteps (diffusers' img2img rule); noise is added at the
    first of them."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength={strength}: must be in (0, 1]")
    scheduler.set_timesteps(num_inference_steps, device=device)
    n = min(int(num_inference_steps * strength), num_inference_steps)
    if n < 1:
        raise ValueError(f"num_inference_steps={num_inference_steps} × strength={strength} leaves no denoising step")
    return scheduler.timesteps[(num_inference_steps - n) * scheduler.order :]


def cross_attention_sides(unet: Any, latent_side: int) -> dict[str, int]:
    """Query grid side of every cross-attention layer of a ``UNet2DConditionModel`` for a square latent.

    Down block i works at ``latent / 2**i`` (each but the last halves the side), the mid block at the smallest
    side, up block j mirrors down block ``n-1-j``."""
    n = len(unet.config.down_block_types)

    def down(levels: int) -> int:
        side = latent_side
        for _ in range(levels):
            side = math.ceil(side / 2)
        return side

    sides = {}
    for name in unet.attn_processors:
        if ".attn2." not in name:
            continue
        parts = name.split(".")
        if parts[0] == "down_blocks":
            sides[name] = down(int(parts[1]))
        elif parts[0] == "up_blocks":
            sides[name] = down(n - 1 - int(parts[1]))
        elif parts[0] == "mid_block":
            sides[name] = down(n - 1)
    return sides


def pick_side(sides: set[int], latent_side: int, requested: int | None, what: str) -> int:
    """The attention map side a method reads among ``sides``: ``requested`` if given (it must be one of them),
    else ``latent_side / 4`` (16 for SD at 512 px, the side the InstDiffEdit and P2P papers read; the same rule at
    any resolution) when present, else the side nearest to 16 (the toy world's 16×16 latents: 16; the tiny model's
    8×8 latents: 8); ties go to the smaller side. ``what`` names the option in errors."""
    if not sides:
        raise ValueError(f"{what}: the denoiser has no such attention layers")
    if requested is not None:
        if int(requested) not in sides:
            raise ValueError(
                f"{what}={requested}: no attention layer works at that side for latent side {latent_side}; "
                f"available: {sorted(sides)}"
            )
        return int(requested)
    quarter = latent_side // 4
    return quarter if quarter in sides else min(sides, key=lambda s: (abs(s - 16), s))


def pick_attention_side(
    unet: Any, latent_side: int, requested: int | None, prefixes: tuple[str, ...] = ("down_blocks", "up_blocks")
) -> int:
    """``pick_side`` among the cross-attention layers of the chosen blocks (``prefixes``; the mid block is SD's
    8×8 level, which neither paper reads)."""
    sides = {s for name, s in cross_attention_sides(unet, latent_side).items() if name.startswith(prefixes)}
    if not sides:
        raise ValueError(f"the denoiser has no cross-attention layers in {', '.join(prefixes)}")
    return pick_side(sides, latent_side, requested, "attention_resolution")


def mask_tensor(
    mask: np.ndarray,
    side: int,
    device: torch.device,
    dtype: torch.dtype,
    resample: Image.Resampling = Image.Resampling.NEAREST,
    threshold: float | None = 0.5,
) -> torch.Tensor:
    """A (1, 1, side, side) tensor of a bool/float mask resized with ``resample`` (then binarised at ``threshold``
    unless it is None)."""
    arr = np.asarray(mask, dtype=np.float32)
    im = Image.fromarray(arr, mode="F").resize((side, side), resample)
    out = np.asarray(im, dtype=np.float32)
    if threshold is not None:
        out = (out >= threshold).astype(np.float32)
    return torch.from_numpy(out)[None, None].to(device=device, dtype=dtype)


PROMPT_FIELDS = ("target_prompt", "target_words", "source_prompt", "source_words", "official_prompt")


def prompt_text(sample: Any, field: str) -> str:
    """The text a method conditions on: a caption (``target_prompt``/``source_prompt``) or the edit phrase
    (``target_words``/``source_words`` = ``edit_words``); an empty phrase falls back to the caption.
    ``official_prompt``: the text the dataset's own paper code conditioned on (``meta.official_prompt``, e.g.
    Editing-Mask's "a tiger" for an ImageNet line whose target class is "tiger"), else ``target_words``."""
    if field not in PROMPT_FIELDS:
        raise ValueError(f"prompt field '{field}': use one of {', '.join(PROMPT_FIELDS)}")
    if field == "official_prompt":
        return (sample.meta or {}).get("official_prompt") or prompt_text(sample, "target_words")
    side = field.split("_")[0]
    caption = sample.target_prompt if side == "target" else sample.source_prompt
    if field.endswith("_words"):
        words = sample.edit_words[1 if side == "target" else 0]
        return words or caption
    return caption
