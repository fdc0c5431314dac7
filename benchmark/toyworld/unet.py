"""The toy world's denoisers: a text-to-image ``UNet2DConditionModel`` with cross-attention at 16×16 and 8×8, and
the 9-channel inpainting UNet initialised from it (SD-inpainting style), with their training losses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation

from benchmark.datasets.synthetic import _rng, caption, random_edit, random_scene, render
from benchmark.tiny_models import SD_BETAS
from benchmark.toyworld.render_batches import NAMESPACE, to_tensor

UNET_CFG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (48, 96, 80),  # 2.9M parameters: sized so all shipped weights stay under 30 MB
    "layers_per_block": 1,
    # 16×16: down_blocks.0 / up_blocks.2; 8×8: down_blocks.1 / up_blocks.1; the 4×4 level and mid block see text
    # only through the mid block's cross-attention
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": (1, 2, 2),  # diffusers' legacy name: heads per block (48-channel heads, as SD's 40-160)
    "norm_num_groups": 16,
}
CAPTION_DROPOUT = 0.1  # the empty prompt, for classifier-free guidance
SNR_GAMMA = 5.0  # min-SNR loss weighting (Hang et al., 2023): faster convergence at the same cost
# Token grounding (TokenCompose, Wang et al., CVPR 2024): the cross-attention of an object's colour and shape words
# is pulled into that object's mask, at every cross-attention layer of these query sides. SD learns such maps from
# billions of images; a 3M-parameter UNet trained for an hour on CPU does not (its 16×16 maps sat outside the
# objects), and attention-based methods (InstDiffEdit, P2P) need them.
GROUNDING_SIDES = (16, 8)
GROUNDING_WEIGHT = 0.1  # the token term: attention mass inside the object
PIXEL_WEIGHT = 0.05  # the pixel term: every cell of the object attends to its words (coverage)


def build_unet(seed: int = 0, in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**UNET_CFG, "in_channels": in_channels})


def noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{k: v for k, v in SD_BETAS.items() if k != "set_alpha_to_one"})


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    """Exactly what the SD pipelines feed the UNet: 77 tokens padded with the end token, last hidden state."""
    ids = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids)[0]


def drop_captions(captions: list[str], rng: np.random.Generator) -> list[str]:
    return ["" if rng.random() < CAPTION_DROPOUT else c for c in captions]


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return vae.encode(images).latent_dist.sample(generator) * vae.config.scaling_factor


def denoising_loss(
    unet,
    sched,
    latents: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """ε-prediction MSE at uniform timesteps, min-SNR-γ weighted; ``extra`` channels (inpainting) are appended
    after the noisy latents as the SD inpainting pipeline does."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=generator)
    noisy = sched.add_noise(latents, noise, t)
    model_in = noisy if extra is None else torch.cat([noisy, extra], dim=1)
    pred = unet(model_in, t, cond).sample
    ac = sched.alphas_cumprod[t]
    snr = ac / (1 - ac)
    weight = snr.clamp(max=SNR_GAMMA) / snr
    return (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()


class AttentionGrab:
    """Attention controller (``benchmark.attention``) that keeps the cross-attention probabilities of the layers at
    the given query sides, gradients attached, for the grounding loss of the same forward pass."""

    def __init__(self, sides: tuple[int, ...] = GROUNDING_SIDES) -> None:
        self.sides = frozenset(sides)
        self.maps: list[tuple[int, int, torch.Tensor]] = []  # (heads, side, probs (batch·heads, side², tokens))

    def wants(self, call: Any) -> bool:
        return call.is_cross and call.side in self.sides and call.side * call.side == call.query_len

    def __call__(self, probs: torch.Tensor, call: Any) -> torch.Tensor:
        self.maps.append((call.heads, call.side, probs))
        return probs


def grounding_targets(
    tokenizer: Any, captions: list[str], masks: list[list[np.ndarray]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every object of every (non-empty) caption: (batch row, its two token positions, its mask (N, 1, H, W))."""
    from benchmark.toyworld.words import object_token_positions

    rows, tokens, object_masks = [], [], []
    for b, (text, scene_masks) in enumerate(zip(captions, masks, strict=True)):
        if not text:  # dropped caption: nothing to ground
            continue
        positions = object_token_positions(tokenizer, text)
        if len(positions) != len(scene_masks):
            raise RuntimeError(f"caption '{text}': {len(positions)} objects in the text, {len(scene_masks)} masks")
        for pos, m in zip(positions, scene_masks, strict=True):
            rows.append(b)
            tokens.append(pos)
            object_masks.append(m)
    if not rows:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 1, 1, 1)
    m = torch.from_numpy(np.stack(object_masks).astype(np.float32))[:, None]
    return torch.tensor(rows), torch.tensor(tokens), m


def grounding_loss(
    maps: list[tuple[int, int, torch.Tensor]], rows: torch.Tensor, tokens: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """TokenCompose's two terms, averaged over layers, objects and the object's two words, with masks
    area-downsampled to each layer's grid (fraction of a cell covered):

    - token: 1 − (attention mass inside the object's mask) / (total mass);
    - pixel: binary cross-entropy between the word's attention probability at each cell and the mask.
    """
    if not len(rows) or not maps:
        return torch.zeros(()), torch.zeros(())
    token, pixel = [], []
    for heads, side, probs in maps:
        p = probs.reshape(-1, heads, side * side, probs.shape[-1]).mean(1)[rows]  # (N, side², tokens)
        a = torch.gather(p, 2, tokens[:, None, :].expand(-1, side * side, -1))  # (N, side², 2)
        m = F.interpolate(masks, size=(side, side), mode="area").flatten(1)[:, :, None]  # (N, side², 1)
        token.append(1 - (a * m).sum(1) / a.sum(1).clamp_min(1e-8))
        pixel.append(F.binary_cross_entropy(a.clamp(1e-6, 1 - 1e-6), m.expand_as(a)))
    return torch.stack(token).mean(), torch.stack(pixel).mean()


MASK_KINDS = ("edit", "object", "box", "background", "full")
MASK_P = (0.4, 0.2, 0.15, 0.15, 0.1)


def inpaint_example(seed: int, step: int, i: int, size: int = 64) -> tuple[np.ndarray, np.ndarray, str]:
    """(image, mask, caption of the image) for inpainting training: mostly masks shaped like the editing set's GT
    (the pixels an edit changes, one object, the background), plus boxes and the full image."""
    rng = _rng(NAMESPACE, seed, "inpaint", step, i)
    scene = random_scene(rng)
    kind = str(rng.choice(MASK_KINDS, p=MASK_P))
    if kind == "edit":
        edit_type = str(rng.choice(("replace_shape", "change_colour", "change_background")))
        src, _ = render(scene, size)
        scene = random_edit(scene, rng, edit_type).target
        img, _ = render(scene, size)
        mask = np.any(src != img, axis=-1)
        if not mask.any():
            mask[size // 4 : size // 2, size // 4 : size // 2] = True
    else:
        img, masks = render(scene, size)
        if kind == "object":
            mask = masks[int(rng.integers(len(masks)))]
            grow = int(rng.integers(0, 4))
            if grow:
                mask = binary_dilation(mask, iterations=grow)
        elif kind == "background":
            mask = ~np.any(np.stack(masks), axis=0)
        elif kind == "box":
            w, h = rng.integers(8, 41, size=2)
            x, y = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
            mask = np.zeros((size, size), dtype=bool)
            mask[y : y + h, x : x + w] = True
        else:
            mask = np.ones((size, size), dtype=bool)
    return img, mask, caption(scene)


def inpaint_batch(seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """images (B, 3, H, W) in [-1, 1], masks (B, 1, H, W) in {0, 1}, captions."""
    items = [inpaint_example(seed, step, i) for i in range(batch_size)]
    images = to_tensor([it[0] for it in items])
    masks = torch.from_numpy(np.stack([it[1] for it in items]).astype(np.float32))[:, None]
    return images, masks, [it[2] for it in items]


@torch.no_grad()
def inpaint_conditioning(vae, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The 5 extra channels of SD inpainting, made as StableDiffusionInpaintPipeline makes them: the mask resized
    (nearest) to the latent grid, and the latents of the image with the masked pixels set to 0 (mid-grey)."""
    masked = images * (masks < 0.5)
    masked_latents = encode_latents(vae, masked, generator)
    small = F.interpolate(masks, size=masked_latents.shape[-2:])
    return torch.cat([small, masked_latents], dim=1)
