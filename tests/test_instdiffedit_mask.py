"""InstDiffEdit's instant-mask module on hand-built attention tensors (no diffusion involved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.models import load_clip_tokenizer, write_clip_tokenizer
from methods.instdiffedit import instant_mask
from methods.mask_ops import gaussian_blur, opencv_gaussian_kernel
from methods.token_maps import TokenLayout, token_layout

SIDE = 16  # the 16×16 cross-attention layers of SD at 512 px
SIZE = 64  # the mask side (latent side at 512 px)


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return load_clip_tokenizer(write_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip"))


def square() -> torch.Tensor:
    sq = torch.zeros(SIDE, SIDE)
    sq[4:12, 3:11] = 1.0
    return sq


def attention(layout: TokenLayout, lit: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    """(16, 16, 77) maps: faint noise everywhere; a diffuse start token (high everywhere, a little lower where the
    object is, as in SD); each word in ``lit`` set to its map (+ noise) on all its tokens."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(SIDE, SIDE, 77, generator=g) * 0.05
    maps[..., layout.start] = 0.6 - 0.25 * square() + 0.05 * torch.rand(SIDE, SIDE, generator=g)
    for word, m in lit.items():
        for pos in layout.word_tokens[layout.words.index(word)]:
            maps[..., pos] = 0.02 + m + 0.03 * torch.rand(SIDE, SIDE, generator=g)
    return maps


def iou_with_square(mask: np.ndarray) -> float:
    gt = square().repeat_interleave(SIZE // SIDE, 0).repeat_interleave(SIZE // SIDE, 1).numpy() > 0
    return float((mask & gt).sum() / (mask | gt).sum())


def test_word_lighting_a_square_gives_that_square(clip_tokenizer) -> None:
    layout = token_layout(clip_tokenizer, "a cat sitting on green grass")
    sq = square()
    maps = attention(layout, {"cat": 0.3 * sq, "green": 0.2 * (1 - sq), "grass": 0.25 * (1 - sq)})
    m = instant_mask(maps, layout, SIZE)
    assert m.words == ("<start>", "a", "cat", "sitting", "on", "green", "grass", "<end>")
    assert m.words[m.labels.index] == "cat"  # most similar to the inverted (diffuse) start map
    assert dict(zip(m.words, m.labels.labels, strict=True))["cat"] == 1
    assert dict(zip(m.words, m.labels.labels, strict=True))["grass"] == -1
    assert m.binary.shape == (SIZE, SIZE) and m.soft.min() >= 0 and m.soft.max() <= 1
    assert iou_with_square(m.binary) >= 0.9
    # the soft mask re-binarises at another φ without recomputation: a higher φ never grows the mask
    assert ((m.soft > 0.5) <= m.binary).all()


def test_word_split_into_tokens_is_found_by_its_mean(clip_tokenizer) -> None:
    """'sunglasses,' is two tokens; only one of them attends to the square, the mean still finds it."""
    layout = token_layout(clip_tokenizer, "a man wearing sunglasses, on a beach")
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(SIDE, SIDE, 77, generator=g) * 0.05
    maps[..., 0] = 0.6 - 0.25 * square() + 0.05 * torch.rand(SIDE, SIDE, generator=g)
    first, comma = layout.word_tokens[layout.words.index("sunglasses,")]
    maps[..., first] = 0.02 + 0.5 * square()
    beach = layout.word_tokens[layout.words.index("beach")]
    maps[..., beach[0]] = 0.02 + 0.3 * (1 - square())
    m = instant_mask(maps, layout, SIZE)
    assert m.words[m.labels.index] == "sunglasses,"
    assert iou_with_square(m.binary) >= 0.9


def test_one_word_prompt_uses_its_map_directly(clip_tokenizer) -> None:
    layout = token_layout(clip_tokenizer, "cat")
    m = instant_mask(attention(layout, {"cat": 0.3 * square()}), layout, SIZE)
    assert m.labels is None and m.words == ("<start>", "cat", "<end>")
    # without background words nothing trims the blurred edge: φ = 0.2 keeps a ~2 px halo around the square
    gt = square().repeat_interleave(SIZE // SIDE, 0).repeat_interleave(SIZE // SIDE, 1).numpy() > 0
    assert (m.binary & gt).sum() / gt.sum() >= 0.99
    assert 0.75 <= iou_with_square(m.binary) < 0.9


def test_labels_from_the_first_step_are_reused(clip_tokenizer) -> None:
    """The official code labels words once; later steps keep the labels even when the maps change."""
    layout = token_layout(clip_tokenizer, "a cat sitting on green grass")
    sq = square()
    first = instant_mask(attention(layout, {"cat": 0.3 * sq, "grass": 0.25 * (1 - sq)}), layout, SIZE)
    # at a later step 'grass' lights the square too: recomputed labels would call it foreground
    later_maps = attention(layout, {"cat": 0.3 * sq, "grass": 0.3 * sq}, seed=2)
    assert instant_mask(later_maps, layout, SIZE).labels.labels != first.labels.labels
    reused = instant_mask(later_maps, layout, SIZE, labels=first.labels)
    assert reused.labels == first.labels


def test_blur_matches_opencv_rules() -> None:
    """σ ≤ 0 with a 5×5 kernel is OpenCV's fixed binomial table; σ > 0 the sampled Gaussian, which torchvision's
    gaussian_blur (reflect padding = OpenCV's default border) computes the same way."""
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    assert np.allclose(opencv_gaussian_kernel(5, 0), np.array([1, 4, 6, 4, 1]) / 16)
    img = np.random.default_rng(0).random((12, 12)).astype(np.float32)
    ours = gaussian_blur(img, 5, 1.0)
    theirs = tv_blur(torch.from_numpy(img)[None, None], [5, 5], [1.0, 1.0])[0, 0].numpy()
    assert np.allclose(ours, theirs, atol=1e-6)
    # the binomial table against a direct 2-D reflect-101 correlation
    k = np.outer(opencv_gaussian_kernel(5, 0), opencv_gaussian_kernel(5, 0))
    padded = np.pad(img, 2, mode="reflect")
    direct = np.array([[(padded[i : i + 5, j : j + 5] * k).sum() for j in range(12)] for i in range(12)])
    assert np.allclose(gaussian_blur(img, 5, 0.0), direct, atol=1e-6)
