"""Blended Diffusion's rules against values worked out from the official code (omriav/blended-diffusion), on the tiny
pixel model (model=tiny_pixel: ADM layout, random weights, a tiny open_clip guide).

Each rule test was checked to fail with the rule broken once: the spherical distance without its ``/2`` inside
arcsin; the views loss as one mean over every view; the background noised to the previous step instead of the
current one; the ranking sorted from the highest distance; the background not pasted back
(``enforce_background=False``, kept below as the contrast); the last step's guidance variance with diffusers'
unclipped posterior variance (1e-20).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.adapter import EditContext
from benchmark.datasets.synthetic import make_sample
from benchmark.nfe import NFECounter
from methods import blended_diffusion as bd
from tests.conftest import compose

SHRUNK = {"num_inference_steps": 4, "skip_timesteps": 1, "iterations": 2, "batch_size": 2, "augmentations": 3}


@pytest.fixture(scope="module")
def bundle(model_cache: Path) -> Any:
    from benchmark.models import ModelBundle

    return ModelBundle(compose(["model=tiny_pixel"]).model, cache_dir=model_cache)


@pytest.fixture(scope="module")
def sample() -> Any:
    return make_sample(seed=0, index=0, size=96)


def test_spherical_distance_is_half_the_squared_angle() -> None:
    """2·arcsin(‖x̂−ŷ‖/2)²: for unit vectors at angle θ, ‖x̂−ŷ‖ = 2·sin(θ/2), so the distance is θ²/2 whatever the
    vectors' lengths."""
    for theta in (0.1, 0.7, 1.5, 3.0):
        x = torch.tensor([[3.0, 0.0, 0.0]])
        y = torch.tensor([[math.cos(theta), math.sin(theta), 0.0]]) * 0.2
        assert bd.spherical_distance(x, y).item() == pytest.approx(theta**2 / 2, rel=1e-5)


def test_the_views_loss_averages_each_images_views_and_sums_the_images() -> None:
    """Views are stacked [view 0 of images a, b; view 1 of a, b; view 2 of a, b]: loss = mean(a) + mean(b)."""
    a, b = [0.1, 0.4, 0.7], [1.0, 2.0, 6.0]
    stacked = torch.tensor([a[0], b[0], a[1], b[1], a[2], b[2]])
    assert bd.views_loss(stacked, batch=2).item() == pytest.approx(0.4 + 3.0)


def test_clip_judges_the_official_blend_of_x0_and_xt() -> None:
    x0, xt, ac = torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), -1.0), torch.tensor(0.36)
    fac = math.sqrt(1 - 0.36)  # 0.8
    assert torch.allclose(bd.clip_input(x0, xt, ac), torch.full((1, 3, 2, 2), 0.5 * fac - 1.0 * (1 - fac)))


def test_the_background_is_the_source_noised_to_the_current_step(bundle: Any) -> None:
    """postprocess_fn: out·m + q_sample(x0, t)·(1 − m) with q_sample at the step's own t (the official code noises
    the background with the index of the step just taken): √ᾱ_t·x0 + √(1−ᾱ_t)·ε outside, the sample inside."""
    scheduler = bundle.pipeline("pixel").scheduler
    scheduler.set_timesteps(100)
    t = scheduler.timesteps[30]
    gen = torch.Generator().manual_seed(5)
    source = torch.rand(1, 3, 8, 8, generator=gen) * 2 - 1
    x = torch.randn(2, 3, 8, 8, generator=gen)
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    out = bd.blend_with_noised_source(x, source, m, scheduler, t, torch.Generator().manual_seed(9))
    eps = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    ac = scheduler.alphas_cumprod[int(t)]
    expected_outside = ac.sqrt() * source + (1 - ac).sqrt() * eps
    inside = m.bool().expand_as(out)
    assert torch.equal(out[inside], x[inside])
    assert torch.allclose(out[~inside], expected_outside.expand_as(out)[~inside], atol=1e-6)


def test_guidance_variance_is_adms_learned_range_with_the_clipped_last_step(bundle: Any) -> None:
    """For t > 0 it equals diffusers' learned-range variance; at the last step (t → 0) ADM replaces the zero posterior
    variance by the next step's: exp(frac·log β₀' + (1−frac)·log σ²₁) with frac = (v+1)/2."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(bundle.pipeline("pixel").scheduler.config)
    scheduler.set_timesteps(100)
    v = torch.linspace(-1, 1, 5).reshape(1, 5, 1, 1)
    for t in scheduler.timesteps[:-1:17]:
        ours = bd.guidance_variance(scheduler, int(t), v)
        theirs = torch.exp(scheduler._get_variance(int(t), predicted_variance=v))
        assert torch.allclose(ours, theirs.to(ours.dtype), rtol=1e-4), int(t)
    ac = scheduler.alphas_cumprod.double()
    t1 = int(scheduler.timesteps[-2])  # the step before t = 0 (t = 10)
    beta0 = 1 - ac[0]
    posterior1 = (1 - ac[t1] / ac[0]) * (1 - ac[0]) / (1 - ac[t1])
    frac = (v.double() + 1) / 2
    expected = torch.exp(frac * beta0.log() + (1 - frac) * posterior1.log())
    assert torch.allclose(bd.guidance_variance(scheduler, 0, v).double(), expected, rtol=1e-5)


def test_a_fixed_variance_model_is_guided_by_its_posterior_variance(bundle: Any) -> None:
    """fixed_small (the toy pixel model): σ² of the respaced step, as diffusers' own variance for t > 0, and 0 at
    the last step (ADM's model_variance there is the unclipped posterior variance)."""
    from diffusers import DDPMScheduler

    config = {**bundle.pipeline("pixel").scheduler.config, "variance_type": "fixed_small"}
    scheduler = DDPMScheduler.from_config(config)
    scheduler.set_timesteps(100)
    empty = torch.zeros(1, 0, 1, 1)
    for t in scheduler.timesteps[:-1:17]:
        ours = bd.guidance_variance(scheduler, int(t), empty)
        assert ours.item() == pytest.approx(scheduler._get_variance(int(t)).item(), rel=1e-4)
    assert bd.guidance_variance(scheduler, 0, empty).item() == 0.0


class RecordingBlendedDiffusion(bd.BlendedDiffusion):
    """The adapter, keeping every sampled batch (before the background paste) for the test to rank itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[torch.Tensor] = []

    def sample_batch(self, *args: Any) -> torch.Tensor:
        out = super().sample_batch(*args)
        self.batches.append(out)
        return out


def test_the_result_is_the_one_with_the_lowest_clip_distance(bundle: Any, sample: Any) -> None:
    """Every result's distance worked out here: mask·image in [0, 1] (background pasted), resized to CLIP's input
    size, embedded without normalisation, distance θ²/2 to the text embedding (θ their angle). The returned image is
    the result of the lowest distance, and the extras list every distance in increasing order."""
    from torchvision.transforms.functional import resize

    method = RecordingBlendedDiffusion(bundle, **SHRUNK)
    out = method.edit(sample, EditContext(seed=0, device=bundle.device))
    guide = bd.load_guide(bundle, method.settings, bundle.device)
    text = F.normalize(guide.text_embedding(sample.edit_words[1], bundle.device), dim=-1)
    source = bd.pil_to_tensor(sample.image.resize((64, 64), bd.Image.Resampling.LANCZOS), bundle.device)
    m = torch.from_numpy(bd.resize_mask(sample.mask, (64, 64)).astype(np.float32))[None, None]
    results = (source * (1 - m) + torch.cat(method.batches) * m).add(1).div(2).clamp(0, 1)
    with torch.no_grad():
        emb = F.normalize(guide.model.encode_image(resize(m * results, [guide.size] * 2, antialias=True)), dim=-1)
    angles = torch.arccos((emb @ text.T).squeeze(1).clamp(-1, 1))
    distances = (angles**2 / 2).tolist()
    assert len(distances) == 4 and len(set(np.round(distances, 6))) == 4  # distinct: the order means something
    assert out.extras["clip_distances"] == pytest.approx(sorted(distances), abs=2e-5)
    best = int(np.argmin(distances))
    expected = bd.resize_image(bd.tensor_to_pil(results[best]), sample.size)
    inside = sample.mask
    assert np.array_equal(np.asarray(out.image)[inside], np.asarray(expected)[inside])
    assert bd.rank_results(distances)[0] == best


def test_the_background_outside_the_mask_is_the_input_exactly(bundle: Any, sample: Any) -> None:
    out = bd.BlendedDiffusion(bundle, **SHRUNK).edit(sample, EditContext(seed=0, device=bundle.device))
    edited, src, inside = np.asarray(out.image), np.asarray(sample.image), sample.mask
    assert np.array_equal(edited[~inside], src[~inside])
    assert (edited[inside] != src[inside]).mean() > 0.5  # the region itself was regenerated
    loose = bd.BlendedDiffusion(bundle, **SHRUNK, enforce_background=False)
    unpasted = np.asarray(loose.edit(sample, EditContext(seed=0, device=bundle.device)).image)
    assert not np.array_equal(unpasted[~inside], src[~inside])  # without the paste the background drifts


def test_forward_and_backward_evaluations_are_counted_separately(bundle: Any, sample: Any) -> None:
    """One forward and one backward per step and image when a loss is on; no backward when every weight is 0."""
    steps = SHRUNK["num_inference_steps"] - SHRUNK["skip_timesteps"]
    images = SHRUNK["iterations"] * SHRUNK["batch_size"]
    for weights, backward in (({}, steps * images), ({"clip_weight": 0.0, "range_weight": 0.0}, 0)):
        counter = NFECounter()
        counter.attach_pipeline(bundle.pipeline("pixel"))
        try:
            bd.BlendedDiffusion(bundle, **SHRUNK, **weights).edit(sample, EditContext(seed=0, device=bundle.device))
        finally:
            counter.detach()
        assert (counter.calls, counter.evaluations) == (SHRUNK["iterations"] * steps, steps * images)
        assert counter.grad_evals == backward


def test_clip_guidance_moves_the_gradient(bundle: Any, sample: Any) -> None:
    """The CLIP term reaches x_t through the model: the loss's gradient changes when only λ_clip changes."""
    method = bd.BlendedDiffusion(bundle, **SHRUNK)
    pipe = bundle.pipeline("pixel")
    guide = bd.load_guide(bundle, method.settings, bundle.device)
    text = guide.text_embedding("purple square", bundle.device)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    out = pipe.unet(x, 500).sample
    x0 = (x - (1 - pipe.scheduler.alphas_cumprod[500]).sqrt() * out[:, :3]) / pipe.scheduler.alphas_cumprod[500].sqrt()
    m = torch.ones(1, 1, 64, 64)
    losses = []
    for weight in (0.0, 1000.0):
        method = bd.BlendedDiffusion(bundle, **SHRUNK, clip_weight=weight, range_weight=0.0)
        losses.append(
            method.loss(x0, x, pipe.scheduler.alphas_cumprod[500], x.detach(), m, guide, text, torch.Generator())
        )
    assert not losses[0].requires_grad  # nothing to guide by
    assert torch.autograd.grad(losses[1], x)[0].abs().max() > 0


def test_backward_evaluations_reach_the_records_and_the_tables() -> None:
    """``grad_evals`` is a record field (written only when counted, so other methods' records are unchanged) and a
    per-sample row of the long table, beside ``nfe``."""
    from benchmark.rundir import SampleRecord
    from benchmark.tables import long_rows

    guided = SampleRecord(method="blended_diffusion", sample_id="a", status="ok", nfe=150, grad_evals=150)
    plain = SampleRecord(method="blended_latent", sample_id="a", status="ok", nfe=76)
    assert SampleRecord.from_json(guided.to_json()) == guided
    assert "grad_evals" not in plain.to_json()
    long = long_rows([guided, plain], {})
    rows = long[long["metric"] == "grad_evals"]
    assert rows["method"].tolist() == ["blended_diffusion"] and rows["value"].tolist() == [150.0]
