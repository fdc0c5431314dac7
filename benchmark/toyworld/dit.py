"""The toy world's diffusion transformer: a PixArt-α-shaped ``PixArtTransformer2DModel`` over the shipped toy VAE's
16×16×4 latents (patch 2: an 8×8 token grid), conditioned by a small T5-shaped encoder and a T5 tokenizer made
offline over the world's words, exported in ``PixArtAlphaPipeline`` layout (``emb toyworld train --stage dit``).

Why a T5 encoder and not the shipped CLIP text tower: ``PixArtAlphaPipeline`` tokenizes to ``max_sequence_length``
(120 by default) and reads padded tokens through an attention mask, as T5's relative positions allow at any length;
the CLIP tower has 77 absolute positions (every caller would have to pass ``max_sequence_length=77``) and is causal,
so a colour word's embedding would not know which shape follows it. The encoder is trained with the transformer
(PixArt's 4.3B-parameter T5 is frozen; a frozen random encoder of this size would give the denoiser little to read).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.datasets.synthetic import BACKGROUND_WORDS, COLOURS, SHAPES
from benchmark.tiny_models import PIXART_BLOCKS

DIT = "dit"  # folder name of the exported pipeline inside a toy-world model directory
# PixArt-XL-2 is 28 layers of 16 heads × 72 channels over 64×64 latents (patch 2); this one has the same block
# structure (adaLN-single, self- then cross-attention, GELU-tanh MLP ×4) at 6 layers of 4 × 32 channels
DIT_CFG: dict[str, Any] = {
    **PIXART_BLOCKS,
    "sample_size": 16,
    "out_channels": 4,  # ε only: PixArt also learns Σ (8 channels); its DPM-Solver sampling never reads it (ours)
    "num_layers": 6,
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "cross_attention_dim": 128,
    "caption_channels": 64,  # = the text encoder's d_model, as PixArt's 4096 = T5-XXL's
}
# T5 v1.1-shaped (gated GELU, relative position buckets), as PixArt's t5-v1_1-xxl
T5_CFG: dict[str, Any] = {
    "d_model": 64,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_heads": 4,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "is_encoder_decoder": False,
}
# PixArt-α's noise schedule (its scheduler_config): linear betas 1e-4–0.02 over 1000 steps, ε-prediction
DIT_BETAS: dict[str, Any] = {
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "num_train_timesteps": 1000,
}
TOKEN_GRID = 8  # 16×16 latents / patch 2: the side of the transformer's cross-attention maps
GROUNDING_WEIGHT = 0.1  # the UNet stage's TokenCompose terms (benchmark.toyworld.unet), at the token grid
PIXEL_WEIGHT = 0.05


# ---------------------------------------------------------------------------------------------------------------
# tokenizer and text encoder


def world_words() -> list[str]:
    """Every word of the world's captions and edit instructions: each one tokenizer piece, so an object is the
    pair of adjacent (colour, shape) tokens and an edit word one token, as the attention methods need."""
    grammar = ["a", "on", "background", "and", "above", "below", "to", "the", "left", "right", "of"]
    instructions = ["turn", "into", "make", "change", "replace", "with", "an", "image", "photo", "of"]
    words = grammar + instructions + list(COLOURS) + list(SHAPES) + list(BACKGROUND_WORDS.values())
    return list(dict.fromkeys(words))


def build_tokenizer():
    """A ``T5Tokenizer`` (Unigram, T5's special ids: pad 0, ``</s>`` 1, unk 2) over the world's words, with
    single characters as the fallback so that any text tokenizes; no sentinel tokens."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{w}", -1.0) for w in world_words()]
    pieces += [("▁", -5.0)] + [(c, -8.0) for c in string.ascii_lowercase + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def check_tokenizer(tokenizer: Any, where: str) -> None:
    """The offline-loading trap: a tokenizer that did not load gives a handful of ids for everything."""
    expected = len(build_tokenizer())
    if len(tokenizer) != expected:
        raise ValueError(f"{where}: tokenizer has {len(tokenizer)} tokens, the toy world's has {expected}")


def build_text_encoder(seed: int, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, **T5_CFG))


def build_transformer(seed: int):
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(seed + 1)
    return PixArtTransformer2DModel(**DIT_CFG)


class TextToLatent(torch.nn.Module):
    """The trained pair (checkpointed, EMA-averaged and saved as one state dict by ``run_stage``)."""

    def __init__(self, transformer: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # T5 ties its token embedding to `shared`: one tensor under two names, which safetensors refuses to store
        state = super().state_dict(*args, **kwargs)
        return {k: v.clone() if k == "text_encoder.encoder.embed_tokens.weight" else v for k, v in state.items()}


def tokenize(tokenizer: Any, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) padded to the batch's longest caption: the same embeddings as the pipeline's padding
    to ``max_sequence_length``, since padded tokens are masked in the encoder and in cross-attention."""
    enc = tokenizer(captions, padding="longest", return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**DIT_BETAS)


def sampling_scheduler():
    """PixArt-α's sampler: DPM-Solver++ multistep, order 2, on the training betas."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(**DIT_BETAS, prediction_type="epsilon", solver_order=2)


# ---------------------------------------------------------------------------------------------------------------
# training loss


@dataclass(frozen=True)
class DitLoss:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


def dit_loss(
    model: TextToLatent,
    sched: Any,
    tokenizer: Any,
    latents: torch.Tensor,
    captions: list[str],
    masks: list[list[np.ndarray]],
    grab: Any,
    generator: torch.Generator,
) -> DitLoss:
    """ε-prediction MSE at uniform timesteps, min-SNR-5 weighted (as the UNet stage), plus the TokenCompose terms
    on every layer's cross-attention at the 8×8 token grid."""
    from benchmark.toyworld.unet import SNR_GAMMA, grounding_loss, grounding_targets

    ids, mask = tokenize(tokenizer, captions)
    text = model.text_encoder(ids, attention_mask=mask)[0]
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=generator)
    noisy = sched.add_noise(latents, noise, t)
    grab.maps.clear()
    pred = model.transformer(
        noisy,
        encoder_hidden_states=text,
        encoder_attention_mask=mask,
        timestep=t,
        added_cond_kwargs={"resolution": None, "aspect_ratio": None},
    ).sample
    ac = sched.alphas_cumprod[t]
    snr = ac / (1 - ac)
    weight = snr.clamp(max=SNR_GAMMA) / snr
    denoise = (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
    token, pixel = grounding_loss(grab.maps, *grounding_targets(tokenizer, captions, masks))
    loss = denoise + GROUNDING_WEIGHT * token + PIXEL_WEIGHT * pixel
    return DitLoss(loss, {"denoise": denoise.detach(), "grounding": token.detach(), "pixel": pixel.detach()})


# ---------------------------------------------------------------------------------------------------------------
# the stage and its export


def load_shipped_vae(shipped: Path):
    """The shipped toy VAE, frozen (the stage trains nothing of the old stages)."""
    from diffusers import AutoencoderKL

    folder = Path(shipped) / "text2img" / "vae"
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: the shipped toy VAE is missing (the dit stage trains on its latents)")
    return AutoencoderKL.from_pretrained(str(folder), dtype=torch.float32).eval().requires_grad_(False)


def train_dit(spec: Any, out: Path, seed: int, vae: Any) -> tuple[TextToLatent, Any]:
    """Train the transformer and its text encoder with ``run_stage`` (resumable); returns (model, tokenizer)."""
    from benchmark.attention import install_controller
    from benchmark.toyworld.render_batches import scene_batch
    from benchmark.toyworld.train import generator, run_stage
    from benchmark.toyworld.unet import AttentionGrab, drop_captions, encode_latents

    tokenizer = build_tokenizer()
    model = TextToLatent(build_transformer(seed), build_text_encoder(seed, len(tokenizer)))
    sched = noise_scheduler()
    grab = AttentionGrab(sides=(TOKEN_GRID,))

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = generator(seed, DIT, step)
        batch = scene_batch(seed, DIT, step, spec.batch_size)
        captions = drop_captions(batch.captions, np.random.default_rng([seed, step, 17]))
        latents = encode_latents(vae, batch.images, g)
        res = dit_loss(model, sched, tokenizer, latents, captions, batch.masks, grab, g)
        return res.loss, res.terms

    with install_controller(model.transformer, grab):
        run_stage(spec, out, model, loss_fn)
    return model.eval(), tokenizer


def export_dit(folder: Path, model: TextToLatent, tokenizer: Any, vae: Any) -> Path:
    """``PixArtAlphaPipeline.save_pretrained`` layout, float16 safetensors (loading upcasts)."""
    from diffusers import PixArtAlphaPipeline

    from benchmark.toyworld.train import halve_safetensors

    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=model.text_encoder,
        vae=vae,
        transformer=model.transformer,
        scheduler=sampling_scheduler(),
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    halve_safetensors(folder)
    return folder


def load_dit_pipeline(folder: Path, dtype: torch.dtype = torch.float32):
    from diffusers import PixArtAlphaPipeline

    pipe = PixArtAlphaPipeline.from_pretrained(str(folder), dtype=dtype)
    check_tokenizer(pipe.tokenizer, str(Path(folder) / "tokenizer"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def train_and_export_dit(spec: Any, out: Path, seed: int, shipped: Path, samples: bool = True) -> Path:
    """The whole ``--stage dit``: train from the shipped VAE, export to ``out/model/dit``, draw the loss curve
    (``out/dit_loss_curve.png``) and a sample grid (``out/dit_samples.png``)."""
    import shutil
    import tempfile

    from benchmark.toyworld.report import plot_loss_curves

    vae = load_shipped_vae(shipped)
    model, tokenizer = train_dit(spec, out, seed, vae)
    folder = out / "model" / DIT
    tmp = Path(tempfile.mkdtemp(prefix=".dit-", dir=out))
    export_dit(tmp, model, tokenizer, vae)
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(folder)
    folder.chmod(0o755)  # mkdtemp made it private
    plot_loss_curves(out / "logs", out / "dit_loss_curve.png")
    if samples:
        dit_sample_grid(folder, out / "dit_samples.png", seed=seed)
    return folder


SAMPLE_STEPS = 20  # PixArtAlphaPipeline's defaults: 20 DPM-Solver++ steps, guidance 4.5
SAMPLE_GUIDANCE = 4.5


def generate(pipe: Any, captions: list[str], generator: torch.Generator, steps: int = SAMPLE_STEPS) -> list:
    """Images from captions as a caller of ``PixArtAlphaPipeline`` gets them on this model (64 px)."""
    return pipe(
        captions,
        height=64,
        width=64,
        num_inference_steps=steps,
        guidance_scale=SAMPLE_GUIDANCE,
        generator=generator,
        use_resolution_binning=False,
        clean_caption=False,
    ).images


def dit_sample_grid(folder: Path, out: Path, seed: int = 0, n: int = 8) -> Path:
    """Row 1: rendered held-out scenes; row 2: the transformer's images from their captions."""
    from benchmark.datasets.synthetic import _rng, caption, random_scene
    from benchmark.toyworld.report import grid_sheet

    pipe = load_dit_pipeline(folder)
    scenes = [random_scene(_rng("emb-toyworld-samples", seed, i)) for i in range(n)]
    captions = [caption(s) for s in scenes]
    with torch.no_grad():
        images = generate(pipe, captions, torch.Generator().manual_seed(seed))
    return grid_sheet(scenes, images, captions, out)
