"""DiT4Edit's attention on PixArt-alpha's transformer: patch (token) merging inside self-attention, mutual
self-attention between the source and target branches, and the Prompt-to-Prompt cross-attention control.

PixArt's ``BasicTransformerBlock`` (``ada_norm_single``) modulates the normalised tokens with its scale-shift table
*before* ``attn1`` and gates the output after it, so everything here lives in the attention processors: ``attn1``
gets the already modulated tokens, merges them, attends and unmerges, and the block's modulation and gating stay
untouched (the ``tomesd`` package patches the block instead and drops that modulation).

- **Token merging** (bipartite soft matching, ToMe): the token grid is split into destination tokens (one per
  ``window``×``window`` cell, its top-left token) and source tokens (the rest). Each source token is matched to its
  most similar destination (cosine similarity of the modulated tokens); the ``r = int(ratio · #sources)`` best
  matched sources are averaged into their destinations. Attention (q, k, v and the output projection) runs on the
  ``N − r`` remaining tokens; unmerging copies each destination's output back to the sources merged into it.
- **Mutual self-attention** (MasaCtrl): for steps ``< mutual_end_step`` and blocks ``≥ mutual_start_layer``, each
  target row attends with its own queries to the keys and values of its source row.
- **Cross-attention control** and LocalBlend: ``methods.p2p_control.P2PController`` through
  ``benchmark.attention.ControlledAttnProcessor`` on every ``attn2`` (its self-attention replacement off).

With no merging and no mutual self-attention, ``attn1`` is diffusers' own ``AttnProcessor2_0`` call (bit-identical).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0

from benchmark.attention import AttentionController, ControlledAttnProcessor


@dataclass
class TokenMerge:
    """One bipartite soft matching of a batch of token sequences (B, N, C) on a grid; ``merge`` and ``unmerge``
    apply it to any tensor with the same rows and tokens."""

    dst_idx: torch.Tensor  # (n_dst,) grid positions of the destination tokens
    src_idx: torch.Tensor  # (n_src,) grid positions of the source tokens
    unmerged: torch.Tensor  # (B, n_src − r) indices into the sources kept as they are
    merged: torch.Tensor  # (B, r) indices into the sources averaged into a destination
    merged_dst: torch.Tensor  # (B, r) the destination (index into dst_idx) each merged source joins

    @property
    def tokens(self) -> int:
        return len(self.dst_idx) + len(self.src_idx)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (B, N − r, C): the kept sources, then the destinations (mean of themselves and their
        merged sources)."""
        c = x.shape[-1]
        src, dst = x[:, self.src_idx], x[:, self.dst_idx]
        kept = src.gather(1, self.unmerged[..., None].expand(-1, -1, c))
        moved = src.gather(1, self.merged[..., None].expand(-1, -1, c))
        dst = dst.scatter_reduce(1, self.merged_dst[..., None].expand(-1, -1, c), moved, "mean", include_self=True)
        return torch.cat([kept, dst], 1)

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, N − r, C) → (B, N, C): every token gets its own output, a merged source its destination's."""
        b, _, c = y.shape
        n_kept = self.unmerged.shape[1]
        kept, dst = y[:, :n_kept], y[:, n_kept:]
        src = y.new_zeros(b, len(self.src_idx), c)
        src.scatter_(1, self.unmerged[..., None].expand(-1, -1, c), kept)
        joined = dst.gather(1, self.merged_dst[..., None].expand(-1, -1, c))
        src.scatter_(1, self.merged[..., None].expand(-1, -1, c), joined)
        out = y.new_zeros(b, self.tokens, c)
        out[:, self.dst_idx] = dst
        out[:, self.src_idx] = src
        return out


def grid_partition(hw: tuple[int, int], window: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(destination, source) token positions of an h×w grid in row-major order: the top-left token of each
    ``window``×``window`` cell is a destination."""
    h, w = hw
    rows = torch.arange(h, device=device)[:, None].expand(h, w)
    cols = torch.arange(w, device=device)[None, :].expand(h, w)
    is_dst = ((rows % window == 0) & (cols % window == 0)).reshape(-1)
    positions = torch.arange(h * w, device=device)
    return positions[is_dst], positions[~is_dst]


def merged_count(hw: tuple[int, int], window: int, ratio: float) -> int:
    """r: how many source tokens ``ratio`` merges on an h×w grid."""
    n_dst = -(-hw[0] // window) * -(-hw[1] // window)
    return int(ratio * (hw[0] * hw[1] - n_dst))


def bipartite_matching(metric: torch.Tensor, hw: tuple[int, int], ratio: float, window: int = 2) -> TokenMerge:
    """The matching of ``metric`` (B, N, C) tokens on grid ``hw``: each source's best destination by cosine
    similarity; the ``merged_count`` sources with the highest similarity are merged (ties: the earlier source)."""
    if metric.shape[1] != hw[0] * hw[1]:
        raise ValueError(f"token merging: {metric.shape[1]} tokens do not fill a {hw[0]}x{hw[1]} grid")
    dst_idx, src_idx = grid_partition(hw, window, metric.device)
    r = merged_count(hw, window, ratio)
    unit = F.normalize(metric.float(), dim=-1)
    scores = unit[:, src_idx] @ unit[:, dst_idx].transpose(1, 2)  # (B, n_src, n_dst)
    best, best_dst = scores.max(dim=-1)
    order = torch.sort(best, dim=-1, descending=True, stable=True).indices
    merged = order[:, :r]
    return TokenMerge(dst_idx, src_idx, order[:, r:], merged, best_dst.gather(1, merged))


@dataclass
class DiTAttentionState:
    """What the ``attn1`` processors read, set by the sampling loop (``step``) and the method.

    ``pairs``: (source row, target row) batch indices for mutual self-attention, e.g. [(0, 1), (2, 3)] for the
    CFG batch [uncond source, uncond target, cond source, cond target]; empty: no mutual self-attention.
    """

    grid: tuple[int, int]
    merge_ratio: float = 0.0
    merge_window: int = 2
    pairs: list[tuple[int, int]] = field(default_factory=list)
    mutual_end_step: int = 0
    mutual_start_layer: int = 0
    step: int = 0
    merged_tokens: int = 0  # tokens removed in the last merged call (for the run's facts)

    def set_step(self, step: int, *_: object) -> None:
        self.step = step

    def mutual_active(self, layer: int) -> bool:
        return bool(self.pairs) and self.step < self.mutual_end_step and layer >= self.mutual_start_layer


class DiTSelfAttnProcessor:
    """``attn1`` of one PixArt block: token merging and mutual self-attention as ``state`` asks, otherwise
    diffusers' ``AttnProcessor2_0`` unchanged."""

    def __init__(self, layer: int, state: DiTAttentionState) -> None:
        self.layer = layer
        self.state = state
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
        s = self.state
        merging = merged_count(s.grid, s.merge_window, s.merge_ratio) > 0
        mutual = s.mutual_active(self.layer)
        if not (merging or mutual) or encoder_hidden_states is not None or attention_mask is not None:
            return self.fast(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        merge = bipartite_matching(hidden_states, s.grid, s.merge_ratio, s.merge_window) if merging else None
        x = merge.merge(hidden_states) if merge is not None else hidden_states
        if merge is not None:
            s.merged_tokens = hidden_states.shape[1] - x.shape[1]
        query, key, value = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        if mutual:
            src = [a for a, _ in s.pairs]
            tgt = [b for _, b in s.pairs]
            key, value = key.clone(), value.clone()
            key[tgt], value[tgt] = key[src], value[src]
        b, n, inner = query.shape
        heads = attn.heads
        q, k, v = (t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(b, n, inner).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if merge is not None:
            out = merge.unmerge(out)
        return out / attn.rescale_output_factor


def block_index(name: str) -> int:
    """``transformer_blocks.7.attn1.processor`` → 7."""
    parts = name.split(".")
    return int(parts[parts.index("transformer_blocks") + 1])


@contextmanager
def install_dit_attention(
    transformer: torch.nn.Module, state: DiTAttentionState, cross: AttentionController | None = None
) -> Iterator[None]:
    """Every ``attn1`` of ``transformer`` through ``DiTSelfAttnProcessor`` and, with ``cross``, every ``attn2``
    through ``ControlledAttnProcessor`` for the duration of the block."""
    original = dict(transformer.attn_processors)  # copy: set_attn_processor empties the dict it is given
    procs: dict[str, Any] = {}
    for name, proc in original.items():
        if ".attn1." in name:
            procs[name] = DiTSelfAttnProcessor(block_index(name), state)
        elif ".attn2." in name and cross is not None:
            procs[name] = ControlledAttnProcessor(name, cross)
        else:
            procs[name] = proc
    transformer.set_attn_processor(procs)
    try:
        yield
    finally:
        transformer.set_attn_processor(dict(original))
