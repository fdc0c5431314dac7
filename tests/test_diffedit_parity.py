"""DiffEdit's mask (computed by the adapter, soft map included) equals diffusers' ``generate_mask`` bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.adapter import EditContext
from benchmark.datasets.synthetic import make_sample
from methods.diffedit import DiffEdit, diffedit_mask
from methods.image_ops import resize_image


def test_mask_equals_diffusers_generate_mask(tiny_bundle) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny UNets: one thread is faster on shared cores
    try:
        _check_parity(tiny_bundle)
    finally:
        torch.set_num_threads(before)


def _check_parity(tiny_bundle) -> None:
    method = DiffEdit(models=tiny_bundle, num_inference_steps=10)
    pipe = method.pipeline()
    for index in (0, 1):
        sample = make_sample(seed=0, index=index)
        image = resize_image(sample.image, (64, 64))
        # ratio 1.2 (default 3.0): the random tiny model's difference map is nearly flat, and a split mask makes
        # the comparison meaningful; the arithmetic is the same for any ratio
        kwargs = dict(
            num_maps_per_mask=10,
            mask_encode_strength=0.5,
            mask_thresholding_ratio=1.2,
            num_inference_steps=10,
            guidance_scale=7.5,
        )
        theirs = pipe.generate_mask(
            image=image,
            target_prompt=sample.target_prompt,
            source_prompt=sample.source_prompt,
            generator=torch.Generator().manual_seed(7 + index),
            **kwargs,
        )
        soft, ours = diffedit_mask(
            pipe, image, sample.target_prompt, sample.source_prompt, torch.Generator().manual_seed(7 + index), **kwargs
        )
        assert theirs.shape == (1, 8, 8) and ours.shape == (8, 8)
        assert np.array_equal(ours, theirs[0].astype(bool))
        assert 0.0 < ours.mean() < 1.0  # a real split, not a trivially empty or full mask
        assert np.array_equal(soft > 0.5, ours) and soft.min() >= 0.0 and soft.max() <= 1.0
        # and with the defaults (ratio 3.0), where the tiny model's mask is (nearly) empty
        defaults = dict(num_inference_steps=10)
        theirs = pipe.generate_mask(
            image=image,
            target_prompt=sample.target_prompt,
            source_prompt=sample.source_prompt,
            generator=torch.Generator().manual_seed(3),
            **defaults,
        )
        _, ours = diffedit_mask(
            pipe, image, sample.target_prompt, sample.source_prompt, torch.Generator().manual_seed(3), **defaults
        )
        assert np.array_equal(ours, theirs[0].astype(bool))


def test_masked_decoding_takes_the_source_prompt_as_negative_prompt(tiny_bundle) -> None:
    """diffusers' DiffEdit guide decodes with ``negative_prompt=source_prompt``: the decoding call's prompt
    encoding gets the sample's source caption as negative prompt (``decode_negative_prompt: null``: none, the
    empty prompt). Checked to fail with the ``negative_prompt=`` argument of the decoding call removed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sample = make_sample(seed=0, index=0)
        for setting, expected in (("source_prompt", sample.source_prompt), (None, None)):
            method = DiffEdit(models=tiny_bundle, num_inference_steps=4, decode_negative_prompt=setting)
            pipe = method.pipeline()
            seen = []
            original = pipe.encode_prompt

            def spy(prompt, device, n, cfg, negative_prompt=None, *args, seen=seen, original=original, **kwargs):
                seen.append((prompt, negative_prompt))
                return original(prompt, device, n, cfg, negative_prompt, *args, **kwargs)

            pipe.encode_prompt = spy
            try:
                method.edit(sample, EditContext(seed=0, device=tiny_bundle.device))
            finally:
                del pipe.encode_prompt
            assert seen[-1] == (sample.target_prompt, expected)  # the last encoding: the masked decoding's
    finally:
        torch.set_num_threads(before)
