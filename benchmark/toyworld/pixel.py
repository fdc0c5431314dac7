"""The toy world's pixel-space denoiser (``emb toyworld train --stage pixel``): an unconditional diffusers
``UNet2DModel`` on the 64×64 RGB renders, shaped like a small guided-diffusion (ADM) model, with a ``DDPMScheduler``,
exported in ``DDPMPipeline`` layout (``unet/``, ``scheduler/``, ``model_index.json``).

It is what pixel-space methods (Blended Diffusion) run on in the toy world. The stage needs none of the other toy
models to train (renders only); its quality figure, a FID between its samples and renders, is measured in the
shipped toy CLIP's feature space (``benchmark.toyworld.features.ToyClipFeatures``), as the harness measures FID.

Choices (ours; ADM's where it is cheap):

- ε-prediction with fixed variance (``variance_type="fixed_small"``, out_channels 3) rather than ADM's learned-range
  variance: learning the variance needs ADM's hybrid loss (the variational bound term), which diffusers does not
  offer for training, and at the 100 respaced steps Blended Diffusion samples with, a fixed variance costs little
  (Nichol & Dhariwal 2021 show the gain concentrates at few sampling steps).
- ADM's linear β schedule (1e-4 to 0.02 over 1000 steps, as the 256×256 unconditional checkpoint), ADM's timestep
  embedding (cos first, no frequency shift), scale-shift norm, 32-channel attention heads at 16×16 and 8×8 only
  (ADM attends at 32, 16, 8; 32×32 attention doubled the step time here); plain strided-conv downsampling and
  nearest upsampling instead of ADM's resblock up/down (25% slower here, optional in ADM).
- ADM's unweighted L_simple, not the latent UNet's min-SNR-5 weighting: that weighting leaves the low-noise steps
  all but untrained in a short schedule (after 150 steps the ε error at t = 5 was still 0.97, samples pure noise),
  and in pixel space their error stays in the image as visible noise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PIXEL = "pixel"  # the stage's name and its folder inside a toy-world model directory
STREAM = "pixel"  # training scenes' stream in the toy world's training namespace
SAMPLES_NAMESPACE = "emb-toyworld-pixel-samples"  # renders shown beside the samples and used as the FID's real side

PIXEL_UNET_CFG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,  # ε only: fixed variance
    # 64, 32, 16, 8 px; 2.8M parameters, 5.6 MB in float16; (32, 64, 96, 128) took twice the time a step here
    "block_out_channels": (16, 32, 64, 128),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "attention_head_dim": 32,
    "norm_num_groups": 8,
    "resnet_time_scale_shift": "scale_shift",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}
# ADM's linear schedule; epsilon prediction, fixed (posterior) variance, x0 clipped to [-1, 1] as ADM's clip_denoised
PIXEL_SCHEDULER_CFG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "variance_type": "fixed_small",
    "clip_sample": True,
}
SAMPLE_STEPS = 100  # respaced DDPM steps of the sample grid and the FID (Blended Diffusion's respacing)
FID_N = 128  # generated samples (and renders) per FID side: ~3.5 CPU-minutes of sampling


@dataclass(frozen=True)
class PixelFigures:
    """FID in toy-CLIP space between ``n`` generated samples and ``n`` renders, beside the floor: FID between two
    disjoint sets of ``n`` renders (what a perfect model would score at this ``n``)."""

    n: int
    sample_steps: int
    fid_samples_vs_renders: float
    fid_renders_vs_renders: float
    seconds: float


def build_pixel_unet(seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**PIXEL_UNET_CFG)


def pixel_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**PIXEL_SCHEDULER_CFG)


def pixel_loss(unet, sched, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ADM's L_simple: ε-prediction MSE at uniform timesteps, unweighted."""
    noise = torch.randn(images.shape, generator=generator)
    t = torch.randint(0, sched.config.num_train_timesteps, (images.shape[0],), generator=generator)
    return F.mse_loss(unet(sched.add_noise(images, noise, t), t).sample, noise)


def train_pixel(spec, out: Path, seed: int):
    """Train (or resume, or load when done) the pixel stage into ``out``; returns the UNet with its EMA weights."""
    from benchmark.toyworld.render_batches import scene_batch
    from benchmark.toyworld.train import generator, run_stage

    unet = build_pixel_unet(seed)
    sched = pixel_scheduler()

    def loss_fn(step: int) -> torch.Tensor:
        images = scene_batch(seed, STREAM, step, spec.batch_size).images
        return pixel_loss(unet, sched, images, generator(seed, PIXEL, step))

    run_stage(spec, out, unet, loss_fn)
    return unet.eval()


def export_pixel(unet, model_dir: Path) -> Path:
    """``model_dir/pixel`` in ``DDPMPipeline`` layout, weights as float16 safetensors (loading upcasts)."""
    from diffusers import DDPMPipeline

    from benchmark.toyworld.train import halve_safetensors

    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pixel-", dir=model_dir))
    DDPMPipeline(unet=unet, scheduler=pixel_scheduler()).save_pretrained(tmp)
    halve_safetensors(tmp)
    dest = model_dir / PIXEL
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def load_pixel_pipeline(folder: Path):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(str(folder), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, n: int, seed: int, steps: int = SAMPLE_STEPS, batch: int = 32) -> np.ndarray:
    """``n`` unconditional samples, uint8 (n, 64, 64, 3), respaced DDPM sampling; each batch's noise from
    (seed, batch index) so a prefix of the samples does not depend on ``n``."""
    out = []
    for i in range(0, n, batch):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        images = pipe(batch_size=min(batch, n - i), generator=gen, num_inference_steps=steps, output_type="np").images
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def renders(n: int, seed: int, part: str) -> np.ndarray:
    """``n`` rendered scenes, uint8 (n, 64, 64, 3), from a namespace disjoint from training."""
    from benchmark.datasets.synthetic import _rng, random_scene, render

    return np.stack([render(random_scene(_rng(SAMPLES_NAMESPACE, seed, part, i)), 64)[0] for i in range(n)])


def toy_clip_fid(real: np.ndarray, fake: np.ndarray, clip_folder: Path | None = None) -> float:
    """torchmetrics' FID with the toy CLIP's image tower as the feature network (as ``metrics=toyworld``)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from benchmark.toyworld.features import ToyClipFeatures

    fid = FrechetInceptionDistance(feature=ToyClipFeatures(clip_folder), normalize=False)
    fid.update(torch.from_numpy(real).permute(0, 3, 1, 2).contiguous(), real=True)
    fid.update(torch.from_numpy(fake).permute(0, 3, 1, 2).contiguous(), real=False)
    return float(fid.compute())


def pixel_figures(
    folder: Path, n: int = FID_N, seed: int = 0, clip_folder: Path | None = None, steps: int = SAMPLE_STEPS
) -> PixelFigures:
    started = time.perf_counter()
    fake = generate(load_pixel_pipeline(folder), n, seed, steps)
    real = renders(n, seed, "fid-real")
    floor = toy_clip_fid(real, renders(n, seed, "fid-floor"), clip_folder)
    return PixelFigures(n, steps, toy_clip_fid(real, fake, clip_folder), floor, round(time.perf_counter() - started, 1))


def sample_grid(folder: Path, out: Path, seed: int = 0, n: int = 16, steps: int = SAMPLE_STEPS) -> Path:
    """Row 1: rendered scenes; rows 2-3: unconditional samples (respaced DDPM, ``steps`` steps), 2× nearest."""
    from PIL import Image

    real = renders(n // 2, seed, "grid")
    fake = generate(load_pixel_pipeline(folder), n, seed, steps)
    cols, tile = n // 2, 128
    sheet = Image.new("RGB", (tile * cols, tile * 3), "white")
    for i, img in enumerate([*real, *fake]):
        sheet.paste(
            Image.fromarray(img).resize((tile, tile), Image.Resampling.NEAREST), ((i % cols) * tile, (i // cols) * tile)
        )
    sheet.save(out)
    return out


def loss_curve(log: Path, out: Path) -> Path:
    """The model card's loss panel of this one stage (``report.plot_loss_curves`` lays panels out three a row)."""
    from PIL import Image

    from benchmark.toyworld.report import PANEL, plot_loss_curves

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy2(log, Path(tmp) / log.name)
        plot_loss_curves(Path(tmp), out)
    Image.open(out).crop((0, 0, *PANEL)).save(out)
    return out


def train_pixel_stage(
    spec, out: Path, resume: bool = False, seed: int = 0, samples: bool = True, steps_scale: float = 1.0
) -> Path:
    """The whole ``--stage pixel`` command: train (resumable), export ``out/model/pixel``, loss curve and sample
    grid, ``pixel_summary.json``; returns ``out/model``."""
    from benchmark.provenance import stamp
    from benchmark.toyworld.train import FORMAT_VERSION, cpu_times, machine_description

    out = Path(out)
    config = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "steps_scale": steps_scale,
        "stage": asdict(spec),
        "unet": PIXEL_UNET_CFG,
        "scheduler": PIXEL_SCHEDULER_CFG,
    }
    config = json.loads(json.dumps(config))
    cfg_path = out / "pixel_config.json"
    if cfg_path.exists():
        if not resume:
            raise FileExistsError(
                f"{out}: holds a pixel stage run; pass --resume to continue it, or choose another --out"
            )
        if json.loads(cfg_path.read_text()) != config:
            raise ValueError(
                f"{cfg_path}: the run there used a different configuration (seed, steps or architecture); "
                f"resume it with the same options or choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(config, indent=2) + "\n")
    code = stamp()
    started, cpu0 = time.time(), time.process_time()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    times_at_start = cpu_times()

    unet = train_pixel(spec, out, seed)
    folder = export_pixel(unet, out / "model")
    loss_curve(out / "logs" / f"{PIXEL}.csv", out / "pixel_loss_curve.png")
    if samples:
        sample_grid(folder, out / "pixel_samples.png", seed=seed)
    from benchmark.toyworld.train import _load_safetensors, folder_size

    meta = _load_safetensors(out / "stages" / f"{PIXEL}.safetensors")[1]
    summary = {
        "wall_seconds_this_invocation": round(time.time() - started, 1),
        "cpu_seconds_this_invocation": round(time.process_time() - cpu0, 1),
        "stage_train_seconds": {PIXEL: float(meta.get("seconds", "nan"))},
        "model_bytes": folder_size(folder),
        "machine": machine_description(load_at_start, times_at_start),
        "provenance": code,
    }
    (out / "pixel_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out / "model"
