"""Which cross-attention layers a method reads, for SD (real architecture, meta device) and the tiny model."""

from __future__ import annotations

import pytest

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
