"""Word ↔ token mapping with the real CLIP BPE tokenizer (made offline) and per-token attention aggregation."""

from __future__ import annotations

import pytest
import torch

from benchmark.attention import AttnCall, CrossAttentionStore
from benchmark.models import load_clip_tokenizer, write_clip_tokenizer
from methods.token_maps import _layout_by_words, _word_spans, aggregate_maps, token_layout, word_maps


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return load_clip_tokenizer(write_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip"))


PROMPT = "A photo of a Persian cat wearing sunglasses, riding a bike on a beach."


def test_words_split_into_several_tokens_are_grouped(clip_tokenizer) -> None:
    layout = token_layout(clip_tokenizer, PROMPT)
    assert layout.start == 0 and layout.ids[0] == clip_tokenizer.bos_token_id
    assert layout.end == len(layout.ids) - 1 and layout.ids[layout.end] == clip_tokenizer.eos_token_id
    words = dict(zip(layout.words, layout.word_tokens, strict=True))
    tokens = clip_tokenizer.convert_ids_to_tokens(list(layout.ids))
    assert [tokens[p] for p in words["sunglasses,"]] == ["sunglasses</w>", ",</w>"]
    assert [tokens[p] for p in words["beach."]] == ["beach</w>", ".</w>"]
    assert [tokens[p] for p in words["Persian"]] == ["persian</w>"]
    # every non-special token belongs to exactly one word, in order
    flat = [p for toks in layout.word_tokens for p in toks]
    assert flat == list(range(1, len(layout.ids) - 1))
    assert layout.phrase_tokens("persian cat") == [*words["Persian"], *words["cat"]]
    assert layout.phrase_tokens("beach") == list(words["beach."])


def test_word_by_word_fallback_agrees_with_offsets(clip_tokenizer) -> None:
    layout = token_layout(clip_tokenizer, PROMPT)
    ids, groups, _ = _layout_by_words(clip_tokenizer, PROMPT, _word_spans(PROMPT), 77)
    assert tuple(ids) == layout.ids
    assert tuple(tuple(g) for g in groups) == layout.word_tokens


def test_truncation_drops_trailing_words(clip_tokenizer) -> None:
    prompt = " ".join(["cat"] * 100)
    layout = token_layout(clip_tokenizer, prompt)
    assert len(layout.ids) == 77 and layout.end == 76
    assert len(layout.kept_words()) == 75 and layout.word_tokens[-1] == ()


def test_word_maps_mean_of_tokens_plus_start_and_end(clip_tokenizer) -> None:
    layout = token_layout(clip_tokenizer, "a cat wearing sunglasses,")
    maps = torch.rand(4, 4, 77)
    out, labels = word_maps(maps, layout)
    assert labels == ["<start>", "a", "cat", "wearing", "sunglasses,", "<end>"]
    assert torch.equal(out[..., 0], maps[..., 0])
    sung = list(layout.word_tokens[3])
    assert len(sung) == 2
    assert torch.allclose(out[..., 4], maps[..., sung].mean(-1))
    assert torch.equal(out[..., -1], maps[..., layout.end])


def test_aggregate_is_mean_over_heads_layers_steps_and_seeds() -> None:
    """Feed the real capture store hand-made probabilities and compare with the plain mean."""
    heads, seeds, side, tokens = 2, 3, 4, 5
    store = CrossAttentionStore({side}, batch_slice=slice(seeds, 2 * seeds))  # text half of a CFG batch
    torch.manual_seed(0)
    captured = []  # (step, layer) → (2·seeds·heads, q, k)
    for _step in range(2):
        for layer in ("down_blocks.1.a.attn2", "up_blocks.1.b.attn2"):
            probs = torch.rand(2 * seeds * heads, side * side, tokens).softmax(-1)
            call = AttnCall(layer, True, heads, side * side)
            assert store.wants(call)
            store(probs, call)
            captured.append(probs)
    assert not store.wants(AttnCall("mid_block.x.attn2", True, heads, 4))  # other side
    assert not store.wants(AttnCall("up_blocks.1.b.attn1", False, heads, side * side))  # self-attention
    stacked = torch.stack(captured).reshape(4, 2 * seeds, heads, side, side, tokens)[:, seeds:]
    expected = stacked.mean(dim=(0, 1, 2))  # calls (layers × steps), seeds, heads
    assert torch.allclose(aggregate_maps(store, side), expected, atol=1e-6)


def test_the_two_official_word_rules_on_one_prompt(clip_tokenizer) -> None:
    """InstDiffEdit's words keep their punctuation tokens; P2P's are trimmed and lower-cased, and the punctuation
    tokens belong to no word; both from the same token layout machinery."""
    space = token_layout(clip_tokenizer, PROMPT, rule="space")
    trimmed = token_layout(clip_tokenizer, PROMPT, rule="trimmed")
    assert space.ids == trimmed.ids and len(space.words) == len(trimmed.words)
    assert trimmed.words[1] == "photo" and trimmed.words[7] == "sunglasses" and space.words[7] == "sunglasses,"
    tokens = clip_tokenizer.convert_ids_to_tokens(list(trimmed.ids))
    assert [tokens[p] for p in trimmed.word_tokens[7]] == ["sunglasses</w>"]
    assert [tokens[p] for p in space.word_tokens[7]] == ["sunglasses</w>", ",</w>"]
    flat = {p for toks in trimmed.word_tokens for p in toks}
    assert {tokens[p] for p in range(1, len(trimmed.ids) - 1) if p not in flat} == {",</w>", ".</w>"}
    with pytest.raises(ValueError, match="word rule 'words'"):
        token_layout(clip_tokenizer, PROMPT, rule="words")  # type: ignore[arg-type]
