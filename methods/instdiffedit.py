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

from benchmark.adapter import EditContext, MethodAdapter, setting
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
from methods.sd_settings import (
    LMS,
    LMS_CONFIG,
    LMS_CONFIG_DOC,
    InpaintPassSettings,
    NegativePromptSettings,
    SchedulerSettings,
    SDSettings,
    check_prompt_field,
)
from methods.token_maps import TokenLayout, aggregate_maps, token_layout, word_maps

RESAMPLE_FILTERS = ("bicubic", "nearest", "bilinear")


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


@dataclass(frozen=True)
class InstDiffEditSettings(InpaintPassSettings, SchedulerSettings, NegativePromptSettings, SDSettings):
    """Defaults = the official code (xiaotianqing/InstDiffEdit, model/InstDiffEdit.py)."""

    scheduler: str | None = setting(LMS, "official code")
    scheduler_config: dict[str, Any] = setting(LMS_CONFIG, "official code", LMS_CONFIG_DOC)
    strength: float = setting(
        0.5, "official code", "r: fraction of the schedule the image is noised to (the paper's ablation best: 0.5)"
    )
    prompt: str = setting(
        "official_prompt",
        "official code",
        "the text conditioned on: official_prompt (the dataset's meta.official_prompt, else target_words; the "
        "official script uses the list file's replacement phrase, e.g. 'a Shiba Inu dog'), target_words (the edit "
        "phrase) or target_prompt (the full target caption)",
    )
    num_seeds: int = setting(3, "official code", "noise seeds denoised in one batch; attention averaged over them")
    attention_resolution: int | None = setting(
        None,
        "ours",
        "query side of the cross-attention layers read; null: latent side / 4 (16 for SD at 512 px: down_blocks.2 "
        "and up_blocks.1, as the official code; the 8x8 mid block excluded) when the chosen blocks have layers "
        "there, else their side nearest 16, ties to the smaller (the toy world: 16; the tiny model: 8)",
    )
    attention_blocks: list[str] = setting(
        ["down_blocks", "up_blocks"], "official code", "blocks whose layers are read (the official from_where)"
    )
    mask_resolution: int | None = setting(
        None, "ours", "side of the word maps and the mask; null: the latent side (64 at 512 px, as the official code)"
    )
    mask_threshold: float = setting(
        0.2, "paper", "phi: binarisation of the refined, blurred map (the paper's ablation best: 0.2)"
    )
    fg_threshold: float = setting(0.9, "official code", "word map vs index-word map cosine >= this: foreground")
    bg_threshold: float = setting(
        0.6, "official code", "cosine <= this: background (the repo's sample script uses 0.3)"
    )
    blur_kernel: int = setting(5, "official code", "cv2.GaussianBlur((5, 5), sigma) ...")
    blur_sigma: float = setting(
        0.0, "official code", "... 0 = OpenCV's rule (the fixed binomial [1 4 6 4 1]/16 for size 5)"
    )
    blur_times: int = setting(2, "official code", "... applied this many times")
    inpaint_mask_resample: str = setting(
        "bicubic",
        "official code",
        "filter upsampling the mask to the image for inpainting: bicubic (PIL's default, as the official code), "
        "nearest or bilinear",
    )

    def check(self) -> None:
        super().check()
        check_prompt_field("prompt", self.prompt)
        if self.inpaint_mask_resample not in RESAMPLE_FILTERS:
            raise ValueError(f"inpaint_mask_resample='{self.inpaint_mask_resample}': use {', '.join(RESAMPLE_FILTERS)}")
        if self.num_seeds < 1:
            raise ValueError(f"num_seeds={self.num_seeds}: must be ≥ 1")

    def mask_kwargs(self) -> dict[str, Any]:
        """The keywords of ``instant_mask`` these settings fix."""
        return dict(
            threshold=self.mask_threshold,
            fg_threshold=self.fg_threshold,
            bg_threshold=self.bg_threshold,
            blur_kernel=self.blur_kernel,
            blur_sigma=self.blur_sigma,
            blur_times=self.blur_times,
        )


@METHODS.register("instdiffedit")
class InstDiffEdit(MethodAdapter):
    """InstDiffEdit (Zou et al., AAAI 2024): instant cross-attention masks during denoising, then SD inpainting.
    Defaults = the official code (xiaotianqing/InstDiffEdit): SD 1.4 (model=sd14), LMS, 50 steps, strength 0.5
    (25 denoising steps), CFG 7.5, empty negative prompt, 3 noise seeds batched, prompt = the target text.
    Note: the official script conditions on the list file's replacement phrase ("a Shiba Inu dog"; ImageNet lines:
    "a " + the target class), not the caption; other datasets have no such text and use their target edit words."""

    settings_class = InstDiffEditSettings
    settings: InstDiffEditSettings
    base_model = "sd14"
    produces_mask = True
    pipelines = ("text2img", "inpaint")

    def __init__(self, models: Any = None, settings: InstDiffEditSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self.produces_image = not self.settings.mask_only

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        pipe = self.models.pipeline("text2img")
        res = model_resolution(s.resolution, self.models)
        device = pipe._execution_device
        prompt = prompt_text(sample, s.prompt)
        image = resize_image(sample.image, (res, res))
        scheduler = make_scheduler(pipe, s.scheduler, s.scheduler_config)
        source = encode_image(pipe, image, "sample", ctx.generator())
        latent_side = source.shape[-1]
        blocks = tuple(s.attention_blocks)
        side = pick_attention_side(pipe.unet, latent_side, s.attention_resolution, blocks)
        map_size = int(s.mask_resolution or latent_side)
        timesteps = strength_timesteps(scheduler, s.num_inference_steps, s.strength, device)
        b = s.num_seeds
        generators = [ctx.generator(offset=1 + i) for i in range(b)]
        noise = randn_tensor((b, *source.shape[1:]), generator=generators, device=device, dtype=source.dtype)
        latents = scheduler.add_noise(source.expand(b, -1, -1, -1), noise, timesteps[:1])
        cfg = s.guidance_scale > 1.0
        embeds = prompt_embeddings(pipe, prompt, b, s.negative_prompt, guidance=cfg)
        layout = token_layout(pipe.tokenizer, prompt)
        # text-conditioned half of the CFG batch only, at the chosen side, in the down/up blocks (mid excluded)
        store = CrossAttentionStore({side}, batch_slice=slice(b, 2 * b) if cfg else None, layer_filter=blocks)
        blender = LatentBlender(scheduler, source, noise)
        labels = None
        mask = None
        mask_kwargs = s.mask_kwargs()
        with install_controller(pipe.unet, store):
            for t in timesteps:
                latents, _ = guided_step(pipe.unet, scheduler, latents, t, embeds, s.guidance_scale)
                # the mask is recomputed from the running mean of the attention at every step
                mask = instant_mask(aggregate_maps(store, side), layout, map_size, labels, **mask_kwargs)
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
        if s.mask_only:
            return EditOutput(image=None, soft_mask=mask.soft, mask=mask.binary, extras=extras)
        resample = Image.Resampling[s.inpaint_mask_resample.upper()]
        mask_image = Image.fromarray(mask.binary.astype(np.uint8) * 255).resize((res, res), resample)
        out = inpaint(
            self.models,
            prompt,
            image,
            mask_image,
            s.inpaint_steps,
            s.inpaint_guidance_scale,
            ctx.generator(),
            s.negative_prompt,
        )
        return EditOutput(image=resize_image(out, sample.size), soft_mask=mask.soft, mask=mask.binary, extras=extras)


@dataclass(frozen=True)
class InstDiffEditToySettings(InstDiffEditSettings):
    """The official settings scaled from SD at 512 px to the toy world (64 px, 16×16 latents and attention)."""

    mask_resolution: int | None = setting(
        64,
        "ours",
        "toy-world scaling: 4 x the 16x16 attention side, as SD at 512 px (attention 16, mask 64 = its latent side); "
        "the word maps are upsampled 4x (bicubic) and the 5x5 blur covers the same fraction of the image and of an "
        "attention cell as at SD (the toy's latent side, 16, would make it 4x wider); the blend mask is resized to "
        "the 16x16 latents (nearest)",
    )


@METHODS.register("instdiffedit_toy")
class InstDiffEditToy(InstDiffEdit):
    """InstDiffEdit with its SD-at-512-px settings scaled to the toy world (model=toyworld: 64 px images, 16x16
    latents, 16x16 attention): the word maps and the mask at 64x64 (4 x the attention side, as SD's 64x64 mask from
    16x16 attention), so the official 5x5 blur covers the same share of the image; every other setting official.
    The argument and the measured IoU are in docs/toyworld.md."""

    settings_class = InstDiffEditToySettings
    settings: InstDiffEditToySettings
    base_model = "toyworld"
