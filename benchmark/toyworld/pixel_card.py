"""Ship a trained pixel stage: copy ``RUN/model/pixel`` into ``data/toyworld/pixel``, measure its FID, copy its loss
curve and sample grid, and write the "Pixel UNet" section of ``data/toyworld/MODEL_CARD.md``.

    python -m benchmark.toyworld.pixel_card RUN [--dest data/toyworld] [--figures pixel_evidence.json]

Every number in the section comes from the run's files (pixel_config.json, pixel_summary.json, the loss log) and
the figures measured on the copied weights.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmark.toyworld import SHIPPED_DIR
from benchmark.toyworld.card import replace_section
from benchmark.toyworld.pixel import PIXEL, PixelFigures, pixel_figures

EVIDENCE_FILE = "pixel_evidence.json"
LOSS_PNG = "pixel_loss_curve.png"
SAMPLES_PNG = "pixel_samples.png"


def final_loss(log: Path, last: int = 50) -> float:
    with open(log) as f:
        tail = [float(r["loss"]) for r in csv.DictReader(f)][-last:]
    return sum(tail) / len(tail)


def section_text(run: Path, dest: Path, figures: PixelFigures) -> str:
    config = json.loads((run / "pixel_config.json").read_text())
    summary = json.loads((run / "pixel_summary.json").read_text())
    spec, unet, sched = config["stage"], config["unet"], config["scheduler"]
    size = sum(f.stat().st_size for f in (dest / PIXEL).rglob("*") if f.is_file())
    git = summary.get("provenance", {}).get("git", {})
    commit = f"; code at commit {git['commit'][:10]}" if git.get("commit") else ""
    minutes = summary["stage_train_seconds"][PIXEL] / 60
    step_s = summary["stage_train_seconds"][PIXEL] / spec["steps"]
    notes_path = run / "PIXEL_NOTES.md"  # the run's own account (how it was made, what its samples show)
    notes = f"\n### How these weights were made\n\n{notes_path.read_text().strip()}\n" if notes_path.exists() else ""
    wall_min, cpu_min = summary["wall_seconds_this_invocation"] / 60, summary["cpu_seconds_this_invocation"] / 60
    return f"""## Pixel UNet

`pixel/` ({size:,} bytes): an unconditional pixel-space `UNet2DModel` on the 64×64 RGB renders (images in
[-1, 1]) with a `DDPMScheduler`, in `DDPMPipeline` layout (`unet/`, `scheduler/`, `model_index.json`). Loads with
`DDPMPipeline.from_pretrained("data/toyworld/pixel")` or as the `pixel` model of `model=toyworld` /
`model=toyworld_pixel`. Pixel-space methods (Blended Diffusion, which guides it with the toy CLIP) run on it.

- Shaped like a small guided-diffusion (ADM) model where it is cheap: channels {tuple(unet["block_out_channels"])} at
  64, 32, 16 and 8 px, {unet["layers_per_block"]} res block per level, {unet["attention_head_dim"]}-channel attention
  heads at 16×16 and 8×8 (ADM: 32, 16, 8), scale-shift norm, ADM's timestep embedding (cos first, no shift);
  strided-conv down and nearest up instead of ADM's resblock up/down (25% slower a step here).
- ε-prediction with fixed variance (`variance_type="{sched["variance_type"]}"`, 3 output channels), ADM's linear
  β schedule ({sched["beta_start"]:g}–{sched["beta_end"]:g}, {sched["num_train_timesteps"]} steps, as the
  256×256 unconditional checkpoint), x̂0 clipped to [-1, 1]. Not ADM's learned-range variance: learning it needs
  ADM's hybrid loss (the variational-bound term), which diffusers does not offer for training, and at the 100
  respaced steps Blended Diffusion samples with a fixed variance costs little (Nichol & Dhariwal 2021 find the
  gain at few steps). Respacing: `scheduler.set_timesteps(100)`; the posterior variance follows the respaced ᾱ.
- Training: `emb toyworld train --stage pixel` (seed {config["seed"]}, steps scale {config["steps_scale"]}):
  {spec["steps"]} steps of batch {spec["batch_size"]} (fresh renders from (seed, step), stream `pixel`), AdamW lr
  {spec["lr"]:g} with {spec["warmup"]} warm-up steps then cosine to 10%, gradient clipping 1, EMA
  {spec["ema_decay"]}, ADM's L_simple (unweighted ε-MSE at uniform timesteps; the latent UNet's min-SNR weighting
  left the low-noise steps untrained in this short schedule, and their error shows as noise in pixel space). It
  needs none of the other toy models. **{minutes:.1f} train minutes** (whole command {wall_min:.1f} minutes wall,
  {cpu_min:.1f} CPU-minutes) on {summary["machine"]}{commit}.
  Final loss (mean of the last 50 steps): {final_loss(run / "logs" / f"{PIXEL}.csv"):.4f}.
- Sized for the machine it was trained on: 2 cores shared by many jobs, one thread under `nice -n 10`, where a
  step took {step_s:.1f} s wall. Wider levels ((32, 64, 96, 128)) took twice as long a step.

![pixel loss curve]({LOSS_PNG})

Top row: rendered scenes; rows 2–3: unconditional samples ({figures.sample_steps} respaced DDPM steps).

![pixel samples]({SAMPLES_PNG})

| figure | value |
|---|---|
| FID, {figures.n} samples vs {figures.n} renders (toy-CLIP features) | {figures.fid_samples_vs_renders:.4f} |
| FID, {figures.n} renders vs {figures.n} other renders (the floor at this n) | {figures.fid_renders_vs_renders:.4f} |

FID is torchmetrics' `FrechetInceptionDistance` with the toy CLIP's image tower
(`benchmark.toyworld.features.ToyClipFeatures`, 64-dimensional) as the feature network, as `metrics=toyworld`
computes it; samples from {figures.sample_steps} respaced DDPM steps, renders from a namespace disjoint from
training ({figures.seconds:.0f} s to measure; `{EVIDENCE_FILE}`). Recompute:
`python -m benchmark.toyworld.pixel_card RUN` after `emb toyworld train --stage pixel --out RUN`.
{notes}"""


def ship_pixel(run: Path, dest: Path = SHIPPED_DIR, figures: PixelFigures | None = None) -> Path:
    run, dest = Path(run), Path(dest)
    if (dest / PIXEL).exists():
        shutil.rmtree(dest / PIXEL)
    shutil.copytree(run / "model" / PIXEL, dest / PIXEL)
    for name in (LOSS_PNG, SAMPLES_PNG):
        if (run / name).exists():
            shutil.copy2(run / name, dest / name)
    if figures is None:
        figures = pixel_figures(dest / PIXEL)
    (dest / EVIDENCE_FILE).write_text(json.dumps(asdict(figures), indent=2) + "\n")
    card = dest / "MODEL_CARD.md"
    card.write_text(replace_section(card.read_text() if card.exists() else "", PIXEL, section_text(run, dest, figures)))
    return dest


def load_figures(path: Path) -> PixelFigures:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return PixelFigures(**data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--dest", default=str(SHIPPED_DIR))
    parser.add_argument("--figures", help="a pixel_evidence.json already measured on these weights")
    args = parser.parse_args()
    figures = load_figures(Path(args.figures)) if args.figures else None
    print(ship_pixel(Path(args.run), Path(args.dest), figures))


if __name__ == "__main__":
    main()
