"""Prompt-to-Prompt, InstructPix2Pix and null-text inversion against the official rules (issue 21).

Every expected value below is worked out by hand from the official code (google/prompt-to-prompt ``ptp_utils``,
``seq_aligner``, the notebooks' ``load_512``; instruct-pix2pix ``edit_cli.py``) on the real CLIP tokenizer built
offline; the comments show the working. ``official_word_inds`` is an independent few-line re-derivation of
``get_word_inds`` used to cross-check the project's lookup on PIE-Bench-style prompts.

Each rule was broken on purpose once and its tests seen to fail (then restored): matching words with punctuation
trimmed (``w.strip(".") == word`` in ``word_positions``) fails the "cat." and "mat." tests; preferring the
diagonal on ties in ``global_alignment`` fails both aligner tests; writing ``mapper[i, j]`` instead of the
official ``mapper[j, j]`` after the last swap fails the unequal-token-count mapper tests; rounding the crop
offset up in ``p2p_framing`` (either branch) fails the crop test; ``math.floor`` for the shorter side in
``ip2p_size`` fails the edit_cli size tests; counting every grad-enabled forward as a backward pass fails the
grad_evals unit test; squashing the whole image into the model's square (the old preparation) in either adapter
fails its adapter test; dropping the runner's grad_evals fails ``test_p2p.py``'s end-to-end test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from benchmark.adapter import EditContext
from benchmark.datasets.synthetic import make_sample
from benchmark.models import load_clip_tokenizer, write_clip_tokenizer
from benchmark.nfe import NFECounter
from methods.ddim_inversion import ddim_invert, inversion_latent, text_embeddings
from methods.image_framing import fit_box, ip2p_framing, ip2p_size, p2p_framing
from methods.instructpix2pix import InstructPix2Pix
from methods.null_text_inversion import null_text_inversion
from methods.p2p import PromptToPrompt
from methods.p2p_control import LocalBlend
from methods.p2p_tokens import (
    choose_edit,
    cross_replace_schedule,
    equalizer,
    find_words,
    global_alignment,
    refinement_mapper,
    replacement_mapper,
    word_positions,
)

L = 77
CAT = "a cat sitting on a mat"  # [SOT, a, cat, sitting, on, a, mat, EOT]
MEERKAT = "a meerkat sitting on a mat"  # [SOT, a, meer, kat, sitting, on, a, mat, EOT]
PERSIAN = "A photo of a Persian cat wearing a sunglasses and red shirt riding a bike on a beach."
# [SOT, a(A) 1, photo 2, of 3, a 4, persian 5, cat 6, wearing 7, a 8, sunglasses 9, and 10, red 11, shirt 12,
#  riding 13, a 14, bike 15, on 16, a 17, beach 18, . 19, EOT]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    return load_clip_tokenizer(write_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip"))


def official_word_inds(text: str, word: str | int, tok) -> list[int]:
    """get_word_inds re-derived: words = text.split(" "); each token (decoded, '#' stripped) adds its characters
    to the current word, whose index moves on once its length is reached."""
    words = text.split(" ")
    chosen = [word] if isinstance(word, int) else [i for i, w in enumerate(words) if w == word]
    ends, total = [], 0
    for w in words:  # cumulative character count at which each word is complete
        total += len(w)
        ends.append(total)
    out, chars, w_idx = [], 0, 0
    for pos, t in enumerate(tok.encode(text)[1:-1], start=1):
        chars += len(tok.decode([t]).strip("#"))
        if chosen and w_idx in chosen:
            out.append(pos)
        if w_idx < len(words) and chars >= ends[w_idx]:
            w_idx += 1
    return out


def dense(pairs: dict[tuple[int, int], float]) -> torch.Tensor:
    m = torch.zeros(L, L)
    for (i, j), v in pairs.items():
        m[i, j] = v
    return m


# ---------------------------------------------------------------- the official word rule


def test_words_match_exactly_every_occurrence(tok) -> None:
    """Exact match on split(" ") words, every occurrence, case and punctuation included."""
    assert word_positions(PERSIAN, "a", tok) == [4, 8, 14, 17]  # "A" (word 0) is not "a"
    assert word_positions(PERSIAN, "Persian", tok) == [5]
    assert word_positions(PERSIAN, "persian", tok) == []  # case-sensitive, like the official ==
    assert word_positions(PERSIAN, "beach", tok) == []  # the word is "beach."
    assert word_positions(PERSIAN, "beach.", tok) == [18, 19]  # "beach" and "." tokens both belong to it
    assert word_positions(PERSIAN, 0, tok) == [1]  # an int is a word index
    assert word_positions(CAT + ".", "mat", tok) == []
    assert word_positions(CAT + ".", "mat.", tok) == [6, 7]


def test_multi_token_words_and_the_official_quirks(tok) -> None:
    """Tokens are walked along the words by decoded length; the official rule's quirks are kept."""
    assert word_positions("a slanted mountain bicycle on the road", "slanted", tok) == [2, 3]  # slan + ted
    # "a  cat": words ["a", "", "cat"]; token "cat" completes the empty word 1, so word 2 gets nothing
    assert word_positions("a  cat", "cat", tok) == []
    # "#cat": the "#" token decodes to "" after strip("#"), so "#cat" (4 chars) ends only at "café" (cat + café)
    # and "café"'s index lands on the next token, "x" (position 6)
    assert word_positions("don't #cat café x", "café", tok) == [6]


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (PERSIAN, ["a", "Persian", "cat", "sunglasses", "beach.", 4, 17]),
        ("a cat wearing a hat and a cat collar", ["cat", "a", "hat", "collar"]),  # repeated words
        ("a slanted mountain bicycle on the road in front of a building", ["slanted", "bicycle", "building"]),
        ("a meerkat, sitting on a rock.", ["meerkat", "meerkat,", "rock", "rock."]),  # punctuation
        ("an oil painting of a snowy mountain village at night", ["snowy", "village", "night"]),
    ],
)
def test_word_lookup_agrees_with_a_rederivation_of_get_word_inds(tok, prompt, words) -> None:
    for w in words:
        assert word_positions(prompt, w, tok) == official_word_inds(prompt, w, tok), w


def test_phrase_is_its_words_and_cat_dot_finds_nothing(tok) -> None:
    """A dataset phrase is given as its words (every occurrence each); "cat" in "...a cat." finds nothing
    officially, while the trimmed option finds it."""
    assert find_words(PERSIAN, "Persian cat", tok) == [5, 6]
    assert find_words("a red car next to a red house", "red car", tok) == [2, 3, 7]  # both "red"s, one "car"
    assert find_words("a photo of a cat.", "cat", tok) == []
    assert find_words("a photo of a cat.", "cat", tok, rule="trimmed") == [5]
    assert find_words("a red car next to a red house", "red car", tok, rule="trimmed") == [2, 3]


def test_equalizer_and_schedule_use_the_official_lookup(tok) -> None:
    eq = equalizer("a cat and a cat.", ["cat"], 2.0, tok)  # tokens: a 1, cat 2, and 3, a 4, cat 5, . 6
    assert eq[2] == 2 and eq[5] == 1 and eq.sum() == L + 1  # "cat." is another word
    assert equalizer("a photo of a cat.", ["cat"], 2.0, tok).sum() == L  # not found: no change, no error
    alpha = cross_replace_schedule({"default_": 0.8, "mat": 0.4}, CAT, 10, tok)  # 11 rows
    assert alpha[:, 6].tolist() == [1] * 4 + [0] * 7 and alpha[:, 2].tolist() == [1] * 8 + [0] * 3
    alpha = cross_replace_schedule({"default_": 0.8, "mat": 0.4}, CAT + ".", 10, tok)  # "mat" absent: default
    assert alpha[:, 6].tolist() == [1] * 8 + [0] * 3


def test_local_blend_keeps_the_source_when_the_blend_word_is_not_found(tok) -> None:
    """Official LocalBlend with words that match nothing: zero weights, an empty mask, x_t = the source."""
    sample = make_sample(0, 0)
    sample.source_prompt, sample.target_prompt = "a photo of a cat.", "a photo of a dog."
    sample.edit_words = ("cat", "dog")
    weights, _ = PromptToPrompt(models=None).blend_weights(sample, tok)
    assert not weights.any()
    blend = LocalBlend(weights, (4, 4), threshold=0.3)
    blend.capture(torch.rand(2, 2, 16, L).softmax(-1))
    latents = torch.randn(2, 4, 8, 8)
    assert torch.equal(blend(0, latents), latents[:1].expand(2, -1, -1, -1))
    trimmed, _ = PromptToPrompt(models=None, word_rule="trimmed").blend_weights(sample, tok)
    assert trimmed[0].nonzero().flatten().tolist() == [5] and trimmed[1].nonzero().flatten().tolist() == [5]


# ---------------------------------------------------------------- word-swap mapper


def test_replacement_mapper_same_token_count_is_identity(tok) -> None:
    assert torch.equal(replacement_mapper(CAT, "a dog sitting on a mat", tok), torch.eye(L))
    with pytest.raises(ValueError, match="same number of words"):
        replacement_mapper(CAT, "a cat sitting on a red mat", tok)


def test_replacement_mapper_one_token_becomes_two(tok) -> None:
    """cat (2) → meer kat (2, 3): each target token gets 1/2; i = 3, j = 4; after the last swap the official
    writes mapper[j, j] for j = 4..76, so source "sitting" (3) maps nowhere and target 4 reads source 4."""
    expected = {(0, 0): 1, (1, 1): 1, (2, 2): 0.5, (2, 3): 0.5} | {(k, k): 1 for k in range(4, L)}
    assert torch.equal(replacement_mapper(CAT, MEERKAT, tok), dense(expected))


def test_replacement_mapper_two_tokens_become_one(tok) -> None:
    """meer kat (2, 3) → cat (2): ratio 1/1, both source tokens sum into target 2; i = 4, j = 3; then
    mapper[j, j] for j = 3..75 (the loop stops when i reaches 77)."""
    expected = {(0, 0): 1, (1, 1): 1, (2, 2): 1, (3, 2): 1} | {(k, k): 1 for k in range(3, L - 1)}
    assert torch.equal(replacement_mapper(MEERKAT, CAT, tok), dense(expected))


def test_replacement_mapper_keeps_the_offset_until_the_last_swap(tok) -> None:
    """Two swaps: cat → meer kat, then mat (6) → rug (7). Between them source i maps to target i + 1; the second
    block is token to token (6 → 7); after it, i = 7, j = 8 and the diagonal starts at 8 (source EOT 7: nothing)."""
    expected = {(0, 0): 1, (1, 1): 1, (2, 2): 0.5, (2, 3): 0.5, (3, 4): 1, (4, 5): 1, (5, 6): 1, (6, 7): 1}
    expected |= {(k, k): 1 for k in range(8, L)}
    assert torch.equal(replacement_mapper(CAT, "a meerkat sitting on a rug", tok), dense(expected))
    assert choose_edit(CAT, MEERKAT, tok) == "refine"  # auto (ours) keeps replace for equal token counts
    assert choose_edit(CAT, "a dog sitting on a mat", tok) == "replace"


# ---------------------------------------------------------------- refinement alignment


def test_global_alignment_tie_breaking_is_the_official_one() -> None:
    """x = [S, A, A, E], y = [S, B, A, E] (LCS 3). Traceback from (4, 4): E = E and both neighbours are 2 < 3 →
    diagonal; at (3, 3) the up neighbour M[2, 3] = LCS([S, A], [S, B, A]) = 2 equals M[3, 3] → up (x's second A
    skipped); at (2, 3) neither neighbour reaches 2 → diagonal: y's A ↔ x's FIRST A; B has no partner."""
    assert global_alignment([0, 1, 1, 3], [0, 2, 1, 3]) == [0, -1, 1, 3]
    # x = [S, A, E], y = [S, A, A, E]: at (2, 3) left M[2, 2] = 2 equals → y's second A is the gap
    assert global_alignment([0, 1, 3], [0, 1, 1, 3]) == [0, 1, -1, 2]
    assert global_alignment([5, 6], [7, 8]) == [-1, -1]  # mismatches are never aligned


def test_refinement_mapper_on_real_prompts(tok) -> None:
    # "a big big dog" [S, a, big, big, dog, E] → "a small big dog" [S, a, small, big, dog, E]: as above, the
    # target's "big" takes the source's first "big" (2), not the second
    mapper, alphas = refinement_mapper("a big big dog", "a small big dog", tok)
    assert mapper[:6].tolist() == [0, 1, -1, 2, 4, 5] and mapper[6:].tolist() == list(range(6, L))
    assert alphas[:6].tolist() == [1, 1, 0, 1, 1, 1] and bool(alphas[6:].all())
    mapper, _ = refinement_mapper(CAT, "a cat sitting on a striped mat", tok)  # insertion: striped is new
    assert mapper[:9].tolist() == [0, 1, 2, 3, 4, 5, -1, 6, 7]
    # deletion: [S, a, man, with, a, hat, on, the, beach, E] → [S, a, man, on, the, beach, E]
    mapper, alphas = refinement_mapper("a man with a hat on the beach", "a man on the beach", tok)
    assert mapper[:7].tolist() == [0, 1, 2, 6, 7, 8, 9] and bool(alphas.all())
    # deletion of a repeated word: at (4, 3) the up neighbour M[3, 3] = 3 ties → x's second "big" is skipped and
    # the target's "big" takes the first (2)
    mapper, _ = refinement_mapper("a big big dog", "a big dog", tok)
    assert mapper[:5].tolist() == [0, 1, 2, 4, 5]


# ---------------------------------------------------------------- image preparation


def test_p2p_centre_crop_as_load_512() -> None:
    """load_512: h < w → columns [(w − h) // 2, + h); w < h → rows; offsets trimmed first, with the notebook's
    clamping (top ≤ h − left − 1)."""
    assert p2p_framing((640, 480), 512).box == (80, 0, 560, 480)
    assert p2p_framing((641, 480), 512).box == (80, 0, 560, 480)  # 161 // 2 = 80: the extra column is on the right
    assert p2p_framing((300, 451), 512).box == (0, 75, 300, 375)  # (451 − 300) // 2 = 75
    assert p2p_framing((512, 512), 512).whole
    # offsets (0, 0, 200, 0): rows 200..480 → 640×280, columns (640 − 280) // 2 = 180
    assert p2p_framing((640, 480), 512, (0, 0, 200, 0)).box == (180, 200, 460, 480)
    # left 90 on a 100×100 image bounds top by 100 − 90 − 1 = 9: rows 9..100, 10 wide → rows 49..59
    assert p2p_framing((100, 100), 512, (90, 0, 50, 0)).box == (90, 49, 100, 59)


def test_p2p_model_input_and_the_way_back() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)  # 80 wide, 48 high
    image = Image.fromarray(pixels)
    frame = p2p_framing(image.size, 32)
    assert frame.box == (16, 0, 64, 48)
    # the notebook: numpy crop, then PIL's resize with its default filter
    expected = np.asarray(Image.fromarray(pixels[:, 16:64]).resize((32, 32)))
    assert np.array_equal(np.asarray(frame.model_input(image)), expected)
    back = np.asarray(frame.image_back(Image.new("RGB", (32, 32), (255, 0, 0)), image))
    assert back.shape == (48, 80, 3)
    assert (back[:, 16:64] == [255, 0, 0]).all()  # the edit covers the crop
    assert np.array_equal(back[:, :16], pixels[:, :16]) and np.array_equal(back[:, 64:], pixels[:, 64:])
    mask = frame.mask_back(np.ones((8, 8), dtype=bool))
    assert mask.shape == (48, 80) and mask[:, 16:64].all() and not mask[:, :16].any() and not mask[:, 64:].any()


def test_ip2p_size_as_edit_cli() -> None:
    """factor = 512 / long; short side → ceil(short·factor / 64)·64; each side floor(side·factor / 64)·64."""
    assert ip2p_size((640, 480)) == (512, 384)  # 384 is a multiple of 64 already
    assert ip2p_size((500, 333)) == (576, 384)  # 340.99 → 384; factor 384/333: 576.58 → 576 (longer than 512)
    assert ip2p_size((300, 1000)) == (192, 640)  # 153.6 → 192; factor 0.64: 640
    assert ip2p_size((512, 512)) == (512, 512) and ip2p_size((64, 64), 64) == (64, 64)


def test_ip2p_fit_box_is_imageops_fit_and_maps_back() -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (333, 500, 3), dtype=np.uint8))
    frame = ip2p_framing(image.size)
    assert frame.size == (576, 384)
    fitted = ImageOps.fit(image, frame.size, method=Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(image.resize(frame.size, Image.Resampling.LANCZOS, box=frame.box)), fitted)
    assert np.array_equal(np.asarray(frame.model_input(image)), np.asarray(fitted))
    # aspect 1.5 < 500/333: the box is 499.5 wide, centred: (0.25, 0, 499.75, 333) → pasted over (0, 0, 500, 333)
    assert fit_box(image.size, frame.size) == pytest.approx((0.25, 0.0, 499.75, 333.0))
    assert frame.image_back(Image.new("RGB", frame.size), image).size == (500, 333)


# ---------------------------------------------------------------- grad_evals


def test_grad_evals_count_backward_passes_not_forwards() -> None:
    counter = NFECounter()
    layer = torch.nn.Linear(3, 3)
    counter.attach(layer)
    x = torch.randn(4, 3)
    layer(x)  # forward with gradients enabled, never backpropagated
    assert counter.grad_evals == 0 and counter.evaluations == 4
    layer(x[:2]).sum().backward()
    assert counter.grad_evals == 2
    with torch.no_grad():
        layer(x)
    y = torch.randn(1, 3, requires_grad=True)
    torch.autograd.grad(layer(y).sum(), [y])  # autograd.grad, as null-text inversion uses
    assert counter.grad_evals == 3
    counter.detach()


@pytest.mark.parametrize(("epsilon", "per_step"), [(1e6, 1), (-1.0, 3)])
def test_grad_evals_equal_the_adam_steps_run(tiny_bundle, epsilon, per_step) -> None:
    """epsilon 1e6: every step stops after one Adam step; −1: never early, 3 each."""
    pipe = tiny_bundle.pipeline("text2img")
    cond = text_embeddings(pipe, ["a purple circle"])
    uncond = text_embeddings(pipe, [""])
    trajectory = ddim_invert(pipe, inversion_latent(pipe, make_sample(0, 0).image), cond, 2)
    counter = NFECounter()
    counter.attach_pipeline(pipe)
    try:
        result = null_text_inversion(pipe, trajectory, cond, uncond, 7.5, inner_steps=3, epsilon=epsilon)
    finally:
        counter.detach()
    assert result.inner_steps == [per_step, per_step]
    assert counter.grad_evals == sum(result.inner_steps)


def _wide(sample, width: int, height: int):
    """The sample on a wider canvas (its image centred), as a non-square input."""
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    canvas.paste(sample.image.resize((height, height)), ((width - height) // 2, 0))
    return dataclasses.replace(sample, image=canvas, mask=np.zeros((height, width), dtype=bool))


def _latent_sides(unet: torch.nn.Module, seen: list[tuple[int, int]]):
    return unet.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))


def test_p2p_adapter_crops_and_maps_back(tiny_bundle) -> None:
    """96×64 on the tiny model (64 px): load_512's square is columns 16..80, the UNet sees 8×8 latents, the edit
    and both masks come back at 96×64 with the masks empty outside the crop."""
    sample = _wide(make_sample(0, 0), 96, 64)
    p2p = PromptToPrompt(models=tiny_bundle, num_inference_steps=2, inversion="ddim", blend_threshold=0.0)
    seen: list[tuple[int, int]] = []
    handle = _latent_sides(tiny_bundle.pipeline("text2img").unet, seen)
    try:
        out = p2p.edit(sample, EditContext(seed=0, device=tiny_bundle.device))
    finally:
        handle.remove()
    assert set(seen) == {(8, 8)}
    assert out.image.size == (96, 64) and out.extras["model_box"] == [16, 0, 80, 64]
    assert out.mask.shape == (64, 96) and out.soft_mask.shape == (64, 96)
    assert out.mask[:, 16:80].all() and not out.mask[:, :16].any() and not out.mask[:, 80:].any()
    assert np.array_equal(np.asarray(out.image)[:, :16], np.asarray(sample.image)[:, :16])


def test_instructpix2pix_adapter_uses_the_edit_cli_size(tiny_bundle) -> None:
    """160×96 at resolution 128: factor 0.8, short 76.8 → 128, factor 4/3: 213.3 → 192 → the model sees 192×128
    (latents 16×24) of the centred 144×96 box (aspect 1.5); the edit comes back at 160×96."""
    sample = dataclasses.replace(_wide(make_sample(0, 0), 160, 96), instruction="make it blue")
    method = InstructPix2Pix(models=tiny_bundle, num_inference_steps=2, resolution=128)
    seen: list[tuple[int, int]] = []
    handle = _latent_sides(tiny_bundle.pipeline("instruct_pix2pix").unet, seen)
    try:
        out = method.edit(sample, EditContext(seed=0, device=tiny_bundle.device))
    finally:
        handle.remove()
    assert set(seen) == {(16, 24)}
    assert out.image.size == (160, 96)
    assert out.extras == {"model_box": [8, 0, 152, 96], "model_size": [192, 128]}
