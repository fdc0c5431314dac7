"""The guided-diffusion (ADM) converter: parity with ADM's architecture, refusal of pickled code, the missing line.

The reference forward below is written from ADM's architecture (guided_diffusion/unet.py as described in
shared/REFERENCE.md and the ADM paper): sinusoidal embedding cat[cos, sin], residual blocks with scale-shift norm
and average-pool / nearest up/down-sampling inside the block, attention whose fused q/k/v is read per head
(QKVAttentionLegacy), skip connections concatenated on the way up. It runs directly on the ADM state dict.
Checked to fail: splitting the fused qkv into three contiguous chunks instead of per head (max error 0.94), and
``flip_sin_to_cos=False`` in the converted config (1.03), each broke the parity test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.guided_diffusion import AdmArchitecture, CheckpointError, convert, load_checkpoint

TINY = AdmArchitecture(
    image_size=16,
    model_channels=32,
    num_res_blocks=2,
    channel_mult=(1, 2, 2),
    attention_resolutions=(8, 4),  # factors 2 and 4: levels 1 and 2 (and the middle block)
    num_head_channels=16,
)


# --- ADM, written from the architecture, on a state dict ---------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    args = t.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def norm(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.group_norm(x, 32, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=1e-5)


def conv(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    w = sd[f"{prefix}.weight"]
    return F.conv2d(x, w, sd[f"{prefix}.bias"], padding=w.shape[-1] // 2)


def resblock(sd: dict, p: str, x: torch.Tensor, emb: torch.Tensor, resample: str | None = None) -> torch.Tensor:
    h = F.silu(norm(sd, f"{p}.in_layers.0", x))
    if resample == "down":
        h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    elif resample == "up":
        h, x = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2, mode="nearest")
    h = conv(sd, f"{p}.in_layers.2", h)
    e = F.linear(F.silu(emb), sd[f"{p}.emb_layers.1.weight"], sd[f"{p}.emb_layers.1.bias"])[..., None, None]
    scale, shift = e.chunk(2, dim=1)
    h = norm(sd, f"{p}.out_layers.0", h) * (1 + scale) + shift
    h = conv(sd, f"{p}.out_layers.3", F.silu(h))
    skip = conv(sd, f"{p}.skip_connection", x) if f"{p}.skip_connection.weight" in sd else x
    return skip + h


def attention(sd: dict, p: str, x: torch.Tensor, head_channels: int) -> torch.Tensor:
    b, c, hh, ww = x.shape
    flat = x.reshape(b, c, -1)
    qkv = F.conv1d(F.group_norm(flat, 32, sd[f"{p}.norm.weight"], sd[f"{p}.norm.bias"], eps=1e-5),
                   sd[f"{p}.qkv.weight"], sd[f"{p}.qkv.bias"])  # fmt: skip
    heads = c // head_channels
    q, k, v = qkv.reshape(b * heads, 3 * head_channels, -1).split(head_channels, dim=1)  # per head: q, k, v
    scale = 1 / math.sqrt(math.sqrt(head_channels))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
    h = F.conv1d(a, sd[f"{p}.proj_out.weight"], sd[f"{p}.proj_out.bias"])
    return (flat + h).reshape(b, c, hh, ww)


def adm_forward(sd: dict, arch: AdmArchitecture, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    emb = timestep_embedding(t, arch.model_channels)
    emb = F.linear(F.silu(F.linear(emb, sd["time_embed.0.weight"], sd["time_embed.0.bias"])),
                   sd["time_embed.2.weight"], sd["time_embed.2.bias"])  # fmt: skip
    attn_factors = {arch.image_size // r for r in arch.attention_resolutions}
    h = conv(sd, "input_blocks.0.0", x)
    skips, block, ds = [h], 1, 1
    for level in range(len(arch.channel_mult)):
        for _ in range(arch.num_res_blocks):
            h = resblock(sd, f"input_blocks.{block}.0", h, emb)
            if ds in attn_factors:
                h = attention(sd, f"input_blocks.{block}.1", h, arch.num_head_channels)
            skips.append(h)
            block += 1
        if level != len(arch.channel_mult) - 1:
            h = resblock(sd, f"input_blocks.{block}.0", h, emb, "down")
            skips.append(h)
            block, ds = block + 1, ds * 2
    h = resblock(sd, "middle_block.0", h, emb)
    h = attention(sd, "middle_block.1", h, arch.num_head_channels)
    h = resblock(sd, "middle_block.2", h, emb)
    block = 0
    for level in reversed(range(len(arch.channel_mult))):
        for i in range(arch.num_res_blocks + 1):
            h = resblock(sd, f"output_blocks.{block}.0", torch.cat([h, skips.pop()], dim=1), emb)
            index = 1
            if ds in attn_factors:
                h = attention(sd, f"output_blocks.{block}.1", h, arch.num_head_channels)
                index = 2
            if level and i == arch.num_res_blocks:
                h = resblock(sd, f"output_blocks.{block}.{index}", h, emb, "up")
                ds //= 2
            block += 1
    h = F.silu(norm(sd, "out.0", h))
    return conv(sd, "out.2", h)


def adm_state_dict(arch: AdmArchitecture, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in ADM's layout (names and shapes of guided_diffusion's UNetModel)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    emb_ch = 4 * arch.model_channels

    def add(prefix: str, *shape: int) -> None:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        sd[f"{prefix}.weight"] = torch.randn(*shape, generator=gen) / math.sqrt(max(fan_in, 1))
        if len(shape) == 1:  # a norm: weights near 1
            sd[f"{prefix}.weight"] = 1 + 0.2 * torch.randn(*shape, generator=gen)
        sd[f"{prefix}.bias"] = 0.1 * torch.randn(shape[0], generator=gen)

    def res(prefix: str, cin: int, cout: int) -> None:
        add(f"{prefix}.in_layers.0", cin)
        add(f"{prefix}.in_layers.2", cout, cin, 3, 3)
        add(f"{prefix}.emb_layers.1", 2 * cout, emb_ch)
        add(f"{prefix}.out_layers.0", cout)
        add(f"{prefix}.out_layers.3", cout, cout, 3, 3)
        if cin != cout:
            add(f"{prefix}.skip_connection", cout, cin, 1, 1)

    def attn(prefix: str, ch: int) -> None:
        add(f"{prefix}.norm", ch)
        add(f"{prefix}.qkv", 3 * ch, ch, 1)
        add(f"{prefix}.proj_out", ch, ch, 1)

    mc = arch.model_channels
    add("time_embed.0", emb_ch, mc)
    add("time_embed.2", emb_ch, emb_ch)
    add("input_blocks.0.0", mc, arch.in_channels, 3, 3)
    factors = {arch.image_size // r for r in arch.attention_resolutions}
    ch, chans, block, ds = mc, [mc], 1, 1
    for level, mult in enumerate(arch.channel_mult):
        for _ in range(arch.num_res_blocks):
            res(f"input_blocks.{block}.0", ch, mult * mc)
            ch = mult * mc
            if ds in factors:
                attn(f"input_blocks.{block}.1", ch)
            chans.append(ch)
            block += 1
        if level != len(arch.channel_mult) - 1:
            res(f"input_blocks.{block}.0", ch, ch)
            chans.append(ch)
            block, ds = block + 1, ds * 2
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    block = 0
    for level, mult in reversed(list(enumerate(arch.channel_mult))):
        for i in range(arch.num_res_blocks + 1):
            res(f"output_blocks.{block}.0", ch + chans.pop(), mc * mult)
            ch, index = mc * mult, 1
            if ds in factors:
                attn(f"output_blocks.{block}.1", ch)
                index = 2
            if level and i == arch.num_res_blocks:
                res(f"output_blocks.{block}.{index}", ch, ch)
                ds //= 2
            block += 1
    add("out.0", ch)
    add("out.2", arch.out_channels, ch, 3, 3)
    return sd


# --- tests -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("adm")
    sd = adm_state_dict(TINY)
    torch.save(sd, tmp / "adm.pt")
    return sd, convert(tmp / "adm.pt", tmp / "converted", TINY)


def test_converted_unet_equals_the_adm_forward(converted: tuple[dict, Path]) -> None:
    from diffusers import DDPMPipeline

    sd, folder = converted
    pipe = DDPMPipeline.from_pretrained(folder)
    unet = pipe.unet.double().eval()
    x = torch.randn(2, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(1)).double()
    for t in (0, 37, 999):
        steps = torch.full((2,), t)
        with torch.no_grad():
            ours = unet(x, steps).sample
            reference = adm_forward({k: v.double() for k, v in sd.items()}, TINY, x, steps)
        assert ours.shape == (2, 6, 16, 16)
        assert (ours - reference).abs().max().item() < 1e-5, t
        assert reference.abs().mean().item() > 0.1  # a real signal, not two zeros


def test_the_scheduler_is_adms_diffusion(converted: tuple[dict, Path]) -> None:
    """Linear betas 1e-4 → 0.02 over 1000 steps, learned-range variance, respaced like space_timesteps("100")."""
    from diffusers import DDPMPipeline

    scheduler = DDPMPipeline.from_pretrained(converted[1]).scheduler
    assert scheduler.config.variance_type == "learned_range" and not scheduler.config.clip_sample
    assert torch.allclose(scheduler.betas, torch.linspace(1e-4, 0.02, 1000))
    scheduler.set_timesteps(100)
    # ADM's space_timesteps(1000, "100"): round(i · 999/99) for i in 0..99
    assert sorted(scheduler.timesteps.tolist()) == [round(i * 999 / 99) for i in range(100)]


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_holding_code_is_refused_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import emb

    marker = tmp_path / "executed"
    ckpt = tmp_path / "hostile.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "payload": Payload(marker)}, ckpt)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt)
    assert "\n" not in str(err.value) and str(ckpt) in str(err.value) and "refused" in str(err.value)
    proc = emb("convert", "guided-diffusion", str(ckpt), str(tmp_path / "out"), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused" in lines[0], proc.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_state_dict_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    tensors = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], tensors)
    for path in (junk, tensors, tmp_path / "absent.pt"):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_checkpoint_of_another_architecture_names_a_parameter(tmp_path: Path) -> None:
    sd = adm_state_dict(TINY)
    torch.save(sd, tmp_path / "adm.pt")
    other = AdmArchitecture(**{**TINY.__dict__, "attention_resolutions": (8,)})
    with pytest.raises(CheckpointError, match=r"adm.pt: parameter 'output_blocks\.\d+\.1\..*' missing"):
        convert(tmp_path / "adm.pt", tmp_path / "out", other)


def test_a_missing_converted_folder_says_how_to_convert(tmp_path: Path) -> None:
    from omegaconf import open_dict

    from benchmark.models import MissingWeightsError, ModelBundle
    from tests.conftest import compose

    cfg = compose(["model=guided-diffusion-256-uncond"]).model
    with open_dict(cfg):
        cfg.pixel = str(tmp_path / "nowhere")
    with pytest.raises(MissingWeightsError) as err:
        ModelBundle(cfg).pipeline("pixel")
    line = str(err.value)
    assert "\n" not in line and "model.pixel" in line and "emb convert guided-diffusion" in line
