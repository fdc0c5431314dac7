"""``emb toyworld train``: train the toy world's models on CPU, stage by stage, deterministic and resumable.

Stages (each a plain loop over batches rendered on the fly, see ``render_batches``):

1. ``clip``      open_clip CLIP, contrastive with hard-negative captions and per-object attribute variants; its text
                 tower becomes the text encoder;
2. ``clip_long`` the ``clip`` stage's CLIP trained further: the shipped CLIP for scoring (CLIPScore, FID);
3. ``vae``       AutoencoderKL ×4;
4. ``unet``      text-to-image UNet on frozen VAE latents and the frozen CLIP text tower (as SD 1.x), EMA weights,
                 with a token-grounding loss on its cross-attention;
5. ``inpaint``   9-channel inpainting UNet initialised from ``unet`` (extra input filters zero), EMA weights;

then ``export`` writes ``OUT/model/{text2img,inpaint,clip}`` with ``save_pretrained`` / open_clip's layout, weights
stored as float16 safetensors (loading upcasts to the requested dtype), plus ``loss_curves.png`` and
``samples.png``. Every batch, noise draw and initialisation is a function of (seed, stage, step), so a resumed run
continues exactly where it stopped; checkpoints are written every ``CKPT_EVERY`` steps and every few minutes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.provenance import stamp
from benchmark.toyworld import CLIP, INPAINT, TEXT2IMG

log = logging.getLogger(__name__)

CKPT_EVERY = 100
CKPT_SECONDS = 180.0
FORMAT_VERSION = 2
LOG_FIELDS = ["step", "loss", "lr", "seconds", "parts"]  # parts: a stage's loss terms, "name=value;..."


@dataclass(frozen=True)
class StageSpec:
    name: str
    steps: int
    batch_size: int
    lr: float
    warmup: int
    weight_decay: float = 0.0
    ema_decay: float | None = None


# The default schedule, the one the shipped weights were trained with, in the order the stages run: sized to train
# in under an hour on 2 free CPU cores (measured times in MODEL_CARD.md); `--steps-scale 2` trains longer.
SCHEDULE: tuple[StageSpec, ...] = (
    StageSpec("clip", steps=300, batch_size=32, lr=1e-3, warmup=20, weight_decay=0.05),
    StageSpec("clip_long", steps=3500, batch_size=32, lr=1e-3, warmup=50, weight_decay=0.05),
    StageSpec("vae", steps=1200, batch_size=32, lr=1e-3, warmup=30),
    StageSpec("unet", steps=5400, batch_size=32, lr=6e-4, warmup=100, ema_decay=0.999),
    StageSpec("inpaint", steps=500, batch_size=32, lr=3e-4, warmup=20, ema_decay=0.995),
)
STAGE_NAMES = tuple(s.name for s in SCHEDULE)
# Stages trained alone (`--stage NAME`) from the shipped toy models (VAE, tokenizer, CLIP in data/toyworld), without
# retraining the schedule above; each exports into its own folder of OUT/model and has its own model-card section.
ADDED_STAGES: dict[str, StageSpec] = {
    # PixArt-α-shaped transformer (benchmark.toyworld.dit): sized to train in ~40 minutes at 1 thread on the
    # shared 2-core machine (MODEL_CARD.md's DiT section)
    "dit": StageSpec("dit", steps=1200, batch_size=32, lr=8e-4, warmup=60, ema_decay=0.995),
    # unconditional 64 px pixel-space UNet (benchmark.toyworld.pixel) for pixel-space methods, sized for ~40 min at
    # 1 thread under `nice -n 10` on the shared 2-core machine (a step: ~1 CPU-s, 3-5 s wall)
    "pixel": StageSpec("pixel", steps=500, batch_size=16, lr=1e-3, warmup=30, ema_decay=0.995),
}


def scaled_stage(spec: StageSpec, scale: float) -> StageSpec:
    """A stage's steps (and warm-up) times ``scale``, at least 1 step: ``--steps-scale 0.01`` is a smoke run."""
    if scale <= 0:
        raise ValueError(f"--steps-scale={scale}: must be > 0")
    return replace(spec, steps=max(1, round(spec.steps * scale)), warmup=max(0, round(spec.warmup * min(scale, 1.0))))


def scaled_schedule(scale: float) -> tuple[StageSpec, ...]:
    return tuple(scaled_stage(s, scale) for s in SCHEDULE)


def lr_at(spec: StageSpec, step: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def generator(seed: int, stage: str, step: int) -> torch.Generator:
    key = int.from_bytes(f"{stage}".encode()[:8].ljust(8, b"\0"), "little") % (2**31)
    return torch.Generator().manual_seed((seed * 1_000_003 + key * 7919 + step) % (2**63))


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _rewrite_log(path: Path, keep_before: int) -> None:
    """Start the loss log with its header, keeping (on resume) only rows of steps that will not be recomputed."""
    rows = []
    if path.exists():
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) < keep_before]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)


def run_stage(
    spec: StageSpec,
    out: Path,
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]],
    params: list[torch.nn.Parameter] | None = None,
    final_metadata: Callable[[], dict[str, str]] | None = None,
) -> Path:
    """Train ``model`` for ``spec.steps`` (resuming from this stage's checkpoint if any); return the final weights
    file (EMA weights when the stage keeps an EMA). ``loss_fn(step)`` returns the loss, or (loss, its named terms)
    to have the terms logged too."""
    from diffusers.training_utils import EMAModel
    from tqdm import tqdm

    final = out / "stages" / f"{spec.name}.safetensors"
    if final.exists():
        state, _ = _load_safetensors(final)
        model.load_state_dict(state)
        log.info("stage %s: done earlier, loaded %s", spec.name, final)
        return final
    for sub in ("stages", "checkpoints", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    params = list(params if params is not None else model.parameters())
    decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.99),
    )
    ema = EMAModel(params, decay=spec.ema_decay) if spec.ema_decay else None
    ckpt = out / "checkpoints" / f"{spec.name}.pt"
    start, elapsed = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start, elapsed = int(state["step"]), float(state["seconds"])
        log.info("stage %s: resuming at step %d", spec.name, start)
    log_path = out / "logs" / f"{spec.name}.csv"
    _rewrite_log(log_path, start)

    def save(step: int) -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": elapsed}
        if ema is not None:
            state["ema"] = ema.state_dict()
        _atomic_save(state, ckpt)

    model.train()
    last_save = time.monotonic()
    with open(log_path, "a", newline="") as lf:
        writer = csv.writer(lf)
        bar = tqdm(
            range(start, spec.steps), initial=start, total=spec.steps, desc=f"toyworld {spec.name}", dynamic_ncols=True
        )
        for step in bar:
            t0 = time.perf_counter()
            lr = lr_at(spec, step)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(step)
            loss, terms = loss if isinstance(loss, tuple) else (loss, {})
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(params)
            elapsed += time.perf_counter() - t0
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"stage {spec.name}: loss is {value} at step {step}")
            parts = ";".join(f"{k}={float(v):.6f}" for k, v in terms.items())
            writer.writerow([step, f"{value:.6f}", f"{lr:.3e}", f"{elapsed:.1f}", parts])
            bar.set_postfix(loss=f"{value:.4f}")
            if (step + 1) % CKPT_EVERY == 0 or time.monotonic() - last_save > CKPT_SECONDS:
                lf.flush()
                save(step + 1)
                last_save = time.monotonic()
    if ema is not None:
        ema.copy_to(params)
    model.eval()
    meta = {"stage": spec.name, "steps": str(spec.steps), "seconds": f"{elapsed:.1f}"}
    if final_metadata is not None:
        meta.update(final_metadata())
    _save_safetensors(model.state_dict(), final, meta)
    ckpt.unlink(missing_ok=True)
    return final


# ---------------------------------------------------------------------------------------------------------------
# the stages


def train_clip(spec: StageSpec, out: Path, seed: int, init=None, stream: str = "clip"):
    """A CLIP stage. ``init``: continue from another stage's model (``clip_long``: the shipped, scoring CLIP is the
    ``clip`` stage's model trained further on new scenes, while the diffusion text encoder keeps the ``clip``
    stage's text tower it was trained with)."""
    import copy

    from benchmark.toyworld.clip import build_clip, clip_batch, clip_loss, tokenizer

    model = build_clip(seed) if init is None else copy.deepcopy(init).train()
    tok = tokenizer()

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return clip_loss(model, clip_batch(seed, step, spec.batch_size, stream=stream), tok)

    run_stage(spec, out, model, loss_fn)
    return model.eval()


def train_vae(spec: StageSpec, out: Path, seed: int):
    from benchmark.toyworld.render_batches import scene_batch
    from benchmark.toyworld.vae import build_vae, latent_scaling_factor, vae_loss

    vae = build_vae(seed)

    def loss_fn(step: int) -> torch.Tensor:
        batch = scene_batch(seed, "vae", step, spec.batch_size)
        return vae_loss(vae, batch.images, generator(seed, "vae", step))

    def scaling() -> dict[str, str]:
        images = torch.cat([scene_batch(seed, "vae-scale", i, 64).images for i in range(4)])
        return {"scaling_factor": f"{latent_scaling_factor(vae, images):.6f}"}

    final = run_stage(spec, out, vae, loss_fn, final_metadata=scaling)
    _, meta = _load_safetensors(final)
    vae.register_to_config(scaling_factor=float(meta["scaling_factor"]))
    return vae.eval().requires_grad_(False)


def train_unet(spec: StageSpec, out: Path, seed: int, vae, text_encoder, tokenizer):
    from benchmark.attention import install_controller
    from benchmark.toyworld.render_batches import scene_batch
    from benchmark.toyworld.unet import (
        GROUNDING_WEIGHT,
        PIXEL_WEIGHT,
        AttentionGrab,
        build_unet,
        denoising_loss,
        drop_captions,
        encode_latents,
        encode_prompts,
        grounding_loss,
        grounding_targets,
        noise_scheduler,
    )

    unet = build_unet(seed)
    sched = noise_scheduler()
    grab = AttentionGrab()

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = generator(seed, "unet", step)
        batch = scene_batch(seed, "unet", step, spec.batch_size)
        captions = drop_captions(batch.captions, np.random.default_rng([seed, step, 11]))
        latents = encode_latents(vae, batch.images, g)
        grab.maps.clear()
        denoise = denoising_loss(unet, sched, latents, encode_prompts(text_encoder, tokenizer, captions), g)
        token, pixel = grounding_loss(grab.maps, *grounding_targets(tokenizer, captions, batch.masks))
        loss = denoise + GROUNDING_WEIGHT * token + PIXEL_WEIGHT * pixel
        return loss, {"denoise": denoise.detach(), "grounding": token.detach(), "pixel": pixel.detach()}

    with install_controller(unet, grab):
        run_stage(spec, out, unet, loss_fn)
    return unet.eval()


def train_inpaint(spec: StageSpec, out: Path, seed: int, vae, text_encoder, tokenizer, unet):
    from benchmark.tiny_models import widen_unet_input
    from benchmark.toyworld.unet import (
        denoising_loss,
        drop_captions,
        encode_latents,
        encode_prompts,
        inpaint_batch,
        inpaint_conditioning,
        noise_scheduler,
    )

    model = widen_unet_input(unet, 9)
    sched = noise_scheduler()

    def loss_fn(step: int) -> torch.Tensor:
        g = generator(seed, "inpaint", step)
        images, masks, captions = inpaint_batch(seed, step, spec.batch_size)
        captions = drop_captions(captions, np.random.default_rng([seed, step, 13]))
        latents = encode_latents(vae, images, g)
        extra = inpaint_conditioning(vae, images, masks, g)
        return denoising_loss(model, sched, latents, encode_prompts(text_encoder, tokenizer, captions), g, extra)

    run_stage(spec, out, model, loss_fn)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# export


def halve_safetensors(folder: Path) -> None:
    """Store every float tensor under ``folder`` as float16 (half the bytes); loaders upcast to their dtype."""
    for path in folder.rglob("*.safetensors"):
        state, meta = _load_safetensors(path)
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        _save_safetensors(state, path, meta or None)


def export(out: Path, clip_model, vae, unet, inpaint_unet, tokenizer, text_encoder) -> Path:
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    from benchmark.models import write_clip_tokenizer
    from benchmark.tiny_models import SD_BETAS
    from benchmark.toyworld.clip import save_open_clip

    model_dir = out / "model"
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    common = dict(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(**SD_BETAS),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    StableDiffusionPipeline(unet=unet, **common).save_pretrained(tmp / TEXT2IMG)
    StableDiffusionInpaintPipeline(unet=inpaint_unet, **common).save_pretrained(tmp / INPAINT)
    save_open_clip(clip_model, tmp / CLIP, fp16=False)
    for kind in (TEXT2IMG, INPAINT):
        # vocab.json + merges.txt (1.5 MB) instead of the 3.6 MB tokenizer.json transformers 5 writes: the same
        # tokenizer (CLIPTokenizer builds it from these two files), half the bytes
        (tmp / kind / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
        write_clip_tokenizer(tmp / kind / "tokenizer")
    halve_safetensors(tmp)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    os.replace(tmp, model_dir)
    return model_dir


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------------------------


def start_run_folder(out: Path, config: dict[str, Any], resume: bool) -> None:
    """Create ``out`` with its ``train_config.json``; an earlier run there is continued only with ``resume`` and the
    same configuration."""
    cfg_path = out / "train_config.json"
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise FileExistsError(f"{out}: not empty; pass --resume to continue that run, or choose another --out")
        if cfg_path.exists() and json.loads(cfg_path.read_text()) != json.loads(json.dumps(config)):
            raise ValueError(
                f"{cfg_path}: the run there used a different configuration (stages, seed, steps or "
                f"architecture); resume it with the same options or choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(config, indent=2) + "\n")


def train(
    out: Path,
    resume: bool = False,
    steps_scale: float = 1.0,
    seed: int = 0,
    samples: bool = True,
    threads: int | None = None,
    stages: tuple[str, ...] = (),
) -> Path:
    """Run every stage into ``out`` and export the model folders; returns ``out / "model"``. ``stages``: only
    these ``ADDED_STAGES``, trained from the shipped toy models (``train_added``).

    ``threads``: torch intra-op threads. On a machine shared with other busy processes use 1: several threads of
    one process wait for each other at every parallel region when the OS deschedules one of them, which made
    training here up to 10× slower than one thread."""
    if threads:
        torch.set_num_threads(int(threads))
    if stages:
        return train_added(out, tuple(stages), resume=resume, steps_scale=steps_scale, seed=seed, samples=samples)
    from benchmark.models import load_clip_tokenizer, write_clip_tokenizer
    from benchmark.toyworld.clip import text_tower_to_hf

    out = Path(out)
    # denormal floats (tiny activations/gradients late in training) slow CPU kernels down by 10-30×
    torch.set_flush_denormal(True)
    schedule = scaled_schedule(steps_scale)
    config = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "steps_scale": steps_scale,
        "schedule": [asdict(s) for s in schedule],
        "architectures": architectures(),
    }
    start_run_folder(out, config, resume)
    specs = {s.name: s for s in schedule}
    code = stamp()  # at the start: the code this process trains with, whatever the checkout becomes meanwhile
    started = time.time()
    cpu0 = time.process_time()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    times_at_start = cpu_times()

    clip_model = train_clip(specs["clip"], out, seed)
    scoring_clip = train_clip(specs["clip_long"], out, seed, init=clip_model, stream="clip_long")
    vae = train_vae(specs["vae"], out, seed)
    text_encoder = text_tower_to_hf(clip_model).requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_clip_tokenizer(write_clip_tokenizer(Path(tmp) / "tok"))
    unet = train_unet(specs["unet"], out, seed, vae, text_encoder, tokenizer)
    inpaint_unet = train_inpaint(specs["inpaint"], out, seed, vae, text_encoder, tokenizer, unet)
    model_dir = export(out, scoring_clip, vae, unet, inpaint_unet, tokenizer, text_encoder)

    from benchmark.toyworld.report import plot_loss_curves, sample_grid

    plot_loss_curves(out / "logs", out / "loss_curves.png")
    if samples:
        sample_grid(model_dir, out / "samples.png", seed=seed)
    summary = {
        "wall_seconds_this_invocation": round(time.time() - started, 1),
        "cpu_seconds_this_invocation": round(time.process_time() - cpu0, 1),
        "stage_train_seconds": stage_seconds(out),
        "model_bytes": folder_size(model_dir),
        "machine": machine_description(load_at_start, times_at_start),
        "provenance": code,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("toy world trained: %s (%.1f MB)", model_dir, summary["model_bytes"] / 1e6)
    return model_dir


def train_added(out: Path, stages: tuple[str, ...], resume: bool, steps_scale: float, seed: int, samples: bool) -> Path:
    """Train ``ADDED_STAGES`` from the shipped toy models into ``out`` (same resume and configuration checks as
    ``train``); each exports to ``out / "model" / NAME`` and writes ``out / "NAME_summary.json"``."""
    from benchmark.toyworld import SHIPPED_DIR

    unknown = [s for s in stages if s not in ADDED_STAGES]
    if unknown:
        raise ValueError(
            f"--stage {', '.join(unknown)}: not a stage trained alone (those are {', '.join(ADDED_STAGES)}); "
            f"the stages {', '.join(STAGE_NAMES)} run together without --stage"
        )
    out = Path(out)
    torch.set_flush_denormal(True)
    specs = {n: scaled_stage(ADDED_STAGES[n], steps_scale) for n in stages}
    config = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "steps_scale": steps_scale,
        "schedule": [asdict(s) for s in specs.values()],
        "architectures": added_architectures(stages),
        "from": str(SHIPPED_DIR),
    }
    start_run_folder(out, config, resume)
    for name, spec in specs.items():
        code = stamp()
        started, cpu0 = time.time(), time.process_time()
        load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        times_at_start = cpu_times()
        if name == "dit":
            from benchmark.toyworld.dit import train_and_export_dit

            folder = train_and_export_dit(spec, out, seed, SHIPPED_DIR, samples=samples)
        else:
            from benchmark.toyworld.pixel import train_and_export_pixel

            folder = train_and_export_pixel(spec, out, seed, samples=samples)
        seconds = float(_load_safetensors(out / "stages" / f"{name}.safetensors")[1]["seconds"])
        summary = {
            "wall_seconds_this_invocation": round(time.time() - started, 1),
            "cpu_seconds_this_invocation": round(time.process_time() - cpu0, 1),
            "stage_train_seconds": {name: seconds},
            "model_bytes": folder_size(folder),
            "machine": machine_description(load_at_start, times_at_start),
            "provenance": code,
        }
        (out / f"{name}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("toy world %s trained: %s (%.1f MB)", name, folder, summary["model_bytes"] / 1e6)
    return out / "model"


def added_architectures(stages: tuple[str, ...]) -> dict[str, Any]:
    archs: dict[str, Any] = {}
    if "dit" in stages:
        from benchmark.toyworld.dit import DIT_CFG, T5_CFG

        archs["dit"] = {"transformer": DIT_CFG, "text_encoder": T5_CFG}
    if "pixel" in stages:
        from benchmark.toyworld.pixel import PIXEL_SCHEDULER_CFG, PIXEL_UNET_CFG

        archs["pixel"] = {"unet": PIXEL_UNET_CFG, "scheduler": PIXEL_SCHEDULER_CFG}
    return json.loads(json.dumps(archs))


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat (Linux), None elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def machine_description(load_at_start: float | None, times_at_start: tuple[int, int] | None) -> str:
    """CPU, cores, threads, the 1-minute load average before training and the share of CPU time a hypervisor took
    while training (other jobs and a busy host slow the stages down; the card's times are wall clock)."""
    import platform

    load = "" if load_at_start is None else f", load average {load_at_start:.1f} when training started"
    now = cpu_times()
    steal = ""
    if times_at_start is not None and now is not None and now[1] > times_at_start[1]:
        share = (now[0] - times_at_start[0]) / (now[1] - times_at_start[1])
        steal = f", {100 * share:.0f}% of CPU time stolen by the hypervisor during training"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"{torch.get_num_threads()} torch threads{load}{steal}"
    )


def stage_seconds(out: Path) -> dict[str, float]:
    res = {}
    for name in STAGE_NAMES:
        path = out / "stages" / f"{name}.safetensors"
        if path.exists():
            res[name] = float(_load_safetensors(path)[1].get("seconds", "nan"))
    return res


def architectures() -> dict[str, Any]:
    from benchmark.toyworld.clip import CLIP_MODEL_CFG
    from benchmark.toyworld.unet import UNET_CFG
    from benchmark.toyworld.vae import VAE_CFG

    return json.loads(json.dumps({"clip": CLIP_MODEL_CFG, "vae": VAE_CFG, "unet": UNET_CFG}))
