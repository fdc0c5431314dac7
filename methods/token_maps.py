"""Word ↔ token mapping and per-token cross-attention aggregation.

Attention-based editing methods read cross-attention maps per *word* of a prompt, while the denoiser attends to
*tokens*. ``token_layout`` maps each word to the token positions it was split into and names the start and end
tokens. What a word is follows the method's official rule (``rule=``):

- ``"space"`` (InstDiffEdit): split on single spaces, punctuation stays in the word ("sunglasses," →
  ``sunglasses</w>`` and ``,</w>``);
- ``"trimmed"`` (Prompt-to-Prompt): split on whitespace, surrounding punctuation trimmed off and lower-cased
  ("Sunglasses," → "sunglasses"; the comma token belongs to no word).

It is tokenizer-agnostic: it uses the tokenizer's character offsets when it has them (fast/`tokenizers` backends:
CLIP, T5), otherwise it encodes word by word and checks that the pieces add up to the whole prompt's encoding.

``aggregate_maps`` turns a :class:`benchmark.attention.CrossAttentionStore` (already averaged over heads at capture,
summed over layers and steps) into one (side, side, tokens) map by averaging over layers, steps and the batch rows
(noise seeds); ``word_maps`` then gives the start-token map, one map per word (the mean of its tokens' maps) and the
end-token map.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Literal

import torch


@dataclass(frozen=True)
class TokenLayout:
    """Where each word of ``prompt`` sits in the encoded token sequence.

    ``ids``: the encoded sequence (with special tokens, no padding, truncated to the tokenizer's maximum);
    ``word_tokens[i]``: positions in ``ids`` of word ``i`` (empty when truncation cut the word off);
    ``start``: position of the start token (None for tokenizers without one, e.g. T5); ``end``: position of the end
    token (None when truncation removed it).
    """

    prompt: str
    ids: tuple[int, ...]
    words: tuple[str, ...]
    word_tokens: tuple[tuple[int, ...], ...]
    start: int | None
    end: int | None

    def kept_words(self) -> list[int]:
        """Indices of the words that have at least one token (truncation may drop trailing words)."""
        return [i for i, toks in enumerate(self.word_tokens) if toks]

    def phrase_tokens(self, phrase: str) -> list[int]:
        """Token positions of every occurrence of ``phrase`` (a run of whole words, case-insensitive)."""
        target = [w.lower() for w in phrase.split()]
        words = [w.lower() for w in self.words]
        out: list[int] = []
        if not target:
            return out
        for i in range(len(words) - len(target) + 1):
            if [w.strip(".,;:!?\"'") for w in words[i : i + len(target)]] == [w.strip(".,;:!?\"'") for w in target]:
                for j in range(i, i + len(target)):
                    out.extend(self.word_tokens[j])
        return out


WordRule = Literal["space", "trimmed"]


def _word_spans(prompt: str, rule: WordRule = "space") -> list[tuple[str, int, int]]:
    """Words of ``prompt`` with character spans (end exclusive), by ``rule`` (see the module docstring)."""
    spans = []
    if rule == "space":
        pos = 0
        for word in prompt.split(" "):
            if word:
                spans.append((word, pos, pos + len(word)))
            pos += len(word) + 1
    elif rule == "trimmed":
        for m in re.finditer(r"\S+", prompt):
            chunk = m.group()
            core = chunk.strip(string.punctuation) or chunk  # a chunk of punctuation only stays itself
            start = m.start() + chunk.find(core)
            spans.append((core.lower(), start, start + len(core)))
    else:
        raise ValueError(f"word rule '{rule}': expected 'space' (InstDiffEdit) or 'trimmed' (Prompt-to-Prompt)")
    return spans


def token_layout(tokenizer: Any, prompt: str, max_length: int | None = None, rule: WordRule = "space") -> TokenLayout:
    """Map each word of ``prompt`` (by ``rule``) to its token positions in ``tokenizer``'s encoding of the whole
    prompt."""
    max_length = int(max_length or getattr(tokenizer, "model_max_length", 77) or 77)
    spans = _word_spans(prompt, rule)
    enc = None
    try:
        enc = tokenizer(
            prompt, truncation=True, max_length=max_length, return_offsets_mapping=True, return_special_tokens_mask=True
        )
    except (NotImplementedError, TypeError, ValueError):
        enc = None
    if enc is not None and "offset_mapping" in enc:
        ids = list(enc["input_ids"])
        special = list(enc["special_tokens_mask"])
        groups: list[list[int]] = [[] for _ in spans]
        for pos, ((a, b), is_special) in enumerate(zip(enc["offset_mapping"], special, strict=True)):
            if is_special or b <= a:
                continue
            for w, (_, ws, we) in enumerate(spans):
                if a < we and b > ws:  # token overlaps the word's characters
                    groups[w].append(pos)
                    break
    else:
        ids, groups, special = _layout_by_words(tokenizer, prompt, spans, max_length)
    bos = getattr(tokenizer, "bos_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    start = 0 if ids and bos is not None and ids[0] == bos and special[0] else None
    end = next((i for i, t in enumerate(ids) if t == eos and i > 0), None)
    return TokenLayout(prompt, tuple(ids), tuple(w for w, _, _ in spans), tuple(tuple(g) for g in groups), start, end)


def _layout_by_words(
    tokenizer: Any, prompt: str, spans: list[tuple[str, int, int]], max_length: int
) -> tuple[list[int], list[list[int]], list[int]]:
    """Fallback without offsets: encode word by word and check the pieces reproduce the full encoding."""
    ids = list(tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"])
    special_ids = set(getattr(tokenizer, "all_special_ids", []))
    special = [int(t in special_ids) for t in ids]
    pos = 1 if special and special[0] else 0
    groups: list[list[int]] = []
    pieces: list[int] = []
    for word, _, _ in spans:
        toks = tokenizer.encode(word, add_special_tokens=False)
        groups.append([p for p in range(pos, pos + len(toks)) if p < len(ids) and not special[p]])
        pieces.extend(toks)
        pos += len(toks)
    body = [t for t, s in zip(ids, special, strict=True) if not s]
    if pieces[: len(body)] != body:
        raise ValueError(
            f"prompt {prompt!r}: word-by-word tokens do not add up to the prompt's tokens; this "
            f"tokenizer ({type(tokenizer).__name__}) needs offset mappings for word alignment"
        )
    return ids, groups, special


def aggregate_maps(store: Any, side: int | None = None, rows: slice | None = None) -> torch.Tensor:
    """(side, side, tokens): the store's maps averaged over heads, layers and steps (done by the store) and over
    batch rows (noise seeds) — the mean over equal-sized groups, so the order of the means does not matter."""
    maps = store.mean(side)  # (batch, side, side, tokens)
    if rows is not None:
        maps = maps[rows]
    return maps.mean(0)


def word_maps(
    maps: torch.Tensor, layout: TokenLayout, include_start: bool = True, include_end: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Per-word maps from per-token maps (..., tokens) → (..., K) with labels.

    Order: the start token (if any and asked for), each kept word (a word split into several tokens = the mean of
    its tokens' maps), the end token (if any and asked for).
    """
    cols: list[torch.Tensor] = []
    labels: list[str] = []
    if include_start and layout.start is not None:
        cols.append(maps[..., layout.start])
        labels.append("<start>")
    for i in layout.kept_words():
        cols.append(maps[..., list(layout.word_tokens[i])].mean(-1))
        labels.append(layout.words[i])
    if include_end and layout.end is not None:
        cols.append(maps[..., layout.end])
        labels.append("<end>")
    return torch.stack(cols, dim=-1), labels
