"""The attention-capture processors (benchmark/attention.py) leave every attention layer's output unchanged.

A controller that captures must only read: with ``install_controller`` routing every call (self- and cross-attention,
every resolution) through the explicit-softmax path, each ``Attention`` module's output and the UNet's output equal
those of diffusers' own processors within 1e-6 of the output's scale in float64 (where only a change of the
arithmetic can show; in float32 the explicit softmax and SDPA round differently, up to ~1e-6 relative, so float32 is
held to 1e-5), on the tiny test UNet and on the toy world's trained UNet. Checked to fail: with the probabilities
rounded through float16 before ``probs @ value`` and with the heads' probabilities swapped
(``probs.roll(1, 0)``) in ``ControlledAttnProcessor._explicit``, all six fail.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from benchmark.attention import AttnCall, CrossAttentionStore, install_controller

ROOT = Path(__file__).resolve().parent.parent
TOL = {torch.float64: 1e-6, torch.float32: 1e-5}
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])


class ReadEverything:
    """Wants every attention call and returns its probabilities untouched (counting them)."""

    def __init__(self) -> None:
        self.calls: list[AttnCall] = []

    def wants(self, call: AttnCall) -> bool:
        return True

    def __call__(self, probs: torch.Tensor, call: AttnCall) -> torch.Tensor:
        self.calls.append(call)
        return probs


def run_with_hooks(unet: UNet2DConditionModel, latents: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every Attention module's output and the UNet's output (key ``unet``)."""
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda mod, args, out, name=name: outs.__setitem__(name, out.detach().clone()))
        for name, module in unet.named_modules()
        if isinstance(module, Attention)
    ]
    try:
        with torch.no_grad():
            outs["unet"] = unet(latents, 500, encoder_hidden_states=text).sample
    finally:
        for hook in hooks:
            hook.remove()
    return outs


def check_unchanged(unet: UNet2DConditionModel, side: int, controller, dtype: torch.dtype) -> int:
    unet = copy.deepcopy(unet).to(dtype)  # a copy: the tiny UNet is shared by other tests
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, unet.config.in_channels, side, side, generator=g, dtype=torch.float64).to(dtype)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g, dtype=torch.float64).to(dtype)
    reference = run_with_hooks(unet, latents, text)
    with install_controller(unet, controller):
        controlled = run_with_hooks(unet, latents, text)
    assert controlled.keys() == reference.keys() and len(reference) > 2
    for name, ref in reference.items():
        scale = max(1.0, float(ref.abs().max()))
        diff = float((controlled[name] - ref).abs().max())
        assert diff <= TOL[dtype] * scale, f"{name}: output changed by {diff:.2e}"
    return len(reference) - 1


@pytest.fixture
def toy_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(
        ROOT / "data" / "toyworld" / "text2img" / "unet", torch_dtype=torch.float32
    )


@DTYPES
def test_reading_every_layer_leaves_the_toy_unet_unchanged(toy_unet, dtype) -> None:
    controller = ReadEverything()
    layers = check_unchanged(toy_unet, 16, controller, dtype)
    assert {c.is_cross for c in controller.calls} == {True, False}  # self- and cross-attention both went through it
    assert len({c.layer for c in controller.calls}) == layers


@DTYPES
def test_reading_every_layer_leaves_the_tiny_unet_unchanged(tiny_bundle, dtype) -> None:
    unet = tiny_bundle.pipeline("text2img").unet
    controller = ReadEverything()
    layers = check_unchanged(unet, 8, controller, dtype)
    assert len({c.layer for c in controller.calls}) == layers


@DTYPES
def test_instdiffedit_capture_store_leaves_the_toy_unet_unchanged(toy_unet, dtype) -> None:
    """The store InstDiffEdit installs (text-conditioned half, 16x16 layers of the down and up blocks) reads the
    probabilities and changes no output; it has captured maps of the right shape."""
    store = CrossAttentionStore({16}, batch_slice=slice(1, 2), layer_filter=("down_blocks", "up_blocks"))
    check_unchanged(toy_unet, 16, store, dtype)
    assert store.mean(16).shape == (1, 16, 16, 77)
    assert store.layers and all(name.startswith(("down_blocks", "up_blocks")) for name in store.layers)
