"""Every method adapter through the shared checks (tests/adapter_checks.py): one class each.

The NFE formulas are worked out from each algorithm with the tiny model's sampler (DDIM, one call per step) and
classifier-free guidance at 7.5 (each call on [unconditional, conditional] rows). Checked by breaking them: with
InstDiffEdit's formula missing its inpainting pass, BLD's missing the skipped first 25%, or P2P's inversion counted
with guidance, the NFE check fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmark.method_yaml import builtin_methods
from tests.adapter_checks import LATENT_SIDE, SAMPLE_SIDE, AdapterChecks
from tests.conftest import compose

SAMPLE_MASK = (SAMPLE_SIDE, SAMPLE_SIDE)  # a mask passed through from the sample (the GT)
LATENT_MASK = (LATENT_SIDE, LATENT_SIDE)  # a mask made at latent resolution


def checks_of(method: str) -> AdapterChecks:
    """The checks class of a built-in method (its first, for P2P the DDIM-inversion one)."""
    return next(cls for cls in AdapterChecks.__subclasses__() if cls.method == method)()


def test_every_registered_method_has_a_checks_class() -> None:
    classes = {cls.method for cls in AdapterChecks.__subclasses__()}
    assert classes == set(builtin_methods())


class TestIdentity(AdapterChecks):
    method = "identity"

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        return 0, 0

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return SAMPLE_MASK


class TestGTInpaint(AdapterChecks):
    method = "gt_inpaint"
    settings = {"num_inference_steps": 2}
    needs = ("mask",)

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        n = s.num_inference_steps
        return n, 2 * n  # the inpainting pipeline: one CFG call per step

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return SAMPLE_MASK


class TestInstDiffEdit(AdapterChecks):
    method = "instdiffedit"
    settings = {"num_inference_steps": 4, "num_seeds": 2, "inpaint_num_inference_steps": 2}

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        # int(N·r) steps of one CFG call on the batch of seeds, then the inpainting pipeline (CFG) unless mask_only
        k, seeds = int(s.num_inference_steps * s.strength), s.num_seeds
        inpaint = 0 if s.mask_only else s.inpaint_num_inference_steps or s.num_inference_steps
        return k + inpaint, 2 * seeds * k + 2 * inpaint

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return LATENT_MASK  # mask_resolution null: the latent side


class TestInstDiffEditMaskOnly(TestInstDiffEdit):
    settings = {**TestInstDiffEdit.settings, "mask_only": True}  # no inpainting pass, no image


class TestInstDiffEditToy(AdapterChecks):
    """The toy-world preset: InstDiffEdit's algorithm (same calls) with the mask made at 64x64."""

    method = "instdiffedit_toy"
    settings = TestInstDiffEdit.settings
    needs = TestInstDiffEdit.needs

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        return TestInstDiffEdit.expected_nfe(self, s)  # type: ignore[arg-type]

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return (s.mask_resolution, s.mask_resolution)


class TestDiffEdit(AdapterChecks):
    method = "diffedit"
    settings = {"num_inference_steps": 4, "num_maps_per_mask": 2}

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        # the mask: ONE call on [source, target] × [uncond, cond] × maps; then int(N·s) DDIM inversion steps and as
        # many masked decoding steps, both with CFG
        k, maps = int(s.num_inference_steps * s.inpaint_strength), s.num_maps_per_mask
        if s.mask_only:
            return 1, 4 * maps
        return 1 + 2 * k, 4 * maps + 2 * k + 2 * k

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return LATENT_MASK


class TestDiffEditRepo(AdapterChecks):
    method = "diffedit_repo"
    settings = {"num_inference_steps": 4, "num_draws": 2, "inpaint_num_inference_steps": 2}

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        # per noise draw a reference and a query img2img pass of int(N·r) CFG steps, then inpainting (CFG)
        k, draws = int(s.num_inference_steps * s.strength), s.num_draws
        inpaint = 0 if s.mask_only else s.inpaint_num_inference_steps or s.num_inference_steps
        return 2 * draws * k + inpaint, 4 * draws * k + 2 * inpaint

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return LATENT_MASK


class TestP2PDDIMInversion(AdapterChecks):
    method = "p2p"
    settings = {"num_inference_steps": 3, "inversion": "ddim"}
    needs = ("source_prompt",)

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        # inversion at guidance 1: one row per step; the edit: [source, target] × [uncond, cond] rows per step
        n = s.num_inference_steps
        return n + n, n + 4 * n

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return LATENT_MASK  # LocalBlend's mask at the latent side


class TestP2PNullText(TestP2PDDIMInversion):
    # a negative epsilon never stops the Adam steps early (the loss is ≥ 0), so every step takes all of them
    settings = {"num_inference_steps": 2, "null_text_inner_steps": 2, "null_text_epsilon": -1.0}

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        # inversion: n calls of 1 row; null text per step: 1 conditional call, k unconditional ones (1 row each) and
        # one CFG call of 2 rows to advance; the edit: n calls of 4 rows
        n, k = s.num_inference_steps, s.null_text_inner_steps
        return n + n * (k + 2) + n, n + n * (k + 3) + 4 * n


class TestSDEdit(AdapterChecks):
    method = "sdedit"
    settings = {"num_inference_steps": 4}

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        k = int(s.num_inference_steps * s.strength)  # img2img denoises the last int(N·strength) steps, with CFG
        return k, 2 * k

    def expected_mask_shape(self, s: Any) -> None:
        return None


class TestInstructPix2Pix(AdapterChecks):
    """The tiny model has an instruct-pix2pix pipeline (conf/model/tiny.yaml ``instruct_pix2pix``), so this runs."""

    method = "instructpix2pix"
    settings = {"num_inference_steps": 2}
    needs = ("instruction",)

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        n = s.num_inference_steps
        return n, 3 * n  # [text + image, image only, unconditional] per step

    def expected_mask_shape(self, s: Any) -> None:
        return None


class TestBlendedLatent(AdapterChecks):
    method = "blended_latent"
    settings = {"num_inference_steps": 4}
    needs = ("mask",)

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        k = s.num_inference_steps - int(s.num_inference_steps * s.blending_start)  # the first 25% are skipped
        return k, 2 * k

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return SAMPLE_MASK


class TestDiT4Edit(AdapterChecks):
    """On the tiny PixArt (model=tiny_dit: 64 px, 8×8 latents) instead of the tiny SD model."""

    method = "dit4edit"
    settings = {"num_inference_steps": 3}
    needs = ("source_prompt",)

    @pytest.fixture(scope="class")
    def tiny_bundle(self, model_cache: Path) -> Any:
        from benchmark.models import ModelBundle

        return ModelBundle(compose(["model=tiny_dit"]).model, cache_dir=model_cache)

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        # DPM-Solver++ inversion at guidance 1: one row per step; the edit: [source, target] × [uncond, cond] rows
        n = s.num_inference_steps
        return n + n, n + 4 * n

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return LATENT_MASK  # LocalBlend's mask at the latent side (8×8 latents, like the tiny SD model)


class TestBlendedDiffusion(AdapterChecks):
    """On the tiny pixel model (model=tiny_pixel): one forward per respaced step after the skipped ones, per image of
    each batch (the backward passes are counted apart: tests/test_blended_diffusion.py)."""

    method = "blended_diffusion"
    settings = {"num_inference_steps": 4, "skip_timesteps": 1, "iterations": 2, "batch_size": 2, "augmentations": 2}
    needs = ("mask",)

    @pytest.fixture(scope="class")
    def tiny_bundle(self, model_cache: Any) -> Any:
        from benchmark.models import ModelBundle
        from tests.conftest import compose

        return ModelBundle(compose(["model=tiny_pixel"]).model, cache_dir=model_cache)

    def expected_nfe(self, s: Any) -> tuple[int, int]:
        steps = s.num_inference_steps - s.skip_timesteps
        return s.iterations * steps, s.iterations * steps * s.batch_size

    def expected_mask_shape(self, s: Any) -> tuple[int, int]:
        return SAMPLE_MASK
