"""Where a toy-world caption's object words sit among the text encoder's tokens.

Every colour and shape word of the world is one CLIP BPE token, so an object ("a red circle") is the pair of
adjacent token positions (colour, shape). Used by the UNet's grounding loss at every training step and by the
attention evidence; positions count the start token as 0, as in the 77-token prompt the SD pipelines build.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from benchmark.datasets.synthetic import COLOURS, SHAPES


@lru_cache(maxsize=8)
def attribute_token_ids(tokenizer: Any) -> tuple[frozenset[int], frozenset[int]]:
    """(colour token ids, shape token ids) of ``tokenizer``; raises if a word is not a single token."""

    def single(word: str) -> int:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"toy world word '{word}' is {len(ids)} tokens for this tokenizer, expected 1")
        return int(ids[0])

    return frozenset(single(c) for c in COLOURS), frozenset(single(s) for s in SHAPES)


def object_token_positions(tokenizer: Any, text: str) -> list[list[int]]:
    """For each object of a world caption, in caption order: the positions of its colour and shape tokens."""
    ids = tokenizer(text).input_ids
    colours, shapes = attribute_token_ids(tokenizer)
    return [[i, i + 1] for i in range(len(ids) - 1) if ids[i] in colours and ids[i + 1] in shapes]
