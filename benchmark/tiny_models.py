"""Tiny Stable-Diffusion- and PixArt-shaped pipelines built from config, for tests and the offline default run.

They are real diffusers/transformers classes with random weights, saved with ``save_pretrained`` once and then
loaded back through the same ``from_pretrained`` path a hub id takes. Built deterministically (fixed seed).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BUILD_VERSION = "v1"
# SD's noise schedule (scaled_linear 0.00085 → 0.012 over 1000 steps)
SD_BETAS = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
UNET_IN_CHANNELS = {"text2img": 4, "inpaint": 9, "instruct_pix2pix": 8}


def tiny_unet(in_channels: int, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8,
        sample_size=64,
    )


def tiny_text_encoder(vocab_size: int, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(cfg)


def build_tiny(out_root: Path, seed: int = 0) -> None:
    """Write text2img, inpaint and instruct_pix2pix tiny pipelines under ``out_root``; they share VAE and text parts."""
    from diffusers import (
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

    from benchmark.models import load_clip_tokenizer, write_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_clip_tokenizer(write_clip_tokenizer(Path(tmp) / "tok"))
    vae = tiny_vae(seed)
    text_encoder = tiny_text_encoder(len(tokenizer), seed)
    scheduler = DDIMScheduler(**SD_BETAS)
    base_unet = tiny_unet(4, seed)
    common = dict(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    classes = {
        "text2img": StableDiffusionPipeline,
        "inpaint": StableDiffusionInpaintPipeline,
        "instruct_pix2pix": StableDiffusionInstructPix2PixPipeline,
    }
    for kind, cls in classes.items():
        unet = base_unet if kind == "text2img" else widen_unet_input(base_unet, UNET_IN_CHANNELS[kind])
        cls(unet=unet, **common).save_pretrained(out_root / kind)


def widen_unet_input(unet, in_channels: int):
    """A copy of ``unet`` taking ``in_channels`` inputs: the first 4 input filters copied, the extra ones zero,
    the way the SD inpainting and InstructPix2Pix models were initialised from SD."""
    from diffusers import UNet2DConditionModel

    config = dict(unet.config)
    config["in_channels"] = in_channels
    wide = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    w = state["conv_in.weight"]
    new_w = torch.zeros(w.shape[0], in_channels, *w.shape[2:], dtype=w.dtype)
    new_w[:, : w.shape[1]] = w
    state["conv_in.weight"] = new_w
    wide.load_state_dict(state)
    return wide


# What every PixArt-alpha transformer shares (PixArt-XL-2's transformer/config.json): patch 2 over 4-channel SD-VAE
# latents, ada_norm_single blocks; sizes are set by each user (tiny, toy world, the XL-shaped bench)
PIXART_BLOCKS: dict[str, object] = {
    "patch_size": 2,
    "in_channels": 4,
    "norm_type": "ada_norm_single",
    "num_embeds_ada_norm": 1000,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "attention_bias": True,
    "activation_fn": "gelu-approximate",
}
# PixArt-alpha's scheduler (PixArt-alpha/PixArt-XL-2-512x512 scheduler/scheduler_config.json): DPM-Solver++ order 2
PIXART_SCHEDULER = {
    "algorithm_type": "dpmsolver++",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "solver_order": 2,
    "solver_type": "midpoint",
    "lower_order_final": True,
    "timestep_spacing": "linspace",
}
# the words of the synthetic set's and the toy world's prompts, whole pieces of the tiny T5 vocabulary
T5_WORDS = (
    "a an the on of and in with below above left right beside next to into make turn plain noisy dotted striped "
    "background photo picture red green blue yellow purple orange white black gray pink brown circle square "
    "triangle cross star ring heart diamond cat dog small big"
).split()
TINY_DIT_MAX_TOKENS = 120  # PixArt-alpha's max_sequence_length


def tiny_t5_tokenizer():
    """A real T5 (Unigram) tokenizer made offline: special tokens, single characters, letter pairs and whole words
    (word pieces score higher, so known words stay one token and any other word is spelt in pieces), plus T5's 100
    sentinel ids: 964 tokens, far above the ~100-token stub an offline ``from_pretrained`` of a hub id returns."""
    import string

    from transformers import T5Tokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in chars] + [("\u2581" + c, -5.5) for c in chars]
    pieces += [(a + b, -8.0) for a in string.ascii_lowercase for b in string.ascii_lowercase]
    pieces += [("\u2581" + w, -1.0) for w in T5_WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=100, model_max_length=TINY_DIT_MAX_TOKENS)


def tiny_t5_encoder(vocab_size: int, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1
    )
    return T5EncoderModel(cfg)


def tiny_pixart_transformer(seed: int = 0):
    """PixArt-alpha's transformer (``ada_norm_single`` blocks, learned sigma: 8 output channels) at toy size:
    8×8 latents, patch 2 → 4×4 tokens, 2 blocks of 3 heads × 8."""
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(seed)
    return PixArtTransformer2DModel(
        **PIXART_BLOCKS,
        sample_size=8,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        cross_attention_dim=24,
        out_channels=8,
    )


def build_tiny_dit(out_root: Path, seed: int = 0) -> None:
    """Write a tiny PixArt-alpha pipeline (``PixArtAlphaPipeline`` layout) to ``out_root/dit``."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline

    tokenizer = tiny_t5_tokenizer()
    PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_t5_encoder(len(tokenizer), seed),
        vae=tiny_vae(seed),
        transformer=tiny_pixart_transformer(seed),
        scheduler=DPMSolverMultistepScheduler(**PIXART_SCHEDULER),
    ).save_pretrained(out_root / "dit")


# the tiny pixel model: ADM's layout (guided-diffusion's UNet as the converter maps it) at toy size
TINY_PIXEL_CLIP = "tiny_pixel_clip"
TINY_PIXEL_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_pixel(out_root: Path, seed: int = 0) -> None:
    """``pixel/``: an unconditional ADM-layout ``UNet2DModel`` (64 px, learned variance) + ADM's DDPMScheduler in
    DDPMPipeline layout; ``clip/``: a tiny open_clip model in the toy CLIP's folder layout (``<name>.json`` +
    ``open_clip_model.safetensors`` + ``open_clip_config.json``), the guide of CLIP-guided methods."""
    import json

    import open_clip
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from safetensors.torch import save_file

    from benchmark.guided_diffusion import AdmArchitecture, scheduler_config, unet_config

    arch = AdmArchitecture(
        image_size=64,
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(32,),
        num_head_channels=16,
    )
    torch.manual_seed(seed)
    unet = UNet2DModel(**unet_config(arch))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**scheduler_config(arch))).save_pretrained(out_root / "pixel")
    clip_dir = out_root / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / f"{TINY_PIXEL_CLIP}.json").write_text(json.dumps(TINY_PIXEL_CLIP_CFG, indent=2))
    preprocess = {"size": 32, "mode": "RGB", "interpolation": "bicubic", "resize_mode": "shortest"}
    config = {"model_cfg": TINY_PIXEL_CLIP_CFG, "preprocess_cfg": preprocess}
    (clip_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    open_clip.add_model_config(str(clip_dir / f"{TINY_PIXEL_CLIP}.json"))
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_PIXEL_CLIP, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(clip_dir / "open_clip_model.safetensors"))


BUILDERS = {"tiny": build_tiny, "tiny_dit": build_tiny_dit, "tiny_pixel": build_tiny_pixel}


def ensure_built(builder: str, root: Path, kind: str) -> Path:
    """Build once into ``root`` (atomically: a half-written folder is never used) and return ``root/kind``."""
    if builder not in BUILDERS:
        raise ValueError(f"model.builder='{builder}': unknown; known: {', '.join(BUILDERS)}")
    if not (root / "DONE").exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        log.info("building %s model into %s", builder, root)
        BUILDERS[builder](tmp)
        (tmp / "DONE").write_text(BUILD_VERSION)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return root / kind


# Stable Diffusion 1.x's UNet (the values of CompVis/stable-diffusion-v1-4 and runwayml/stable-diffusion-v1-5
# unet/config.json): the real architecture, for cost benchmarks with random weights and for shape checks.
SD15_UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
    "center_input_sample": False,
}


def sd15_unet(in_channels: int = 4, device: str | torch.device = "cpu", seed: int = 0):
    """An SD-1.5-sized ``UNet2DConditionModel`` (860M parameters) with random weights, built without download;
    ``device="meta"`` gives the structure without allocating weights."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):
        return UNet2DConditionModel(**{**SD15_UNET_CONFIG, "in_channels": in_channels})
