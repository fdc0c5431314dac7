"""InstDiffEdit (Zou et al., AAAI 2024): instant masks from cross-attention during denoising, then inpainting.

Follows the official code (xiaotianqing/InstDiffEdit, model/InstDiffEdit.py) step by step; see REFERENCE.md:
the image is noised to strength r (LMS, 50 steps, r = 0.5 → 25 denoising steps) for 3 noise seeds batched under
classifier-free guidance with the target text (the official code uses the dataset's replacement phrase, e.g.
"a Shiba Inu dog", and "a tiger" for an ImageNet line: ``prompt: official_prompt``). At every step the running
mean of the text-conditioned cross-attention probabilities at the 16×16 layers (SD at 512 px) gives per-word
maps, from which the instant mask is built (``instant_mask``); the latents are then blended with the source
noised to the step's timestep inside/outside that mask. The final image is SD inpainting with the last mask and
the same text.

The mask module is pure and separately testable: ``prepare_word_images`` → ``word_labels`` (computed once, at the
first step) → ``refine`` → ``finish``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.attention import CrossAttentionStore, install_controller
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.blending import LatentBlender
from methods.image_ops import resize_image
from methods.mask_ops import gaussian_blur, min_max
from methods.sd_common import (
    encode_image,
    guided_step,
    inpaint,
    make_scheduler,
    mask_tensor,
    model_resolution,
    pick_attention_side,
    prompt_embeddings,
    prompt_text,
    strength_timesteps,
)
from methods.token_maps import TokenLayout, aggregate_maps, token_layout, word_maps


def prepare_word_images(maps: np.ndarray, size: int) -> np.ndarray:
    """Per-word maps (side, side, K) with K = start, words..., end → (K, size, size) uint8-valued float images.

    As the official ``token_combination``: each map scaled to 0–255 by its maximum and quantised to uint8,
    resized with PIL's bicubic filter, the start-token map inverted, then each min-max normalised to 0–255 and
    quantised again."""
    out = []
    for k in range(maps.shape[-1]):
        m = maps[..., k].astype(np.float32)
        peak = float(m.max())
        scaled = (255.0 * m / peak) if peak > 0 else np.zeros_like(m)
        im = Image.fromarray(scaled.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.float32)
        if k == 0:
            arr = 255.0 - arr
        out.append((min_max(arr / 255.0) * 255.0).astype(np.uint8).astype(np.float32))
    return np.stack(out)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


@dataclass(frozen=True)
class WordLabels:
    """Labels of [start, words..., end]: 1 foreground, −1 background, 0 ignored; ``index`` = the index word's
    position in that list; ``similarity`` = each word's cosine similarity with the index word's map."""

    labels: tuple[int, ...]
    index: int
    similarity: tuple[float, ...]


def word_labels(images: np.ndarray, fg_threshold: float = 0.9, bg_threshold: float = 0.6) -> WordLabels:
    """The index word = the word (end token excluded) most similar to the inverted start-token map; each word is
    foreground when its similarity with the index word's map is ≥ ``fg_threshold``, background when ≤
    ``bg_threshold``, ignored otherwise. Start and end tokens are never labelled."""
    start, words = images[0], images[1:-1]
    to_start = [cosine(w, start) for w in words]
    index = int(np.argmax(to_start))  # first maximum, like the official strict '>' scan
    sims = [1.0 if i == index else cosine(w, words[index]) for i, w in enumerate(words)]
    labels = [0] + [1 if s >= fg_threshold else -1 if s <= bg_threshold else 0 for s in sims] + [0]
    return WordLabels(tuple(labels), index + 1, tuple(sims))


def refine(images: np.ndarray, labels: WordLabels) -> np.ndarray:
    """min-max(mean of foreground maps) − min-max(mean of background maps), clamped at 0; without background
    words, the foreground mean alone."""
    x = images.astype(np.float32) / 255.0
    lab = np.asarray(labels.labels)
    fg = min_max(x[lab == 1].mean(0))
    if not (lab == -1).any():
        return fg
    bg = min_max(x[lab == -1].mean(0))
    return np.clip(fg - bg, 0.0, None)


def finish(
    img: np.ndarray, threshold: float = 0.2, blur_kernel: int = 5, blur_sigma: float = 0.0, blur_times: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Blur (twice by default), min-max → soft mask in [0, 1]; binary = soft > ``threshold`` (φ)."""
    for _ in range(int(blur_times)):
        img = gaussian_blur(img, blur_kernel, blur_sigma)
    soft = min_max(img).astype(np.float32)
    return soft, soft > threshold


@dataclass(frozen=True)
class InstantMask:
    soft: np.ndarray
    binary: np.ndarray
    labels: WordLabels | None
    words: tuple[str, ...]


def instant_mask(
    token_maps: torch.Tensor,
    layout: TokenLayout,
    size: int,
    labels: WordLabels | None = None,
    threshold: float = 0.2,
    fg_threshold: float = 0.9,
    bg_threshold: float = 0.6,
    blur_kernel: int = 5,
    blur_sigma: float = 0.0,
    blur_times: int = 2,
) -> InstantMask:
    """The instant mask from aggregated cross-attention ``token_maps`` (side, side, tokens) at ``size``².

    ``labels`` (from an earlier step) are reused when given: the official code labels the words once, at the
    first denoising step. A prompt of one word uses that word's map directly."""
    maps, names = word_maps(token_maps, layout)
    if layout.start is None or layout.end is None:
        raise ValueError("InstDiffEdit needs a tokenizer with start and end tokens (CLIP)")
    if maps.shape[-1] < 3:
        raise ValueError(f"prompt {layout.prompt!r}: no word left to build a mask from")
    images = prepare_word_images(maps.detach().cpu().numpy(), size)
    if images.shape[0] == 3:
        img, labels = images[1] / 255.0, None
    else:
        if labels is None:
            labels = word_labels(images, fg_threshold, bg_threshold)
        img = refine(images, labels)
    soft, binary = finish(img.astype(np.float32), threshold, blur_kernel, blur_sigma, blur_times)
    return InstantMask(soft, binary, labels, tuple(names))


@METHODS.register("instdiffedit")
class InstDiffEdit(MethodAdapter):
    name = "instdiffedit"
    produces_mask = True
    pipelines = ("text2img", "inpaint")

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        strength: float = 0.5,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        prompt: str = "official_prompt",
        num_seeds: int = 3,
        scheduler: str | None = "LMSDiscreteScheduler",
        scheduler_config: dict | None = None,
        attention_resolution: int | None = None,
        attention_blocks: tuple[str, ...] | list[str] = ("down_blocks", "up_blocks"),
        mask_resolution: int | None = None,
        mask_threshold: float = 0.2,
        fg_threshold: float = 0.9,
        bg_threshold: float = 0.6,
        blur_kernel: int = 5,
        blur_sigma: float = 0.0,
        blur_times: int = 2,
        mask_only: bool = False,
        inpaint_num_inference_steps: int | None = None,
        inpaint_guidance_scale: float = 7.5,
        inpaint_mask_resample: str = "bicubic",
        resolution: int | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        self.steps = int(num_inference_steps)
        self.strength = float(strength)
        self.guidance = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.prompt_field = prompt
        self.num_seeds = int(num_seeds)
        self.scheduler_name = scheduler
        self.scheduler_config = dict(scheduler_config or {})
        self.attention_resolution = attention_resolution
        self.attention_blocks = tuple(attention_blocks)
        self.mask_resolution = mask_resolution
        self.mask_kwargs = dict(
            threshold=float(mask_threshold),
            fg_threshold=float(fg_threshold),
            bg_threshold=float(bg_threshold),
            blur_kernel=int(blur_kernel),
            blur_sigma=float(blur_sigma),
            blur_times=int(blur_times),
        )
        self.mask_only = bool(mask_only)
        self.produces_image = not self.mask_only
        self.inpaint_steps = int(inpaint_num_inference_steps or num_inference_steps)
        self.inpaint_guidance = float(inpaint_guidance_scale)
        if inpaint_mask_resample not in ("bicubic", "nearest", "bilinear"):
            raise ValueError(
                f"instdiffedit.inpaint_mask_resample='{inpaint_mask_resample}': use bicubic, nearest or bilinear"
            )
        self.inpaint_resample = Image.Resampling[inpaint_mask_resample.upper()]
        self.resolution = resolution
        if self.num_seeds < 1:
            raise ValueError(f"instdiffedit.num_seeds={num_seeds}: must be ≥ 1")

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.models.pipeline("text2img")
        res = model_resolution(self.resolution, self.models)
        device = pipe._execution_device
        prompt = prompt_text(sample, self.prompt_field)
        image = resize_image(sample.image, (res, res))
        scheduler = make_scheduler(pipe, self.scheduler_name, self.scheduler_config)
        source = encode_image(pipe, image, res, ctx.generator())
        latent_side = source.shape[-1]
        side = pick_attention_side(pipe.unet, latent_side, self.attention_resolution, self.attention_blocks)
        map_size = int(self.mask_resolution or latent_side)
        timesteps = strength_timesteps(scheduler, self.steps, self.strength, device)
        b = self.num_seeds
        generators = [ctx.generator(offset=1 + i) for i in range(b)]
        noise = randn_tensor((b, *source.shape[1:]), generator=generators, device=device, dtype=source.dtype)
        latents = scheduler.add_noise(source.expand(b, -1, -1, -1), noise, timesteps[:1])
        cfg = self.guidance > 1.0
        embeds = prompt_embeddings(pipe, prompt, b, self.negative_prompt, guidance=cfg)
        layout = token_layout(pipe.tokenizer, prompt)
        # text-conditioned half of the CFG batch only, at the chosen side, in the down/up blocks (mid excluded)
        store = CrossAttentionStore(
            {side}, batch_slice=slice(b, 2 * b) if cfg else None, layer_filter=self.attention_blocks
        )
        blender = LatentBlender(scheduler, source, noise)
        labels = None
        mask = None
        with install_controller(pipe.unet, store):
            for t in timesteps:
                latents, _ = guided_step(pipe.unet, scheduler, latents, t, embeds, self.guidance)
                # the mask is recomputed from the running mean of the attention at every step
                mask = instant_mask(aggregate_maps(store, side), layout, map_size, labels, **self.mask_kwargs)
                labels = mask.labels
                m = mask_tensor(mask.binary, latent_side, device, latents.dtype)
                latents = blender(latents, m, t)
        extras = {
            "attention_side": side,
            "attention_layers": sorted(store.layers),
            "words": list(mask.words),
            "index_word": mask.words[mask.labels.index] if mask.labels else mask.words[1],
            "word_labels": list(mask.labels.labels) if mask.labels else None,
            "mask_area": float(mask.binary.mean()),
        }
        if self.mask_only:
            return EditOutput(image=None, soft_mask=mask.soft, mask=mask.binary, extras=extras)
        mask_image = Image.fromarray(mask.binary.astype(np.uint8) * 255).resize((res, res), self.inpaint_resample)
        out = inpaint(
            self.models,
            prompt,
            image,
            mask_image,
            self.inpaint_steps,
            self.inpaint_guidance,
            ctx.generator(),
            self.negative_prompt,
        )
        return EditOutput(image=resize_image(out, sample.size), soft_mask=mask.soft, mask=mask.binary, extras=extras)
