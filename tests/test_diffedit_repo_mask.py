"""The InstDiffEdit repository's DiffEdit baseline (``diffedit_repo``) against its official rules (model/diffedit.py).

The mask from known noise predictions: L2 over channels per draw, mean over draws, min-max, ×255 truncated to uint8,
``cv2.GaussianBlur(m, (5, 5), 1)``, ``m > 255·0.3``. The expected maps are re-derived here in a few lines of numpy
(the Gaussian from its formula, OpenCV's default border BORDER_REFLECT_101 = numpy's ``reflect``), not by the
project's ``mask_ops``. And the baseline decodes each img2img pass's image, as the official ``predict_noise`` does.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.adapter import EditContext
from benchmark.datasets.synthetic import make_sample
from methods.diffedit import DiffEditRepo, noise_distance, repo_mask

SIDE = 16
SQUARE = (slice(4, 12), slice(4, 12))


def blur_sigma1_5x5(img: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(img, (5, 5), 1), re-derived: the normalised exp(−x²/2σ²) taps, border reflect-101."""
    x = np.arange(-2, 3, dtype=np.float64)
    k = np.exp(-(x**2) / 2.0)
    k /= k.sum()
    padded = np.pad(img.astype(np.float64), 2, mode="reflect")  # numpy's reflect = OpenCV's BORDER_REFLECT_101
    rows = sum(k[i] * padded[i : i + img.shape[0], :] for i in range(5))
    return sum(k[j] * rows[:, j : j + img.shape[1]] for j in range(5))


def eps_with_square(channel_values: dict[int, float], extra: tuple[int, int, float] | None = None) -> torch.Tensor:
    eps = torch.zeros(1, 4, SIDE, SIDE)
    for c, v in channel_values.items():
        eps[0, c][SQUARE] = v
    if extra is not None:
        r, col, v = extra
        eps[0, 0, r, col] = v
    return eps


def test_uniform_square_gives_exactly_the_square_at_sigma_1_and_threshold_0_3() -> None:
    """Hand-computed: a square of equal noise distance (3-4-5 over two channels: 5; one channel: 3; mean 4) becomes
    255 inside, 0 outside. The 1-D taps of σ = 1 are [0.0545, 0.2442, 0.4026, 0.2442, 0.0545], so the pixel just
    outside an edge gets 0.2442 + 0.0545 = 0.2987 of 255 (below 0.3: outside), the one just inside 0.7013 (inside),
    the outside corner 0.2987² = 0.0892. Checked to fail: with σ = 0 (OpenCV's rule, the binomial [1 4 6 4 1]/16:
    5/16 = 0.3125 > 0.3) the ring just outside joins the mask."""
    reference = torch.zeros(1, 4, SIDE, SIDE)
    draws = [
        noise_distance(reference, eps_with_square({0: 3.0, 1: 4.0})),
        noise_distance(reference, eps_with_square({0: 3.0})),
    ]
    soft, binary = repo_mask(draws, blur_kernel=5, blur_sigma=1.0, mask_threshold=0.3)
    expected = np.zeros((SIDE, SIDE), bool)
    expected[SQUARE] = True
    assert (binary == expected).all()
    assert abs(soft[3, 7] - 0.298690) < 1e-5  # one pixel above the top edge, middle of it
    assert abs(soft[4, 7] - 0.701310) < 1e-5  # the top edge's own row
    assert abs(soft[3, 3] - 0.298690**2) < 1e-5  # outside corner
    assert abs(soft[7, 7] - 1.0) < 1e-6


def test_mean_min_max_uint8_truncation_blur_and_threshold_match_the_official_rule() -> None:
    """A peak cell sets the max, so the rest of the square is 4/6.5 of it: 156.92 → 156 after uint8 truncation.
    The expected map is re-derived in numpy. Checked to fail: rounding instead of truncating (157) moves the soft
    map by 1/255 at the plateau; dropping the min-max changes every value; σ = 0 changes the blur."""
    reference = torch.zeros(1, 4, SIDE, SIDE)
    query = [eps_with_square({0: 3.0, 1: 4.0}), eps_with_square({0: 3.0}, extra=(6, 6, 8.0))]
    draws = [noise_distance(reference, q) for q in query]
    # the official arithmetic, line by line
    dist = np.stack([np.sqrt(((reference - q)[0] ** 2).sum(0).numpy()) for q in query]).mean(0)
    assert dist[6, 6] == 6.5 and dist[7, 7] == 4.0
    scaled = ((dist - dist.min()) / (dist.max() - dist.min()) * 255.0).astype(np.uint8).astype(np.float32)
    assert scaled[7, 7] == 156  # 156.92 truncated, not rounded
    blurred = blur_sigma1_5x5(scaled)
    soft, binary = repo_mask(draws, 5, 1.0, 0.3)
    assert np.abs(soft - blurred / 255.0).max() < 1e-5
    assert (binary == (blurred > 255.0 * 0.3)).all()
    assert 0 < binary.sum() < binary.size


def test_the_baseline_decodes_every_pass_and_its_time_includes_them(tiny_bundle) -> None:
    """Official ``predict_noise`` returns ``latents2images(latents)[0]`` beside the noise: one VAE decode per pass,
    2 × num_draws per image (discarded there, so only their time matters). ``decode_passes=false`` skips them.
    Checked to fail: with the decode line of ``repo_diffedit_mask`` removed the count is 0."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = tiny_bundle.pipeline("text2img")
        calls = []
        original = pipe.vae.decode

        def counting_decode(*args, **kwargs):
            calls.append(args[0].shape)
            return original(*args, **kwargs)

        pipe.vae.decode = counting_decode
        try:
            sample = make_sample(seed=0, index=0)
            for decode, expected in ((True, 2 * 3), (False, 0)):
                calls.clear()
                method = DiffEditRepo(
                    models=tiny_bundle, num_inference_steps=4, num_draws=3, mask_only=True, decode_passes=decode
                )
                method.edit(sample, EditContext(seed=0, device=tiny_bundle.device))
                assert len(calls) == expected
                assert all(shape[0] == 1 for shape in calls)  # one image per pass, as the official batch of one
        finally:
            pipe.vae.decode = original
    finally:
        torch.set_num_threads(before)
