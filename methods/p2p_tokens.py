"""Prompt-to-Prompt's word ↔ token bookkeeping: word token indices, the word-swap token mapper, the refinement
alignment, the equalizer and the per-step cross-attention replacement schedule.

Written from the paper (Hertz et al., 2022, §3.2) and the facts in REFERENCE.md. Words and their token positions
come from ``methods.token_maps`` with P2P's word rule ("trimmed": whitespace-separated, punctuation trimmed), the
same tokenizer-agnostic machinery InstDiffEdit uses with its own rule. Positions count the start token, as the
text encoder sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from methods.token_maps import _word_spans, token_layout


@dataclass(frozen=True)
class Word:
    """A whitespace-separated word with its surrounding punctuation trimmed; ``text`` is lower-cased."""

    text: str
    start: int  # character span in the prompt (end exclusive)
    end: int


def split_words(prompt: str) -> list[Word]:
    """P2P's words: ``token_maps``' "trimmed" rule."""
    return [Word(text, a, b) for text, a, b in _word_spans(prompt, "trimmed")]


def max_length(tokenizer: Any) -> int:
    n = int(getattr(tokenizer, "model_max_length", 77) or 77)
    return n if n < 100_000 else 77  # "unbounded" tokenizers report a huge sentinel


def token_ids(prompt: str, tokenizer: Any) -> list[int]:
    """The prompt's token ids with special tokens, truncated like the text encoder's input (no padding)."""
    return list(tokenizer(prompt, truncation=True, max_length=max_length(tokenizer))["input_ids"])


def word_token_indices(prompt: str, tokenizer: Any) -> list[list[int]]:
    """For each word of ``split_words(prompt)``, the positions of its tokens in the encoded prompt.

    A word split into several tokens gets all of them; punctuation tokens belong to no word; words cut off by
    truncation get an empty list.
    """
    layout = token_layout(tokenizer, prompt, max_length(tokenizer), rule="trimmed")
    return [list(toks) for toks in layout.word_tokens]


def find_phrase(prompt: str, phrase: str, tokenizer: Any) -> list[int]:
    """Token positions of ``phrase`` in ``prompt``: its words as a contiguous run if present, else every
    occurrence of each of its words. Empty when a word is absent."""
    words = [w.text for w in split_words(prompt)]
    wanted = [w.text for w in split_words(phrase)]
    if not wanted:
        return []
    per_word = word_token_indices(prompt, tokenizer)
    for s in range(len(words) - len(wanted) + 1):
        if words[s : s + len(wanted)] == wanted:
            return [p for k in range(s, s + len(wanted)) for p in per_word[k]]
    found: list[int] = []
    for w in wanted:
        hits = [p for k, text in enumerate(words) if text == w for p in per_word[k]]
        if not hits:
            return []
        found += hits
    return sorted(set(found))


def replacement_mapper(source: str, target: str, tokenizer: Any) -> torch.Tensor:
    """Word-swap mapper M (L×L, L = max tokens): target attention = source attention @ M.

    Prompts must have the same number of words. Swapped words map block to block: equal token counts token to
    token; otherwise each of the target word's k tokens gets 1/k of the source word's summed attention (the
    total is kept). Every other token (start, unchanged words, end, padding) maps one to one in order.
    """
    src_words, tgt_words = split_words(source), split_words(target)
    if len(src_words) != len(tgt_words):
        raise ValueError(
            f"attention replace needs prompts with the same number of words: '{source}' has {len(src_words)}, "
            f"'{target}' has {len(tgt_words)} (use edit: refine)"
        )
    src_tok, tgt_tok = word_token_indices(source, tokenizer), word_token_indices(target, tokenizer)
    swaps = [k for k, (a, b) in enumerate(zip(src_words, tgt_words, strict=True)) if a.text != b.text]
    blocks = {src_tok[k][0]: (src_tok[k], tgt_tok[k]) for k in swaps if src_tok[k] and tgt_tok[k]}
    n = max_length(tokenizer)
    mapper = torch.zeros(n, n)
    i = j = 0
    while i < n and j < n:
        if i in blocks:
            s, t = blocks[i]
            t = [x for x in t if x < n]
            if len(s) == len(t):
                mapper[s, t] = 1.0  # token to token
            else:
                for x in s:
                    mapper[x, t] = 1.0 / len(t)
            i, j = i + len(s), j + len(t)
        else:
            # unlike the official code (which writes [j, j] after the last swap), keep the running
            # source→target offset so tokens after a swap of unequal length stay aligned
            mapper[i, j] = 1.0
            i, j = i + 1, j + 1
    return mapper


def _lcs_alignment(x: Sequence[int], y: Sequence[int]) -> list[int]:
    """For each y position, the x position it is aligned to (or -1): global alignment with gap 0, match 1,
    mismatch −1 (P2P's scores), which is a longest common subsequence. Ties prefer matching earlier tokens."""
    n, m = len(x), len(y)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for a in range(n - 1, -1, -1):
        for b in range(m - 1, -1, -1):
            if x[a] == y[b]:
                score[a][b] = score[a + 1][b + 1] + 1
            else:
                score[a][b] = max(score[a + 1][b], score[a][b + 1])
    out = [-1] * m
    a = b = 0
    while a < n and b < m:
        if x[a] == y[b] and score[a][b] == score[a + 1][b + 1] + 1:
            out[b] = a
            a, b = a + 1, b + 1
        elif score[a + 1][b] >= score[a][b + 1]:
            a += 1
        else:
            b += 1
    return out


def refinement_mapper(source: str, target: str, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Refinement alignment for an added/changed phrase: (mapper, alphas), both of length L.

    ``mapper[j]`` = the source token aligned to target token j (−1 for a token new in the target);
    ``alphas[j]`` = 1 where aligned (take the source's attention), 0 where new (keep the target's own).
    Padding positions after the target's end token map to the same position in the source.
    """
    x, y = token_ids(source, tokenizer), token_ids(target, tokenizer)
    n = max_length(tokenizer)
    aligned = _lcs_alignment(x, y)
    mapper = torch.arange(n, dtype=torch.long)
    mapper[: len(y)] = torch.tensor(aligned, dtype=torch.long)
    alphas = (mapper >= 0).float()
    return mapper, alphas


def equalizer(target: str, words: Sequence[str], values: float | Sequence[float], tokenizer: Any) -> torch.Tensor:
    """Per-token attention scale (L,): ``values`` on the tokens of ``words`` in the target prompt, 1 elsewhere."""
    vals = [float(values)] * len(words) if isinstance(values, int | float) else [float(v) for v in values]
    eq = torch.ones(max_length(tokenizer))
    for word, value in zip(words, vals, strict=True):
        idx = find_phrase(target, word, tokenizer)
        if not idx:
            raise ValueError(f"equalizer word '{word}' is not in the target prompt '{target}'")
        eq[idx] = value
    return eq


def _bounds(spec: Any) -> tuple[float, float]:
    if isinstance(spec, int | float):
        return 0.0, float(spec)
    lo, hi = spec
    return float(lo), float(hi)


def cross_replace_schedule(spec: Any, target: str, num_steps: int, tokenizer: Any) -> torch.Tensor:
    """Per step and token, whether the target's cross-attention is replaced: (num_steps + 1, L) of 0/1.

    ``spec``: a fraction f (steps [0, f)), a pair [start, end], or a mapping
    ``{"default_": f, "word": g, ...}`` giving some target words their own range. As in P2P, a range
    [a, b) covers rows int(a·(T+1)) to int(b·(T+1)) − 1.
    """
    n = max_length(tokenizer)
    alpha = torch.zeros(num_steps + 1, n)

    def fill(bounds: tuple[float, float], idx: list[int] | None) -> None:
        lo, hi = int(bounds[0] * alpha.shape[0]), int(bounds[1] * alpha.shape[0])
        cols = slice(None) if idx is None else idx
        alpha[:, cols] = 0.0
        alpha[lo:hi, cols] = 1.0

    if isinstance(spec, Mapping):
        fill(_bounds(spec.get("default_", (0.0, 1.0))), None)
        for word, value in spec.items():
            if word != "default_":
                idx = find_phrase(target, str(word), tokenizer)
                if idx:
                    fill(_bounds(value), idx)
    else:
        fill(_bounds(spec), None)
    return alpha


def differing_words(source: str, target: str) -> tuple[str, str]:
    """The words only one prompt has, as (source phrase, target phrase): the blend words when none are given."""
    a, b = [w.text for w in split_words(source)], [w.text for w in split_words(target)]
    only_a = [w for w in a if w not in b]
    only_b = [w for w in b if w not in a]
    return " ".join(only_a), " ".join(only_b)


def choose_edit(source: str, target: str, tokenizer: Any) -> str:
    """P2P's edit for a prompt pair: 'replace' for a word swap that keeps the token count, else 'refine'."""
    a, b = split_words(source), split_words(target)
    if len(a) == len(b) and any(x.text != y.text for x, y in zip(a, b, strict=True)):
        if len(token_ids(source, tokenizer)) == len(token_ids(target, tokenizer)):
            return "replace"
    return "refine"
