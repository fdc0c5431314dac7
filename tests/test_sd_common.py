"""Which cross-attention layers a method reads, for SD (real architecture, meta device) and the tiny model."""

from __future__ import annotations

import pytest
import torch

from benchmark.tiny_models import sd15_unet, tiny_unet
from methods.sd_common import cross_attention_sides, pick_attention_side


def test_sd15_sides_and_default_attention_resolution() -> None:
    unet = sd15_unet(device="meta")
    sides = cross_attention_sides(unet, 64)  # 512 px
    at16 = sorted({name.split(".attentions")[0] for name, s in sides.items() if s == 16})
    assert at16 == ["down_blocks.2", "up_blocks.1"]  # the layers InstDiffEdit reads (2 + 3 attentions)
    assert sum(1 for s in sides.values() if s == 16) == 5
    assert {s for n, s in sides.items() if n.startswith("mid_block")} == {8}
    assert pick_attention_side(unet, 64, None) == 16
    assert pick_attention_side(unet, 96, None) == 24  # 768 px: latent / 4 again
    assert pick_attention_side(unet, 32, None) == 8  # 256 px
    with pytest.raises(ValueError, match="available: \\[16, 32, 64\\]"):
        pick_attention_side(unet, 64, 8)  # only the mid block is 8×8 at 512 px


def test_tiny_model_falls_back_to_smallest_down_up_side() -> None:
    unet = tiny_unet(4)
    sides = cross_attention_sides(unet, 8)
    assert {s for n, s in sides.items() if not n.startswith("mid_block")} == {8}
    assert pick_attention_side(unet, 8, None) == 8  # latent/4 = 2 has no layer: the side nearest 16


def test_toy_world_unet_reads_its_16x16_maps() -> None:
    """16×16 latents: latent/4 = 4 has no layer; 16, the papers' map side, is preferred over the 8×8 layers."""
    from benchmark.toyworld.unet import build_unet

    unet = build_unet()
    assert {s for n, s in cross_attention_sides(unet, 16).items() if not n.startswith("mid_block")} == {8, 16}
    assert pick_attention_side(unet, 16, None) == 16


def test_two_wrong_diffusers_messages_are_dropped_and_others_kept(tiny_bundle, caplog) -> None:
    """SDEdit's official LMS scheduler (steps_offset 0) in diffusers' img2img pipeline and the float32 cast of a
    derived pipeline used to print a 25-line FutureWarning and an 'empty list' warning per method; other diffusers
    warnings still reach the user. The pipeline rewrites steps_offset to 1, which moves no timestep with the
    "linspace" spacing of that config."""
    import logging
    import warnings

    from diffusers.utils import logging as dlog

    from methods.sd_common import make_scheduler, with_scheduler

    pipe = tiny_bundle.pipeline("img2img")
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        official = {"timestep_spacing": "linspace", "steps_offset": 0}
        derived = with_scheduler(pipe, "LMSDiscreteScheduler", official)
        derived.unet.to(torch.float32)
        dlog.get_logger("diffusers.models.modeling_utils").warning("another diffusers warning")
        warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)
    as_configured = make_scheduler(pipe, "LMSDiscreteScheduler", official)
    for scheduler in (derived.scheduler, as_configured):
        scheduler.set_timesteps(50)
    assert derived.scheduler.config.steps_offset == 1 and as_configured.config.steps_offset == 0
    assert torch.equal(derived.scheduler.timesteps, as_configured.timesteps)
    assert torch.equal(derived.scheduler.sigmas, as_configured.sigmas)
    assert [str(w.message) for w in seen if w.category is FutureWarning] == ["another FutureWarning"]
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "kept in float32: []" in m]
    assert "another diffusers warning" in messages
