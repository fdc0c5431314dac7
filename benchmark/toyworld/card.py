"""Ship a trained toy world: copy a run's model folders and figures into ``data/toyworld`` and write its model card.

    python -m benchmark.toyworld.card outputs/toyworld [--dest data/toyworld]

The card is generated from the run's own files (train_config.json, train_summary.json, the loss logs) and the
evidence figures recomputed on the copied weights, so every number in it is traceable.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

from benchmark.toyworld import CLIP, INPAINT, SHIPPED_DIR, TEXT2IMG


def _final_losses(log_dir: Path) -> dict[str, float]:
    out = {}
    for path in sorted(log_dir.glob("*.csv")):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        tail = [float(r["loss"]) for r in rows[-50:]]
        if tail:
            out[path.stem] = sum(tail) / len(tail)
    return out


def card_text(run: Path, dest: Path, figures: dict[str, Any]) -> str:
    from benchmark.toyworld.evidence import format_evidence

    config = json.loads((run / "train_config.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())
    losses = _final_losses(run / "logs")
    sizes = {
        p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        for p in (dest / TEXT2IMG, dest / INPAINT, dest / CLIP)
    }
    stage_rows = "\n".join(
        f"| {s['name']} | {s['steps']} | {s['batch_size']} | {s['lr']:g} | {s['warmup']} | "
        f"{s['ema_decay'] or '—'} | {summary['stage_train_seconds'].get(s['name'], float('nan')) / 60:.1f} | "
        f"{losses.get(s['name'], float('nan')):.4f} |"
        for s in config["schedule"]
    )
    arch = json.dumps(config["architectures"], indent=1)
    total_min = sum(summary["stage_train_seconds"].values()) / 60
    from benchmark.toyworld.clip import SOFTEN_SIGMA
    from benchmark.toyworld.evidence import REPRODUCTION_TOLERANCE
    from benchmark.toyworld.unet import GROUNDING_WEIGHT, PIXEL_WEIGHT

    machine = summary.get("machine", "not recorded")
    git = summary.get("provenance", {}).get("git", {})
    if git.get("commit"):
        machine += f"; code at commit {git['commit'][:10]}{' with uncommitted changes' if git.get('dirty') else ''}"
    tolerance = ", ".join(f"{k} ±{v:g}" for k, v in REPRODUCTION_TOLERANCE.items())
    notes_path = run / "NOTES.md"
    notes = f"\n## How these weights were made\n\n{notes_path.read_text().strip()}\n" if notes_path.exists() else ""
    return f"""# Toy world models (Editing-Mask Bench)

A tiny Stable-Diffusion-1.x-shaped model family trained by this project, on CPU, on the synthetic shapes world
(`benchmark/datasets/synthetic.py`: 64×64 scenes of 1–3 objects, 4 shapes × 6 colours, 4 backgrounds, captions like
"a red circle above a blue square on a striped background"). It exists so that the harness's default run measures
something real offline: attention masks, mask IoU, CLIPScore and FID computed with networks that know this world.

| folder | what | bytes |
|---|---|---|
| `text2img/` | `StableDiffusionPipeline` (see below) | {sizes[TEXT2IMG]:,} |
| `inpaint/` | `StableDiffusionInpaintPipeline`: same parts, 9-channel UNet made from text2img's | {sizes[INPAINT]:,} |
| `clip/` | open_clip `CLIP`: ViT image tower on 64 px, text tower over the CLIP vocabulary | {sizes[CLIP]:,} |

- `text2img/`: `AutoencoderKL` (×4: 16×16×4 latents), `CLIPTextModel` + the real CLIP BPE `CLIPTokenizer`,
  `UNet2DConditionModel` with cross-attention at 16×16 and 8×8, `DDIMScheduler` with SD's betas. Loads with
  `StableDiffusionPipeline.from_pretrained("data/toyworld/text2img")` or `model=toyworld` in the harness
  (`.pipeline("text2img" | "img2img" | "diffedit" | "inpaint")`).
- `clip/`: `open_clip.create_model_and_transforms("local-dir:data/toyworld/clip")`; as a FID feature network:
  `benchmark.toyworld.features.ToyClipFeatures`.

Weights are stored as float16 safetensors (loading upcasts to the requested dtype; the figures below are measured on
the stored weights). The diffusion text encoder is the text tower of the toy CLIP after its first stage (converted to
transformers and kept frozen, as SD 1.x uses OpenAI CLIP's); the shipped CLIP is the same model trained further.

## Training

`emb toyworld train` (seed {config["seed"]}, steps scale {config["steps_scale"]}); stages in order, each resumable
(`--resume`), every batch rendered on the fly from (seed, stage, step) in a seed namespace disjoint from the editing
set and from the evidence scenes. AdamW, linear warm-up then cosine decay to 10%, gradient clipping at 1.

| stage | steps | batch | lr | warm-up | EMA | train minutes | final loss (mean of last 50) |
|---|---|---|---|---|---|---|---|
{stage_rows}

- clip, clip_long: symmetric InfoNCE, each image's caption set also holding a hard negative (one object's colour
  or shape, or the background, changed) and, for 2–3 objects, the caption with two objects' colours swapped; plus,
  for every object, cross-entropy over its caption's 6 colour and 4 shape variants (the scene's caption must beat
  the same caption with that one object's colour, resp. shape, changed) — shape is barely asked for by in-batch
  negatives and was learned far more slowly than colour without this term. Half the images of every batch are
  softened (Gaussian blur σ {SOFTEN_SIGMA[0]:g}–{SOFTEN_SIGMA[1]:g} px, pixel noise): the CLIP scores generated
  images, which are softer than renders, and trained on renders only it took a VAE-reconstructed square for a
  circle.
- clip_long continues clip on new scenes; it is the shipped CLIP, while the diffusion text encoder is clip's text
  tower, frozen.
- vae: L1 + L2 reconstruction + 1e-6 KL; `scaling_factor` = 1 / std of the latents.
- unet: ε-prediction on SD's noise schedule (scaled-linear 0.00085–0.012, 1000 steps), min-SNR-5 weighting,
  one 48-channel attention head per 48 channels (SD's heads are 40–160 channels wide; 12-channel heads were slower
  and no better),
  10% empty captions (for classifier-free guidance), frozen VAE and text encoder; plus token grounding as in
  TokenCompose (Wang et al., CVPR 2024), at every cross-attention layer at 16×16 and 8×8: for each object's colour
  and shape word, {GROUNDING_WEIGHT:g} × (1 − the word's attention mass inside the object's mask / its total mass)
  + {PIXEL_WEIGHT:g} × the binary cross-entropy of the word's attention probability per cell against the mask. SD
  gets object-localised cross-attention from billions of captioned images; a 3M-parameter UNet trained for
  minutes does not (without these terms its 16×16 object-word attention sat *outside* the objects), and the
  attention-based editing methods (InstDiffEdit, Prompt-to-Prompt) need it. The attention figure below is measured
  on held-out scenes, during img2img with classifier-free guidance, as the methods use it.
- inpaint: the SD-inpainting input (noisy latents, mask at latent size, latents of the masked image) built exactly as
  `StableDiffusionInpaintPipeline` builds it; masks: the pixels of a random edit (as the editing set's GT), one object
  (dilated 0–3 px), the background, random boxes, the whole image.

Total training time of the stages: **{total_min:.1f} minutes**; whole command (incl. export and sample grid):
{summary["wall_seconds_this_invocation"] / 60:.1f} minutes wall, {summary["cpu_seconds_this_invocation"] / 60:.1f}
CPU-minutes (last invocation), on the machine that made these weights ({machine}).

![loss curves](loss_curves.png)

Top row: rendered scenes; bottom row: the text-to-image model's images from their captions (25 DDIM steps, CFG 7.5).

![samples](samples.png)

## Quality figures

Recomputed by `emb toyworld evidence` and by the slow test
`tests/test_toyworld.py::test_quality_figures_of_the_shipped_world`:

{format_evidence(figures).replace(str(dest), "data/toyworld")}

Definitions (`benchmark/toyworld/evidence.py`): clip_*_acc — the toy CLIP ranks a rendered scene's caption above
every variant with one object's colour (resp. shape) changed to any other value (n = {figures["n"]["clip"]} scenes,
accuracy over objects); generated_*_acc — images generated from held-out captions ({figures["n"]["generation"]}),
each object's colour and shape classified zero-shot by the toy CLIP among the same variants; attention_mask_iou —
16×16 cross-attention of an object's colour and shape words during img2img at strength 0.5 (20 steps, CFG 7.5),
min-max normalised, upsampled to 64 px, thresholded at 0.5, IoU with the object's exact mask
({figures["n"]["attention"]} scenes). Every figure is a mean over objects; its 95% interval is Wilson's for the
accuracies and Student's t for the IoU, so a figure whose interval straddles its threshold passes or fails by chance.

Reproduction: `emb toyworld train --out DIR && emb toyworld evidence --model DIR/model --reference
data/toyworld/evidence.json` retrains from scratch and checks every figure against this card's within
{tolerance} (exit code 1 otherwise; the slow test
`tests/test_toyworld.py::test_train_reproduces_the_shipped_figures` does the same). Training is deterministic for a
given seed, but float summation order depends on the CPU and the thread count.

{notes}
## Architectures

```json
{arch}
```

## Limits

A toy: 64×64 flat-colour shapes, a vocabulary of ~25 words, 1–3 objects. The numbers it gives test whether an
editing method's machinery works (does its mask find the edited object, does it keep the background, does the edit
follow the caption), not how it performs on natural images. There is no instruct-pix2pix variant, and LPIPS needs
real backbone weights that this world does not provide.
"""


# Sections of stages trained on their own (`--stage NAME`, e.g. the pixel UNet) are written by their own ship step
# between these markers at the end of the card; re-shipping the main models keeps them.
SECTION_START, SECTION_END = "<!-- stage:{} -->", "<!-- /stage:{} -->"


def stage_sections(card: str) -> str:
    """Every marked stage section of ``card``, markers included, in order."""
    return "".join(m.group(0) for m in re.finditer(r"<!-- stage:(\S+) -->.*?<!-- /stage:\1 -->\n?", card, re.S))


def replace_section(card: str, name: str, body: str) -> str:
    """``card`` with stage ``name``'s marked section replaced by ``body`` (appended at the end when absent)."""
    block = f"{SECTION_START.format(name)}\n{body.strip()}\n{SECTION_END.format(name)}\n"
    pattern = re.escape(SECTION_START.format(name)) + r".*?" + re.escape(SECTION_END.format(name)) + r"\n?"
    if re.search(pattern, card, flags=re.S):
        return re.sub(pattern, lambda _: block, card, count=1, flags=re.S)
    return f"{card.rstrip()}\n\n{block}" if card.strip() else block


def ship(run: Path, dest: Path = SHIPPED_DIR, figures: dict[str, Any] | None = None) -> Path:
    from benchmark.toyworld.evidence import evidence

    run, dest = Path(run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in (TEXT2IMG, INPAINT, CLIP):
        if (dest / name).exists():
            shutil.rmtree(dest / name)
        shutil.copytree(run / "model" / name, dest / name)
    for name in ("loss_curves.png", "samples.png"):
        if (run / name).exists():
            shutil.copy2(run / name, dest / name)
    if figures is None:
        figures = evidence(dest)
    figures = {**figures, "model": str(dest)}  # measured on the run's copy of the same files
    (dest / "evidence.json").write_text(json.dumps({**figures, "model": "data/toyworld"}, indent=2) + "\n")
    card = dest / "MODEL_CARD.md"
    kept = stage_sections(card.read_text()) if card.exists() else ""
    card.write_text(card_text(run, dest, figures) + (f"\n{kept}" if kept else ""))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--dest", default=str(SHIPPED_DIR))
    parser.add_argument("--figures", help="evidence JSON already computed for these weights")
    args = parser.parse_args()
    figures = json.loads(Path(args.figures).read_text()) if args.figures else None
    print(ship(Path(args.run), Path(args.dest), figures))


if __name__ == "__main__":
    main()
