"""Prompt-to-Prompt's word ↔ token bookkeeping: word token positions, the word-swap token mapper, the refinement
alignment, the equalizer and the per-step cross-attention replacement schedule.

Written from the paper (Hertz et al., 2022, §3.2) and checked rule by rule against google/prompt-to-prompt
(``ptp_utils.get_word_inds``, ``seq_aligner``). Positions count the start token, as the text encoder sees them.

Word rule (``rule=``):

- ``"official"`` (the default): a prompt's words are ``prompt.split(" ")``; a word given as text matches every word
  equal to it, exactly (case and punctuation included: "cat" is not "cat."); a word given as an int is a word
  index. A word's tokens are found by decoding each token of the prompt and walking along the words, a word ending
  when the decoded characters reach its length (so "meerkat" → meer, kat).
- ``"trimmed"`` (this project's earlier rule, an option): words split on whitespace with surrounding punctuation
  trimmed and lower-cased; a phrase matches its first contiguous occurrence.

A phrase (a dataset's edit words, "persian cat") is given to the official rule as the list of its space-separated
words, the way the official notebooks pass several words (``LocalBlend(prompts, (("cat", "dog"), ...))``); a word
or phrase that is not found gives no tokens, as in the official code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from methods.token_maps import _word_spans, token_layout

WordRule = Literal["official", "trimmed"]
WORD_RULES = ("official", "trimmed")


@dataclass(frozen=True)
class Word:
    """A word of the trimmed rule: surrounding punctuation trimmed, ``text`` lower-cased."""

    text: str
    start: int  # character span in the prompt (end exclusive)
    end: int


def split_words(prompt: str) -> list[Word]:
    """The trimmed rule's words: ``token_maps``' "trimmed" rule."""
    return [Word(text, a, b) for text, a, b in _word_spans(prompt, "trimmed")]


def max_length(tokenizer: Any) -> int:
    n = int(getattr(tokenizer, "model_max_length", 77) or 77)
    return n if n < 100_000 else 77  # "unbounded" tokenizers report a huge sentinel


def token_ids(prompt: str, tokenizer: Any) -> list[int]:
    """The prompt's token ids with special tokens, truncated like the text encoder's input (no padding)."""
    return list(tokenizer(prompt, truncation=True, max_length=max_length(tokenizer))["input_ids"])


# ----------------------------------------------------------------------------------------------- official rule


def word_positions(prompt: str, word: str | int, tokenizer: Any) -> list[int]:
    """The official word rule: token positions of ``word`` (text: every exact occurrence among
    ``prompt.split(" ")``; int: that word index). Positions past the text encoder's length are dropped."""
    words = prompt.split(" ")
    wanted = {word} if isinstance(word, int) else {k for k, w in enumerate(words) if w == word}
    if not wanted:
        return []
    # decoded text of each token between the start and end tokens ("#" stripped, as the official code does); a
    # tokenizer without a start token (T5) starts its words at position 0
    ids = tokenizer.encode(prompt)
    special = set(tokenizer.all_special_ids)
    first = 1 if ids and ids[0] in special else 0
    last = len(ids) - 1 if len(ids) > first and ids[-1] in special else len(ids)
    pieces = [tokenizer.decode([t]).strip("#") for t in ids[first:last]]
    out: list[int] = []
    k, seen = 0, 0  # current word, characters of it consumed so far
    for pos, piece in enumerate(pieces, start=first):
        if k >= len(words):  # the official code would fail here (more characters than words): stop instead
            break
        seen += len(piece)
        if k in wanted:
            out.append(pos)
        if seen >= len(words[k]):
            k, seen = k + 1, 0
    limit = max_length(tokenizer)
    return [p for p in out if p < limit]


def phrase_words(phrase: str | int) -> list[str | int]:
    """The words a phrase stands for under the official rule: its space-separated parts (an int: itself)."""
    if isinstance(phrase, int):
        return [phrase]
    return [w for w in str(phrase).split(" ") if w]


def find_words(prompt: str, phrase: str | int, tokenizer: Any, rule: WordRule = "official") -> list[int]:
    """Token positions of ``phrase`` in ``prompt`` by ``rule`` (sorted, unique); empty when nothing matches."""
    if rule == "official":
        return sorted({p for w in phrase_words(phrase) for p in word_positions(prompt, w, tokenizer)})
    if rule == "trimmed":
        return find_phrase_trimmed(prompt, str(phrase), tokenizer)
    raise ValueError(f"word rule '{rule}': use one of {', '.join(WORD_RULES)}")


# ----------------------------------------------------------------------------------------------- trimmed rule


def word_token_indices(prompt: str, tokenizer: Any) -> list[list[int]]:
    """The trimmed rule: for each word of ``split_words(prompt)``, the positions of its tokens."""
    layout = token_layout(tokenizer, prompt, max_length(tokenizer), rule="trimmed")
    return [list(toks) for toks in layout.word_tokens]


def find_phrase_trimmed(prompt: str, phrase: str, tokenizer: Any) -> list[int]:
    """The trimmed rule: ``phrase``'s words as their first contiguous run if present, else every occurrence of each
    of its words; empty when a word is absent."""
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


# ----------------------------------------------------------------------------------------------- mappers


def swapped_words(source: str, target: str) -> list[int]:
    """Indices of the words that differ between two prompts of the same word count (official split)."""
    a, b = source.split(" "), target.split(" ")
    if len(a) != len(b):
        raise ValueError(
            f"attention replace needs prompts with the same number of words: '{source}' has {len(a)}, "
            f"'{target}' has {len(b)} (use edit: refine)"
        )
    return [k for k in range(len(b)) if a[k] != b[k]]


def replacement_mapper(source: str, target: str, tokenizer: Any) -> torch.Tensor:
    """Word-swap mapper M (L×L, L = max tokens): target attention = source attention @ M, the official rule.

    Words are ``split(" ")``; each swapped word maps its source tokens to its target tokens: token to token when
    the counts are equal, otherwise every target token gets 1/k (k = its token count) of each source token. Tokens
    before the last swap map in order, keeping the offset the swaps made; from the last swap on, token j maps to
    token j (the official code's diagonal), so after a swap of unequal token counts the tail is not re-aligned.
    """
    swaps = swapped_words(source, target)
    blocks = [(word_positions(source, k, tokenizer), word_positions(target, k, tokenizer)) for k in swaps]
    for k, (s, t) in zip(swaps, blocks, strict=True):
        if not s or not t:
            raise ValueError(
                f"attention replace: word {k} ('{source.split(' ')[k]}' → '{target.split(' ')[k]}') has no tokens "
                f"by the official word rule (use edit: refine)"
            )
    n = max_length(tokenizer)
    mapper = torch.zeros(n, n)
    i = j = b = 0
    while i < n and j < n:
        if b < len(blocks) and blocks[b][0][0] == i:
            s, t = blocks[b]
            if len(s) == len(t):
                mapper[s, t] = 1.0
            else:
                for x in t:
                    mapper[s, x] = 1.0 / len(t)
            b, i, j = b + 1, i + len(s), j + len(t)
        elif b < len(blocks):
            mapper[i, j] = 1.0
            i, j = i + 1, j + 1
        else:
            mapper[j, j] = 1.0
            i, j = i + 1, j + 1
    return mapper


def global_alignment(x: Sequence[int], y: Sequence[int]) -> list[int]:
    """For each position of ``y``, the position of ``x`` aligned to it, or −1: the official ``seq_aligner``.

    Scores: gap 0, match 1, mismatch −1. The score table is filled preferring, on ties, a gap in x (left), then a
    gap in y (up), then the diagonal; the traceback walks back from the end following those choices. Only equal
    tokens are ever aligned (a mismatch never beats a gap)."""
    n, m = len(x), len(y)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    move = [["left"] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        move[i][0] = "up"
        for j in range(1, m + 1):
            left, up = score[i][j - 1], score[i - 1][j]
            diag = score[i - 1][j - 1] + (1 if x[i - 1] == y[j - 1] else -1)
            best = max(left, up, diag)
            score[i][j] = best
            move[i][j] = "left" if best == left else "up" if best == up else "diag"
    out = [-1] * m
    i, j = n, m
    while i > 0 or j > 0:
        step = move[i][j]
        if step == "diag":
            i, j = i - 1, j - 1
            out[j] = i
        elif step == "left":
            j -= 1
        else:
            i -= 1
    return out


def refinement_mapper(source: str, target: str, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Refinement alignment for an added/changed phrase: (mapper, alphas), both of length L (official ``get_mapper``).

    ``mapper[j]`` = the source token aligned to target token j (−1 for a token new in the target);
    ``alphas[j]`` = 1 where aligned (take the source's attention), 0 where new (keep the target's own).
    Positions after the target's end token map to themselves.
    """
    x, y = token_ids(source, tokenizer), token_ids(target, tokenizer)
    n = max_length(tokenizer)
    mapper = torch.arange(n, dtype=torch.long)
    mapper[: len(y)] = torch.tensor(global_alignment(x, y), dtype=torch.long)
    alphas = (mapper >= 0).float()
    return mapper, alphas


# ----------------------------------------------------------------------------------------------- reweight, schedule


def equalizer(
    target: str,
    words: Sequence[str | int],
    values: float | Sequence[float],
    tokenizer: Any,
    rule: WordRule = "official",
) -> torch.Tensor:
    """Per-token attention scale (L,): ``values`` on the tokens of ``words`` in the target prompt, 1 elsewhere.
    A word that is not found changes nothing (official ``get_equalizer``)."""
    vals = [float(values)] * len(words) if isinstance(values, int | float) else [float(v) for v in values]
    eq = torch.ones(max_length(tokenizer))
    for word, value in zip(words, vals, strict=True):
        idx = find_words(target, word, tokenizer, rule)
        if idx:
            eq[idx] = value
    return eq


def _bounds(spec: Any) -> tuple[float, float]:
    if isinstance(spec, int | float):
        return 0.0, float(spec)
    lo, hi = spec
    return float(lo), float(hi)


def cross_replace_schedule(
    spec: Any, target: str, num_steps: int, tokenizer: Any, rule: WordRule = "official"
) -> torch.Tensor:
    """Per step and token, whether the target's cross-attention is replaced: (num_steps + 1, L) of 0/1.

    ``spec``: a fraction f (steps [0, f)), a pair [start, end], or a mapping
    ``{"default_": f, "word": g, ...}`` giving some target words their own range (a word not found keeps the
    default). As in P2P, a range [a, b) covers rows int(a·(T+1)) to int(b·(T+1)) − 1.
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
                idx = find_words(target, word, tokenizer, rule)
                if idx:
                    fill(_bounds(value), idx)
    else:
        fill(_bounds(spec), None)
    return alpha


def differing_words(source: str, target: str, rule: WordRule = "official") -> tuple[str, str]:
    """The words only one prompt has, as (source phrase, target phrase): the blend words when none are given."""
    if rule == "official":
        a, b = [w for w in source.split(" ") if w], [w for w in target.split(" ") if w]
    else:
        a, b = [w.text for w in split_words(source)], [w.text for w in split_words(target)]
    only_a = [w for w in a if w not in b]
    only_b = [w for w in b if w not in a]
    return " ".join(only_a), " ".join(only_b)


def choose_edit(source: str, target: str, tokenizer: Any) -> str:
    """P2P's edit for a prompt pair (ours; the notebooks pick by hand): 'replace' for a swap of words (official
    split) that keeps the token count and whose swapped words all have tokens, else 'refine'."""
    if len(source.split(" ")) != len(target.split(" ")) or source == target:
        return "refine"
    if len(token_ids(source, tokenizer)) != len(token_ids(target, tokenizer)):
        return "refine"
    for k in swapped_words(source, target):
        if not word_positions(source, k, tokenizer) or not word_positions(target, k, tokenizer):
            return "refine"
    return "replace"
