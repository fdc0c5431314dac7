"""Quality figures of the toy-world PixArt (``data/toyworld/dit``), measured like the UNet's (``evidence``):

1. **Generated images follow held-out captions**: ``PixArtAlphaPipeline`` images (20 DPM-Solver++ steps, CFG 4.5:
   the pipeline's defaults) from the same held-out captions as the UNet's figure, each object's colour and shape
   classified zero-shot by the shipped toy CLIP: accuracy per (image, object).
2. **Cross-attention finds the objects**: a rendered held-out scene's latents noised to strength 0.5 and denoised
   with its caption (10 of 20 DPM-Solver++ steps, CFG 4.5), the transformer's cross-attention of the object's colour
   and shape words at the 8×8 token grid (text-conditioned half, mean over heads, layers, steps and the two words),
   min-max normalised, bilinearly upsampled to 64×64, thresholded at 0.5, IoU with the object's exact mask.

The bars are the UNet's (``evidence.THRESHOLDS``): the same world, the same classifier, the same scenes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.datasets.synthetic import caption, render
from benchmark.toyworld.dit import SAMPLE_GUIDANCE, SAMPLE_STEPS, TOKEN_GRID, generate, load_dit_pipeline
from benchmark.toyworld.evidence import (
    ATTN_STRENGTH,
    ATTN_THRESHOLD,
    THRESHOLDS,
    ToyClip,
    evidence_scenes,
    iou,
    mean_ci95,
)
from benchmark.toyworld.words import object_token_positions

DEFAULT_N = {"generation": 96, "attention": 128}
FIGURES = ("generated_colour_acc", "generated_shape_acc", "attention_mask_iou")


def generation_hits(pipe: Any, clip: ToyClip, n: int, seed: int, batch: int = 16) -> dict[str, list[bool]]:
    scenes = evidence_scenes(n, seed, "generation")
    images: list[Image.Image] = []
    for i in range(0, n, batch):
        chunk = scenes[i : i + batch]
        images += generate(pipe, [caption(s) for s in chunk], torch.Generator().manual_seed(seed * 1000 + i))
    return clip.attribute_hits(images, scenes)


@torch.no_grad()
def img2img_attention(pipe: Any, images: list[np.ndarray], captions: list[str], generator: torch.Generator):
    """Denoise the images' latents from strength ``ATTN_STRENGTH`` with CFG, as PixArtAlphaPipeline's loop does,
    capturing the text-conditioned half's cross-attention at the token grid: (B, 8, 8, tokens)."""
    from diffusers import DDPMScheduler

    from benchmark.attention import CrossAttentionStore, install_controller
    from benchmark.toyworld.render_batches import to_tensor

    vae, transformer = pipe.vae, pipe.transformer
    x0 = vae.encode(to_tensor(images)).latent_dist.sample(generator) * vae.config.scaling_factor
    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    sched.set_timesteps(SAMPLE_STEPS)
    timesteps = sched.timesteps[round(SAMPLE_STEPS * (1 - ATTN_STRENGTH)) :]
    noise = torch.randn(x0.shape, generator=generator)
    x = DDPMScheduler.from_config(sched.config).add_noise(x0, noise, timesteps[:1].repeat(len(images)))
    cond, cond_mask, uncond, uncond_mask = pipe.encode_prompt(
        captions, do_classifier_free_guidance=True, device=x.device, clean_caption=False
    )
    text, mask = torch.cat([uncond, cond]), torch.cat([uncond_mask, cond_mask])
    store = CrossAttentionStore({TOKEN_GRID}, batch_slice=slice(len(images), None))
    with install_controller(transformer, store):
        for t in timesteps:
            eps = transformer(
                torch.cat([x, x]),
                encoder_hidden_states=text,
                encoder_attention_mask=mask,
                timestep=t.repeat(2 * len(images)),
                added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            ).sample
            eps_uncond, eps_cond = eps.chunk(2)
            x = sched.step(eps_uncond + SAMPLE_GUIDANCE * (eps_cond - eps_uncond), t, x).prev_sample
    return store.mean(TOKEN_GRID)


def attention_iou(pipe: Any, n: int, seed: int, batch: int = 16) -> dict[str, list[float]]:
    scenes = evidence_scenes(n, seed, "attention")
    ious, contrast = [], []
    for i in range(0, n, batch):
        chunk = scenes[i : i + batch]
        rendered = [render(s, 64) for s in chunk]
        captions = [caption(s) for s in chunk]
        maps = img2img_attention(pipe, [r[0] for r in rendered], captions, torch.Generator().manual_seed(seed + i))
        for b, (cap, (_, masks)) in enumerate(zip(captions, rendered, strict=True)):
            objects = object_token_positions(pipe.tokenizer, cap)
            if len(objects) != len(masks):
                raise RuntimeError(f"caption '{cap}': found {len(objects)} objects, scene has {len(masks)}")
            for toks, mask in zip(objects, masks, strict=True):
                m = maps[b, :, :, toks].mean(-1)
                m = (m - m.min()) / (m.max() - m.min() + 1e-8)
                up = F.interpolate(m[None, None], size=mask.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
                ious.append(iou(up > ATTN_THRESHOLD, mask))
                contrast.append(float(up[mask].mean() - up[~mask].mean()))
    return {"mask_iou": ious, "inside_minus_outside": contrast}


def dit_evidence(dit_folder: Path, clip_folder: Path, n: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The DiT's figures, in the layout of ``evidence.evidence`` (so ``format_evidence`` prints them)."""
    sizes = {k: int(n or v) for k, v in DEFAULT_N.items()}
    t0 = time.time()
    clip = ToyClip(Path(clip_folder))
    pipe = load_dit_pipeline(Path(dit_folder))
    with torch.no_grad():
        g = generation_hits(pipe, clip, sizes["generation"], seed)
        a = attention_iou(pipe, sizes["attention"], seed)
    per_object = {
        "generated_colour_acc": g["colour"],
        "generated_shape_acc": g["shape"],
        "attention_mask_iou": a["mask_iou"],
    }
    values = {k: float(np.mean(v)) for k, v in per_object.items()}
    thresholds = {k: THRESHOLDS[k] for k in FIGURES}
    checks = {k: bool(values[k] >= thresholds[k]) for k in FIGURES}
    return {
        "model": str(dit_folder),
        "seed": seed,
        "n": sizes,
        "values": values,
        "ci95": {k: mean_ci95(v) for k, v in per_object.items()},
        "objects": {k: len(v) for k, v in per_object.items()},
        "attention_diagnostics": {"inside_minus_outside_8x8": float(np.mean(a["inside_minus_outside"]))},
        "thresholds": thresholds,
        "checks": checks,
        "passed": all(checks.values()),
        "settings": {
            "guidance": SAMPLE_GUIDANCE,
            "steps": SAMPLE_STEPS,
            "attention_strength": ATTN_STRENGTH,
            "attention_threshold": ATTN_THRESHOLD,
            "token_grid": TOKEN_GRID,
        },
        "seconds": round(time.time() - t0, 1),
    }
