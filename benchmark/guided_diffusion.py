"""OpenAI guided-diffusion (ADM) checkpoints as a diffusers ``UNet2DModel`` + ``DDPMScheduler`` folder.

ADM's ``UNetModel`` (Dhariwal & Nichol 2021) with residual-block up/down-sampling and scale-shift norm is the
architecture diffusers' ``UNet2DModel`` builds with ``ResnetDownsampleBlock2D``/``AttnDownBlock2D`` (and their up
counterparts), ``downsample_type=upsample_type="resnet"``, ``resnet_time_scale_shift="scale_shift"`` and the
time embedding cat[cos, sin] (``flip_sin_to_cos=True, freq_shift=0``); only the parameter names differ, and the
attention's fused q/k/v projection: ADM's ``QKVAttentionLegacy`` reads its 1×1-conv output as (heads, 3, ch) (q, k, v
interleaved per head), so the weight is reshaped to (heads, 3, ch, C) before q, k and v are split out. The learned
variance (``learn_sigma``: 6 output channels) is diffusers' ``variance_type="learned_range"``. The parity test
(tests/test_guided_diffusion.py) checks the converted model against a forward written from ADM's architecture.

A ``.pt`` checkpoint is a pickle: it is read with ``torch.load(weights_only=True)``, which unpickles tensors and
plain containers only; anything else (an object, code) is refused with one line, never executed.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"
CONVERT_HINT = (
    f"download 256x256_diffusion_uncond.pt ({CHECKPOINT_URL}) and convert it with "
    "`emb convert guided-diffusion 256x256_diffusion_uncond.pt DIR`, then set model.pixel=DIR"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted: one line naming the file and the problem."""


@dataclass(frozen=True)
class AdmArchitecture:
    """The ADM hyper-parameters a checkpoint was trained with; the defaults are ``256x256_diffusion_uncond.pt``'s
    (Blended Diffusion's image_editor.py: attention at 32, 16, 8; 256 channels, 64 per head, 2 res blocks,
    resblock up/down, scale-shift norm, learn_sigma; model_and_diffusion_defaults' channel_mult for 256 px)."""

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 256
    out_channels: int = 6  # learn_sigma: eps and the variance interpolation
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    num_head_channels: int = 64
    num_train_timesteps: int = 1000  # linear betas 1e-4 → 0.02

    def attention_levels(self) -> list[bool]:
        """Whether each level (downsampling factor 2**level) has attention (ADM: image_size // resolution)."""
        factors = {self.image_size // r for r in self.attention_resolutions}
        return [2**level in factors for level in range(len(self.channel_mult))]


def unet_config(arch: AdmArchitecture) -> dict[str, Any]:
    """The ``UNet2DModel`` config with ADM's architecture."""
    attn = arch.attention_levels()
    return {
        "sample_size": arch.image_size,
        "in_channels": arch.in_channels,
        "out_channels": arch.out_channels,
        "block_out_channels": tuple(arch.model_channels * m for m in arch.channel_mult),
        "layers_per_block": arch.num_res_blocks,
        "down_block_types": tuple("AttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in attn),
        "up_block_types": tuple("AttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in reversed(attn)),
        "downsample_type": "resnet",
        "upsample_type": "resnet",
        "resnet_time_scale_shift": "scale_shift",
        "attention_head_dim": arch.num_head_channels,
        "norm_num_groups": 32,
        # diffusers leaves the mid-block attention without a norm under scale_shift unless this is set; ADM has one
        "attn_norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "time_embedding_type": "positional",
        "mid_block_scale_factor": 1.0,
        "add_attention": True,
        "dropout": 0.0,
    }


def scheduler_config(arch: AdmArchitecture) -> dict[str, Any]:
    """ADM's diffusion: linear betas over 1000 steps, ε prediction, learned-range variance, no x0 clipping (Blended
    Diffusion samples with clip_denoised=False); respacing as ADM's space_timesteps("100") = linspace spacing."""
    return {
        "num_train_timesteps": arch.num_train_timesteps,
        "beta_schedule": "linear",
        "beta_start": 0.0001 * 1000 / arch.num_train_timesteps,
        "beta_end": 0.02 * 1000 / arch.num_train_timesteps,
        "variance_type": "learned_range",
        "clip_sample": False,
        "prediction_type": "epsilon",
        "timestep_spacing": "linspace",
    }


# --- parameter names -------------------------------------------------------------------------------------------

RESBLOCK = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def module_names(arch: AdmArchitecture) -> list[tuple[str, str, str]]:
    """(ADM module prefix, diffusers module prefix, kind) for every module, kind in resblock/attention/plain."""
    names = [
        ("time_embed.0", "time_embedding.linear_1", "plain"),
        ("time_embed.2", "time_embedding.linear_2", "plain"),
        ("input_blocks.0.0", "conv_in", "plain"),
    ]
    attn = arch.attention_levels()
    last = len(arch.channel_mult) - 1
    block = 1
    for level in range(len(arch.channel_mult)):
        for r in range(arch.num_res_blocks):
            names.append((f"input_blocks.{block}.0", f"down_blocks.{level}.resnets.{r}", "resblock"))
            if attn[level]:
                names.append((f"input_blocks.{block}.1", f"down_blocks.{level}.attentions.{r}", "attention"))
            block += 1
        if level != last:
            names.append((f"input_blocks.{block}.0", f"down_blocks.{level}.downsamplers.0", "resblock"))
            block += 1
    names += [
        ("middle_block.0", "mid_block.resnets.0", "resblock"),
        ("middle_block.1", "mid_block.attentions.0", "attention"),
        ("middle_block.2", "mid_block.resnets.1", "resblock"),
    ]
    block = 0
    for up, level in enumerate(reversed(range(len(arch.channel_mult)))):
        for r in range(arch.num_res_blocks + 1):
            names.append((f"output_blocks.{block}.0", f"up_blocks.{up}.resnets.{r}", "resblock"))
            if attn[level]:
                names.append((f"output_blocks.{block}.1", f"up_blocks.{up}.attentions.{r}", "attention"))
            if level and r == arch.num_res_blocks:
                index = 2 if attn[level] else 1
                names.append((f"output_blocks.{block}.{index}", f"up_blocks.{up}.upsamplers.0", "resblock"))
            block += 1
    names += [("out.0", "conv_norm_out", "plain"), ("out.2", "conv_out", "plain")]
    return names


def split_legacy_qkv(tensor: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of ADM's fused 1×1-conv ``qkv`` weight (3C, C, 1) or bias (3C): QKVAttentionLegacy reshapes its
    output to (heads, 3·ch) and splits each head's rows into q, k, v, so rows are ordered (head, q/k/v, ch)."""
    width = tensor.shape[0] // 3
    rest = tensor.shape[1:2]  # the input channels of a weight, nothing for a bias
    per_head = tensor.reshape(heads, 3, width // heads, *rest)
    q, k, v = (per_head[:, i].reshape(width, *rest) for i in range(3))
    return q, k, v


def convert_state_dict(adm: dict[str, torch.Tensor], arch: AdmArchitecture) -> dict[str, torch.Tensor]:
    """ADM parameter names and shapes → ``UNet2DModel``'s. Every ADM key must be used exactly once."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in adm:
            raise CheckpointError(f"parameter '{key}' missing (not an ADM checkpoint of this architecture?)")
        used.add(key)
        return adm[key]

    for src, dst, kind in module_names(arch):
        if kind == "plain":
            for p in ("weight", "bias"):
                out[f"{dst}.{p}"] = take(f"{src}.{p}")
        elif kind == "resblock":
            for a, d in RESBLOCK.items():
                if a == "skip_connection" and f"{src}.{a}.weight" not in adm:
                    continue  # same channels in and out: identity skip
                for p in ("weight", "bias"):
                    out[f"{dst}.{d}.{p}"] = take(f"{src}.{a}.{p}")
        else:
            channels = take(f"{src}.norm.weight").shape[0]
            heads = channels // arch.num_head_channels
            out[f"{dst}.group_norm.weight"] = take(f"{src}.norm.weight")
            out[f"{dst}.group_norm.bias"] = take(f"{src}.norm.bias")
            for p in ("weight", "bias"):
                fused = take(f"{src}.qkv.{p}")
                fused = fused[..., 0] if p == "weight" else fused  # 1×1 conv1d → linear
                for name, part in zip(("to_q", "to_k", "to_v"), split_legacy_qkv(fused, heads), strict=True):
                    out[f"{dst}.{name}.{p}"] = part.contiguous()
            out[f"{dst}.to_out.0.weight"] = take(f"{src}.proj_out.weight")[..., 0]
            out[f"{dst}.to_out.0.bias"] = take(f"{src}.proj_out.bias")
    unused = sorted(set(adm) - used)
    if unused:
        raise CheckpointError(
            f"{len(unused)} parameter(s) not used, e.g. '{unused[0]}' (another ADM architecture? "
            "check the image size, channel_mult and attention resolutions)"
        )
    return out


# --- files -----------------------------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, unpickled with ``weights_only=True`` (tensors and plain containers only)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused: the checkpoint holds objects other than tensors (code or classes), which "
            "torch.load(weights_only=True) does not unpickle; give a plain state dict"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({reason})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a dict of parameter name → tensor)")
    return obj


def convert(checkpoint: Path, out_dir: Path, arch: AdmArchitecture | None = None) -> Path:
    """Write ``out_dir`` in ``DDPMPipeline`` layout (``unet/``, ``scheduler/``, ``model_index.json``)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    arch = arch or AdmArchitecture()
    state = load_checkpoint(checkpoint)
    dtype = next(iter(state.values())).dtype
    try:
        converted = convert_state_dict(state, arch)
    except CheckpointError as err:
        raise CheckpointError(f"{checkpoint}: {err}") from None
    unet = UNet2DModel(**unet_config(arch))
    missing, unexpected = unet.load_state_dict(converted, strict=False)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise CheckpointError(f"{checkpoint}: parameter '{first}' does not fit the diffusers model")
    if dtype.is_floating_point and dtype != torch.float32:  # kept in the checkpoint's own precision
        from benchmark.models import quiet_hub_progress

        quiet_hub_progress()  # drops diffusers' empty "kept in float32: []" warning of .to(dtype)
        unet = unet.to(dtype)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**scheduler_config(arch))).save_pretrained(out_dir)
    return out_dir


def architecture_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(AdmArchitecture))
