"""Prompt helpers: CLIP token counting without any download (open_clip ships its BPE vocabulary)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _clip_bpe():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def count_clip_tokens(text: str) -> int:
    """Tokens including start and end markers, as a 77-token CLIP text encoder sees them."""
    return len(_clip_bpe().encode(text)) + 2
