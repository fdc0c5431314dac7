"""Cross-/self-attention access through diffusers attention processors.

``install_controller`` puts a dispatching processor in every attention layer of a denoiser (UNet or transformer).
For the layers and query resolutions the controller asks for (``controller.wants``) it computes attention with an
explicit softmax and passes the probabilities through ``controller(probs, ...)``, which may read them (capture) or
return new ones (Prompt-to-Prompt style control); everywhere else it defers to diffusers' fast SDPA processor, so
the cost of capture is paid only where a method reads attention.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from diffusers.models.attention_processor import AttnProcessor2_0


@dataclass(frozen=True)
class AttnCall:
    """Where an attention call happens: layer name, cross or self, heads, query length (h·w) and step."""

    layer: str
    is_cross: bool
    heads: int
    query_len: int

    @property
    def side(self) -> int:
        """Query grid side for square latents (16 for a 16×16 layer)."""
        return int(math.isqrt(self.query_len))


class AttentionController(Protocol):
    def wants(self, call: AttnCall) -> bool: ...

    def __call__(self, probs: torch.Tensor, call: AttnCall) -> torch.Tensor: ...


class ControlledAttnProcessor:
    """Explicit-softmax attention for wanted calls, SDPA for the rest (same outputs, to float rounding)."""

    def __init__(self, layer: str, controller: AttentionController) -> None:
        self.layer = layer
        self.controller = controller
        self.fast = AttnProcessor2_0()

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        spatial = hidden_states.ndim == 4
        query_len = hidden_states.shape[2] * hidden_states.shape[3] if spatial else hidden_states.shape[1]
        call = AttnCall(self.layer, encoder_hidden_states is not None, attn.heads, query_len)
        if not self.controller.wants(call):
            return self.fast(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return self._explicit(attn, hidden_states, encoder_hidden_states, attention_mask, temb, call)

    def _explicit(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
        call: AttnCall,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, seq_len, _ = context.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_k(context)
        value = attn.to_v(context)
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        # softmax(q kᵀ · scale + mask), the probabilities SDPA never materialises; shape (batch·heads, q, k)
        probs = attn.get_attention_scores(query, key, attention_mask)
        probs = self.controller(probs, call)
        out = attn.batch_to_head_dim(torch.bmm(probs.to(value.dtype), value))
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def install_controller(denoiser: torch.nn.Module, controller: AttentionController) -> Iterator[None]:
    """Route every attention layer of ``denoiser`` through ``controller`` for the duration of the block."""
    original = dict(denoiser.attn_processors)  # copy: set_attn_processor empties the dict it is given
    denoiser.set_attn_processor({name: ControlledAttnProcessor(name, controller) for name in original})
    try:
        yield
    finally:
        denoiser.set_attn_processor(dict(original))


class CrossAttentionStore:
    """Capture controller: running sums of cross-attention probabilities at chosen query sides.

    ``sides``: query grid sides to read (e.g. {16}); ``batch_slice``: which batch rows to keep (e.g. the
    text-conditioned half under classifier-free guidance). Maps are averaged over heads at capture; ``mean()``
    averages over layers and calls (steps) → (batch, side, side, tokens).
    """

    def __init__(
        self, sides: set[int] | frozenset[int], batch_slice: slice | None = None, layer_filter: tuple[str, ...] = ()
    ) -> None:
        self.sides = frozenset(sides)
        self.batch_slice = batch_slice
        self.layer_filter = layer_filter
        self.reset()

    def reset(self) -> None:
        self.total: dict[int, torch.Tensor] = {}
        self.count: dict[int, int] = {}
        self.layers: set[str] = set()

    def wants(self, call: AttnCall) -> bool:
        if not call.is_cross or call.side not in self.sides or call.side * call.side != call.query_len:
            return False
        return not self.layer_filter or call.layer.startswith(self.layer_filter)

    def __call__(self, probs: torch.Tensor, call: AttnCall) -> torch.Tensor:
        b = probs.shape[0] // call.heads
        maps = probs.detach().float().reshape(b, call.heads, call.side, call.side, -1).mean(1)
        if self.batch_slice is not None:
            maps = maps[self.batch_slice]
        if call.side in self.total:
            self.total[call.side] += maps
        else:
            self.total[call.side] = maps.clone()
        self.count[call.side] = self.count.get(call.side, 0) + 1
        self.layers.add(call.layer)
        return probs

    def mean(self, side: int | None = None) -> torch.Tensor:
        """Mean map at ``side`` (the only captured side when None): (batch, side, side, tokens)."""
        if side is None and len(self.total) == 1:
            side = next(iter(self.total))
        if side not in self.total:
            raise RuntimeError(
                f"no cross-attention captured at side {side} (asked for {sorted(self.sides)}, "
                f"captured {sorted(self.total)}): no cross-attention layer at that resolution"
            )
        return self.total[side] / self.count[side]
