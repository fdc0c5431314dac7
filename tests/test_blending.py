"""Latent blending with a noised source, pinned to the official rules on concrete cases.

``LatentBlender`` (methods/blending.py) on its own; InstDiffEdit's denoising loop (official model/InstDiffEdit.py +
model/util.py: ``init_latent``, ``get_or_latent``, ``use_mask``); Blended Latent Diffusion's loop (official
scripts/text_editing_SD2.py). Expected values come from the schedulers' formulas re-derived here (ᾱ from the
scaled-linear betas; LMS's σ = √((1 − ᾱ)/ᾱ) interpolated at the timestep) and from generators seeded here, never
from the project's code. The loops run for real on the tiny model; spies (subclasses and wrappers calling the real
functions) only record what passes through.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, LMSDiscreteScheduler
from PIL import Image

import methods.blended_latent as bld_module
import methods.instdiffedit as idf_module
from benchmark.adapter import EditContext
from benchmark.datasets.synthetic import make_sample
from methods.blending import LatentBlender

BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def alphas_cumprod() -> np.ndarray:
    """ᾱ_t of SD's scaled-linear schedule: betas = linspace(√0.00085, √0.012, 1000)², ᾱ = Π(1 − β)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def ddim_noised(x0: torch.Tensor, noise: torch.Tensor, t: Any) -> torch.Tensor:
    a = float(alphas_cumprod()[int(t)])
    return a**0.5 * x0 + (1.0 - a) ** 0.5 * noise


def lms_noised(x0: torch.Tensor, noise: torch.Tensor, t: Any) -> torch.Tensor:
    ac = alphas_cumprod()
    sigma = float(np.interp(float(t), np.arange(1000), ((1.0 - ac) / ac) ** 0.5))
    return x0 + sigma * noise


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return float((a - b).abs().max()) < tol


# ---------------------------------------------------------------- LatentBlender on its own


@pytest.fixture
def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "source": torch.randn(1, 4, 8, 8, generator=g),
        "noise": torch.randn(3, 4, 8, 8, generator=g),
        "latents": torch.randn(3, 4, 8, 8, generator=g),
        "mask": (torch.rand(1, 1, 8, 8, generator=g) > 0.5).float(),
    }


def test_blender_keeps_latents_inside_and_the_noised_source_outside_ddim(tensors) -> None:
    """x ← noised(x₀, t) + M·(x − noised(x₀, t)) with noised = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, ε the fixed per-row noise
    (InstDiffEdit's ``get_or_latent``), reused at every step. Checked to fail: with ``blend`` written as
    ``latents + mask·(noised − latents)`` (mask inverted) and with the noise drawn afresh."""
    s = DDIMScheduler(**BETAS)
    s.set_timesteps(50)
    x0, noise, latents, mask = tensors["source"], tensors["noise"], tensors["latents"], tensors["mask"]
    blender = LatentBlender(s, x0, noise)
    for t in (s.timesteps[10], s.timesteps[30]):  # 780, 380: the same noise at both
        out = blender(latents, mask, t)
        expected = torch.where(mask.bool(), latents, ddim_noised(x0, noise, t))
        assert close(out, expected)
        assert 0 < mask.sum() < mask.numel()


def test_blender_with_lms_sigmas_at_fractional_timesteps(tensors) -> None:
    """LMS (InstDiffEdit's sampler, ``timestep_spacing=linspace``): timesteps are fractional (999, 978.61...) and
    ``add_noise`` is x₀ + σ(t)·ε with σ interpolated between the integer timesteps."""
    s = LMSDiscreteScheduler(**BETAS, timestep_spacing="linspace")
    s.set_timesteps(50)
    t = s.timesteps[25]
    assert float(t) != int(t)
    x0, noise, latents, mask = tensors["source"], tensors["noise"], tensors["latents"], tensors["mask"]
    out = LatentBlender(s, x0, noise)(latents, mask, t)
    assert close(out, torch.where(mask.bool(), latents, lms_noised(x0, noise, t)))


def test_blender_fresh_noise_draws_new_noise_each_call_from_its_generator(tensors) -> None:
    """Blended Latent Diffusion: ``add_noise(source, torch.randn_like(latents), t)`` at every step: the k-th call
    uses the k-th draw of the generator. Checked to fail: with ``fresh_noise`` ignored (the first draw reused)."""
    s = DDIMScheduler(**BETAS)
    s.set_timesteps(50)
    x0, latents, mask = tensors["source"], tensors["latents"][:1], tensors["mask"]
    blender = LatentBlender(s, x0, fresh_noise=True, generator=torch.Generator().manual_seed(7))
    ref = torch.Generator().manual_seed(7)
    for t in s.timesteps[12:15]:
        out = blender(latents, mask, t)
        draw = torch.randn(latents.shape, generator=ref)
        assert close(out, torch.where(mask.bool(), latents, ddim_noised(x0, draw, t)))


def test_blender_soft_mask_interpolates(tensors) -> None:
    """A fractional mask value m mixes linearly: noised + m·(latents − noised)."""
    s = DDIMScheduler(**BETAS)
    s.set_timesteps(50)
    x0, noise, latents = tensors["source"], tensors["noise"], tensors["latents"]
    t = s.timesteps[20]
    out = LatentBlender(s, x0, noise)(latents, torch.full((1, 1, 8, 8), 0.25), t)
    noised = ddim_noised(x0, noise, t)
    assert close(out, 0.75 * noised + 0.25 * latents)


# ---------------------------------------------------------------- the methods' loops on the tiny model


class Recorder:
    """Spies on a method module: ``guided_step`` calls, ``instant_mask`` results and ``LatentBlender`` calls."""

    def __init__(self, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[dict[str, Any]] = []
        self.blends: list[dict[str, Any]] = []
        self.masks: list[Any] = []
        self.prompts: list[str] = []
        real_step = module.guided_step
        real_embeddings = module.prompt_embeddings
        recorder = self

        def step(unet, scheduler, latents, t, embeds, guidance_scale):
            out = real_step(unet, scheduler, latents, t, embeds, guidance_scale)
            recorder.steps.append({"in": latents.clone(), "t": t, "out": out[0].clone()})
            return out

        def embeddings(pipe, prompt, *args, **kwargs):
            recorder.prompts.append(prompt)
            return real_embeddings(pipe, prompt, *args, **kwargs)

        class SpyBlender(module.LatentBlender):
            def __call__(self, latents, mask, t):
                out = super().__call__(latents, mask, t)
                recorder.blends.append(
                    {"in": latents.clone(), "mask": mask.clone(), "t": t, "out": out.clone(), "source": self.source}
                )
                return out

        monkeypatch.setattr(module, "guided_step", step)
        monkeypatch.setattr(module, "prompt_embeddings", embeddings)
        monkeypatch.setattr(module, "LatentBlender", SpyBlender)
        if hasattr(module, "instant_mask"):
            real_mask = module.instant_mask

            def mask(*args, **kwargs):
                out = real_mask(*args, **kwargs)
                recorder.masks.append(out)
                return out

            monkeypatch.setattr(module, "instant_mask", mask)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_instdiffedit_loop_blends_with_each_seed_noised_source_and_the_mask_of_the_same_step(
    tiny_bundle, monkeypatch, one_thread
) -> None:
    """Official loop (model/InstDiffEdit.py): seeds s₀…s₂ give noises ε_i (row i = seed i); the rows start at
    x₀ + σ(t₀)·ε_i; after the step at t_k the mask is computed from the attention so far and
    ``latents = or_latent(t_k) + M_k·(latents − or_latent(t_k))`` with or_latent(t_k) = x₀ + σ(t_k)·ε_i (the
    timestep just denoised, each row its own fixed noise). Here ε_i is drawn from ``torch.Generator`` seeded
    seed + 1 + i. Checked to fail: with the generators' order reversed (offset ``b − i``), and with the blend using
    the previous step's mask (the blend moved before the mask computation)."""
    rec = Recorder(idf_module, monkeypatch)
    method = idf_module.InstDiffEdit(
        models=tiny_bundle, num_inference_steps=10, num_seeds=3, mask_only=True, mask_threshold=0.5
    )
    seed = 11
    sample = make_sample(seed=0, index=0)
    method.edit(sample, EditContext(seed=seed, device=tiny_bundle.device))

    n = 5  # int(10 · 0.5) LMS steps
    assert len(rec.steps) == len(rec.blends) == len(rec.masks) == n
    x0 = rec.blends[0]["source"]
    noises = torch.cat(
        [torch.randn((1, *x0.shape[1:]), generator=torch.Generator().manual_seed(seed + 1 + i)) for i in range(3)]
    )
    # the seed order: row i starts from x₀ noised with seed i's noise at the first timestep
    assert close(rec.steps[0]["in"], lms_noised(x0, noises, rec.steps[0]["t"]))
    changed = 0
    for k in range(n):
        step, blend, computed = rec.steps[k], rec.blends[k], rec.masks[k]
        assert blend["t"] == step["t"]  # blended at the timestep just denoised
        assert torch.equal(blend["in"], step["out"])
        mask_k = torch.from_numpy(computed.binary.astype(np.float32))[None, None]
        assert torch.equal(blend["mask"].cpu(), mask_k)  # the mask computed at this very step
        inside = mask_k.bool().expand_as(blend["out"])
        assert close(blend["out"][inside], step["out"][inside], 1e-6)
        expected_outside = lms_noised(x0, noises, step["t"])
        assert close(blend["out"][~inside], expected_outside[~inside])
        if k and not np.array_equal(computed.binary, rec.masks[k - 1].binary):
            changed += 1
        assert 0 < mask_k.sum() < mask_k.numel()
    assert changed >= 1  # the masks do move between steps, so using a stale one would be seen


def test_blended_latent_timesteps_and_outside_mask_latents(tiny_bundle, monkeypatch, one_thread) -> None:
    """Official script: DDIM(scaled_linear, clip_sample=False, set_alpha_to_one=False), 50 steps: timesteps
    980, 960, ..., 0 ("leading", steps_offset 0); the first int(50 · 0.25) = 12 are skipped, so denoising runs
    740, 720, ..., 0 (38 steps) from z = randn(generator). After each step at t:
    ``latents·m + add_noise(x₀, randn_like, t)·(1 − m)`` with a fresh draw of the same generator each step and m
    the mask resized to the latent side (nearest) and binarised at 0.5. Checked to fail: with blending_start
    applied as ``int(...) + 1`` (denoising would start at 720) and with the first noise draw reused at every step."""
    rec = Recorder(bld_module, monkeypatch)
    method = bld_module.BlendedLatent(models=tiny_bundle)
    sample = make_sample(seed=0, index=2)  # a large mask: partial at the 8×8 latent side
    seed = 5
    method.edit(sample, EditContext(seed=seed, device=tiny_bundle.device))

    assert [int(s["t"]) for s in rec.steps] == list(range(740, -1, -20))
    gen = torch.Generator().manual_seed(seed)
    x0 = rec.blends[0]["source"]
    z = torch.randn(x0.shape, generator=gen)
    assert close(rec.steps[0]["in"], z)
    gt = np.asarray(Image.fromarray(np.asarray(sample.mask, np.float32), mode="F").resize((8, 8), Image.NEAREST))
    m = torch.from_numpy((gt >= 0.5).astype(np.float32))[None, None]
    assert 0 < m.sum() < m.numel()
    for step, blend in zip(rec.steps, rec.blends, strict=True):
        assert blend["t"] == step["t"] and torch.equal(blend["in"], step["out"])
        assert torch.equal(blend["mask"].cpu(), m)
        draw = torch.randn(x0.shape, generator=gen)
        expected = step["out"] * m + ddim_noised(x0, draw, step["t"]) * (1 - m)
        assert close(blend["out"], expected)


def test_blended_latent_prompts_with_the_target_edit_words_or_the_caption(tiny_bundle, monkeypatch, one_thread) -> None:
    """The official usage prompts with a local description of the masked content (``--prompt "a stone"``): the
    dataset's target edit words by default, the whole target caption with ``prompt=target_prompt``."""
    rec = Recorder(bld_module, monkeypatch)
    sample = make_sample(seed=0, index=0)
    for field, expected in (("target_words", sample.edit_words[1]), ("target_prompt", sample.target_prompt)):
        method = bld_module.BlendedLatent(models=tiny_bundle, num_inference_steps=4, prompt=field)
        method.edit(sample, EditContext(seed=0, device=tiny_bundle.device))
        assert rec.prompts[-1] == expected
    assert bld_module.BlendedLatentSettings().prompt == "target_words"
