"""Prompt-to-Prompt's attention controller and LocalBlend, on top of ``benchmark.attention.install_controller``.

The source and the target prompt are denoised in one batch; with CFG the rows are
[uncond_src, uncond_tgt, cond_src, cond_tgt], without it [src, tgt]. As in the official code only the
text-conditioned rows (the last two) are edited:

- cross-attention: the target's probabilities become an edit of the source's (replace: ``src @ mapper``; refine:
  aligned source tokens, the target's own for new tokens; reweight: the result × equalizer), mixed in per token by
  the step's cross-replace schedule;
- self-attention: for steps in [self_start, self_end) and layers whose queries are at most ``self_max_len``, the
  target takes the source's probabilities;
- LocalBlend reads the (edited) cross-attention of the layers at one resolution, and after each step keeps the
  target's latents only inside the union of the source and target blend-word masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.attention import AttnCall


@dataclass
class CrossEdit:
    """How the target's cross-attention is rebuilt from the source's (all tensors of length L = key tokens)."""

    kind: str  # "replace" | "refine"
    mapper: torch.Tensor  # replace: (L, L) float; refine: (L,) long, −1 for tokens new in the target
    alphas: torch.Tensor | None = None  # refine: (L,) 1 = take the source's attention
    equalizer: torch.Tensor | None = None  # reweight: (L,) scale applied on top

    def to(self, device: torch.device) -> CrossEdit:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return CrossEdit(self.kind, move(self.mapper), move(self.alphas), move(self.equalizer))

    def apply(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """src, tgt: (heads, queries, L) probabilities → the edited target (float32)."""
        src, tgt = src.float(), tgt.float()
        if self.kind == "replace":
            out = src @ self.mapper
        elif self.kind == "refine":
            out = src[..., self.mapper.clamp(min=0)] * self.alphas + tgt * (1 - self.alphas)
        else:
            raise ValueError(f"unknown cross-attention edit '{self.kind}' (replace | refine)")
        if self.equalizer is not None:
            out = out * self.equalizer
        return out


def _halve(n: int, times: int) -> int:
    for _ in range(times):
        n = -(-n // 2)  # stride-2 convolutions with padding 1 round up
    return n


def attention_layers(unet: torch.nn.Module, latent_hw: tuple[int, int]) -> dict[str, tuple[bool, int, int]]:
    """Every attention layer of a diffusers ``UNet2DConditionModel``: name → (is_cross, query h, query w).

    Resolutions follow the UNet's block structure: down block i works at latent / 2^i, the mid block at the
    deepest level, up block j at latent / 2^(levels − 1 − j); ``attn1`` is self-attention, ``attn2`` cross.
    """
    config = getattr(unet, "config", None)
    if config is None or "down_block_types" not in config:
        raise ValueError("Prompt-to-Prompt needs a UNet2DConditionModel denoiser (down/mid/up blocks)")
    levels = len(config.down_block_types)
    out = {}
    for name in unet.attn_processors:
        parts = name.split(".")
        if parts[0] == "down_blocks":
            level = int(parts[1])
        elif parts[0] == "up_blocks":
            level = levels - 1 - int(parts[1])
        elif parts[0] == "mid_block":
            level = levels - 1
        else:
            continue
        kind = next((p for p in parts if p.startswith("attn")), "attn1")
        out[name] = (kind == "attn2", _halve(latent_hw[0], level), _halve(latent_hw[1], level))
    return out


def pick_self_limit(sides: set[int], latent_side: int, wanted: int | None) -> int:
    """Largest self-attention side whose queries are replaced: ``wanted`` if given, else latent/4 (16² queries
    at SD, as in the P2P paper's notebook) when some layer is that small, else the smallest self-attention side."""
    if wanted is not None:
        return int(wanted)
    limit = latent_side // 4
    if any(s <= limit for s in sides):
        return limit
    return min(sides) if sides else 0


class LocalBlend:
    """P2P's LocalBlend on captured cross-attention at one resolution (query grid ``hw``).

    ``token_weights`` (2, L): 1 on the blend-word tokens of the source (row 0) and target (row 1) prompts.
    Mask: blend-token maps summed, mean over heads, layers and steps so far, ``pool``×``pool`` max-pool (P2P: 3),
    nearest upsample to the latent size, divided by each image's max, > ``threshold``; the union of the source and
    target masks.
    """

    def __init__(
        self,
        token_weights: torch.Tensor,
        hw: tuple[int, int],
        threshold: float = 0.3,
        start_step: int = 0,
        pool: int = 3,
    ) -> None:
        if pool < 1 or pool % 2 == 0:
            raise ValueError(f"LocalBlend pool={pool}: must be an odd size of at least 1")
        self.pool = int(pool)
        self.token_weights = token_weights
        self.hw = hw
        self.threshold = float(threshold)
        self.start_step = int(start_step)
        self.total: torch.Tensor | None = None  # (2, q, L) sum over captured calls
        self.calls = 0

    @property
    def query_len(self) -> int:
        return self.hw[0] * self.hw[1]

    def capture(self, maps: torch.Tensor) -> None:
        """maps: (2, heads, q, L) cross-attention of the conditional [source, target] rows."""
        m = maps.detach().float().mean(1)
        self.total = m if self.total is None else self.total + m
        self.calls += 1

    def soft_maps(self, latent_hw: tuple[int, int]) -> torch.Tensor:
        """(2, h, w) max-normalised blend maps at latent size."""
        if self.total is None:
            raise RuntimeError("LocalBlend: no cross-attention captured at the blend resolution")
        maps = self.total / self.calls
        w = self.token_weights.to(maps.device, maps.dtype)
        maps = (maps * w[:, None, :]).sum(-1).reshape(-1, 1, *self.hw)
        maps = F.max_pool2d(maps, kernel_size=self.pool, stride=1, padding=self.pool // 2)
        maps = F.interpolate(maps, size=latent_hw, mode="nearest")
        peak = maps.amax(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(maps.dtype).tiny)
        return (maps / peak)[:, 0]

    def mask(self, latent_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft, hard) at latent size: soft = max of the two normalised maps, hard = soft > threshold
        (= the union of the two thresholded masks)."""
        soft = self.soft_maps(latent_hw).amax(0)
        return soft, soft > self.threshold

    def __call__(self, step: int, latents: torch.Tensor) -> torch.Tensor:
        """x_t = x_src + mask·(x_t − x_src) on every row, from ``start_step`` on."""
        if step < self.start_step or self.total is None:
            return latents
        _, hard = self.mask(tuple(latents.shape[-2:]))
        m = hard.to(latents.dtype)[None, None]
        return latents[:1] + m * (latents - latents[:1])


class P2PController:
    """The attention controller for one source→target edit; ``step`` is set by the sampling loop."""

    def __init__(
        self,
        edit: CrossEdit,
        cross_schedule: torch.Tensor,
        self_steps: tuple[int, int],
        self_max_len: int,
        blend: LocalBlend | None = None,
    ) -> None:
        self.edit = edit
        self.cross_schedule = cross_schedule  # (T + 1, L)
        self.self_steps = self_steps
        self.self_max_len = self_max_len
        self.blend = blend
        self._cross_steps = [bool(row.any()) for row in cross_schedule]
        self.step = 0
        self.edited_calls = 0

    def set_step(self, step: int, *_: object) -> None:
        self.step = step

    def _cross_active(self) -> bool:
        return self._cross_steps[self.step]

    def _self_active(self) -> bool:
        return self.self_steps[0] <= self.step < self.self_steps[1]

    def wants(self, call: AttnCall) -> bool:
        if call.is_cross:
            return self._cross_active() or (self.blend is not None and call.query_len == self.blend.query_len)
        return self._self_active() and call.query_len <= self.self_max_len

    def __call__(self, probs: torch.Tensor, call: AttnCall) -> torch.Tensor:
        rows = probs.shape[0] // call.heads
        p = probs.reshape(rows, call.heads, *probs.shape[1:])
        src, tgt = p[rows - 2], p[rows - 1]  # the conditional rows
        if call.is_cross:
            if self._cross_active():
                a = self.cross_schedule[self.step].to(probs.device)
                new = self.edit.apply(src, tgt) * a + tgt.float() * (1 - a)
                p = p.clone()
                p[rows - 1] = new.to(p.dtype)
                self.edited_calls += 1
            if self.blend is not None and call.query_len == self.blend.query_len:
                self.blend.capture(p[rows - 2 :])
        else:
            p = p.clone()
            p[rows - 1] = src
            self.edited_calls += 1
        return p.reshape(probs.shape)
