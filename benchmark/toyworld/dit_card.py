"""Ship a trained toy-world PixArt: copy a ``--stage dit`` run's pipeline folder and figures into ``data/toyworld`` and
write the DiT section of its model card.

    python -m benchmark.toyworld.dit_card outputs/dit-run [--dest data/toyworld] [--figures dit_evidence.json]

The section is generated from the run's own files (train_config.json, dit_summary.json, the loss log) and the figures
measured on the copied weights (``dit_evidence``); it replaces an earlier DiT section or goes before "## Limits".
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path
from typing import Any

from benchmark.toyworld import SHIPPED_DIR
from benchmark.toyworld.card import replace_section
from benchmark.toyworld.dit import DIT

HEADING = "## DiT: the toy-world PixArt-α"
CARD = "MODEL_CARD.md"


def final_terms(log_path: Path, last: int = 50) -> dict[str, float]:
    """Mean of the last ``last`` steps' loss and of each logged loss term."""
    with open(log_path) as f:
        rows = list(csv.DictReader(f))[-last:]
    out = {"loss": sum(float(r["loss"]) for r in rows) / len(rows)}
    for r in rows:
        for part in filter(None, r["parts"].split(";")):
            k, v = part.split("=")
            out[k] = out.get(k, 0.0) + float(v) / len(rows)
    return out


def parameter_counts(folder: Path) -> dict[str, int]:
    import math

    from safetensors import safe_open

    counts = {}
    for part in ("transformer", "text_encoder"):
        (path,) = (folder / part).glob("*.safetensors")
        with safe_open(str(path), framework="pt") as f:
            counts[part] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return counts


def section_text(run: Path, dest: Path, figures: dict[str, Any]) -> str:
    from benchmark.toyworld.dit import DIT_BETAS, GROUNDING_WEIGHT, PIXEL_WEIGHT, SAMPLE_GUIDANCE, SAMPLE_STEPS
    from benchmark.toyworld.evidence import format_evidence

    config = json.loads((run / "train_config.json").read_text())
    summary = json.loads((run / f"{DIT}_summary.json").read_text())
    (spec,) = [s for s in config["schedule"] if s["name"] == DIT]
    terms = final_terms(run / "logs" / f"{DIT}.csv")
    folder = dest / DIT
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    params = parameter_counts(folder)
    arch = json.dumps(config["architectures"][DIT], indent=1)
    minutes = summary["stage_train_seconds"][DIT] / 60
    git = summary.get("provenance", {}).get("git", {})
    commit = f", code at commit {git['commit'][:10]}" if git.get("commit") else ""
    notes_path = run / "DIT_NOTES.md"
    notes = f"\n{notes_path.read_text().strip()}\n" if notes_path.exists() else ""
    table = format_evidence(figures).replace(str(folder), "data/toyworld/dit")
    return f"""{HEADING}

`{DIT}/`: a `PixArtAlphaPipeline` ({size:,} bytes, {weights:,} of them float16 safetensors): a
`PixArtTransformer2DModel` ({params["transformer"] / 1e6:.2f}M parameters; `ada_norm_single`, patch 2 over the
shipped toy VAE's 16×16×4 latents: an 8×8 token grid), a T5-v1.1-shaped `T5EncoderModel`
({params["text_encoder"] / 1e6:.2f}M) with a `T5Tokenizer` made offline over the world's words (one piece per word,
single characters as the fallback; check `len(tokenizer)` after loading: a tokenizer that silently failed to load has
a handful of tokens), the shipped toy VAE (frozen, its scaling factor) and PixArt-α's scheduler (DPM-Solver++
multistep, order 2, linear betas {DIT_BETAS["beta_start"]:g}–{DIT_BETAS["beta_end"]:g}). Loads with
`PixArtAlphaPipeline.from_pretrained("data/toyworld/dit")` (or the `dit` key of `model=toyworld` /
`model=toyworld_dit`) and runs with `use_resolution_binning=False, clean_caption=False`, 64 px.

- Text encoder: T5-shaped rather than the shipped CLIP text tower. The pipeline tokenizes to `max_sequence_length`
  (120 by default) and masks the padding, which T5's relative positions allow at any length; the CLIP tower has 77
  absolute positions (every caller would have to pass `max_sequence_length=77`) and is causal, so a colour word's
  embedding would not see the shape after it. The encoder is trained with the transformer (PixArt's T5-XXL is
  frozen; a frozen random encoder this small gives the denoiser little to read).
- ε-prediction only (`out_channels=4`): PixArt-α also learns Σ (8 output channels), which its DPM-Solver++ sampling
  never reads; the pipeline takes the first half of an 8-channel output and the whole of a 4-channel one, so callers
  treat both alike by the rule `out_channels == 2 × latent channels` (ours).
- Training (`emb toyworld train --stage {DIT}`, seed {config["seed"]}, steps scale {config["steps_scale"]}): from the
  shipped toy models only (no older stage retrained); {spec["steps"]} steps of batch {spec["batch_size"]}, AdamW lr
  {spec["lr"]:g} ({spec["warmup"]} warm-up steps, cosine to 10%), gradient clipping at 1, EMA {spec["ema_decay"]};
  every batch rendered on the fly from (seed, stage, step) in the training namespace; ε-MSE at uniform timesteps,
  min-SNR-5 weighted; 10% empty captions (classifier-free guidance); TokenCompose grounding as in the UNet stage
  ({GROUNDING_WEIGHT:g} × token term + {PIXEL_WEIGHT:g} × pixel term) on every layer's cross-attention at the 8×8
  token grid, since DiT4Edit takes its edit mask from this model's cross-attention of the edit words. Final loss
  (mean of the last 50 steps): {terms["loss"]:.4f} (denoising {terms.get("denoise", float("nan")):.4f}, token
  {terms.get("grounding", float("nan")):.4f}, pixel {terms.get("pixel", float("nan")):.4f}).
- Time: **{minutes:.1f} training minutes** ({summary["wall_seconds_this_invocation"] / 60:.1f} minutes wall with
  export and sample grid, {summary["cpu_seconds_this_invocation"] / 60:.1f} CPU-minutes), one thread under
  `nice -n 10` on {summary["machine"]}{commit}. `python bench/toyworld_train_time.py` projects it with the other
  stages.
{notes}
![DiT loss curve](dit_loss_curve.png)

Top row: rendered held-out scenes; bottom row: the transformer's images from their captions ({SAMPLE_STEPS} DPM-Solver++
steps, CFG {SAMPLE_GUIDANCE:g}, the pipeline's defaults).

![DiT samples](dit_samples.png)

Figures on held-out captions (`emb toyworld evidence --stage {DIT}`, `benchmark/toyworld/dit_evidence.py`; the bars
are the UNet's, on the same scenes and with the same toy CLIP):

{table}

generated_*_acc: images from {figures["n"]["generation"]} held-out captions ({SAMPLE_STEPS} steps, CFG
{SAMPLE_GUIDANCE:g}), each object's colour and shape classified zero-shot by the shipped toy CLIP among the caption's
variants; attention_mask_iou: {figures["n"]["attention"]} held-out scenes noised to strength 0.5 and denoised with
their captions (CFG {SAMPLE_GUIDANCE:g}); the object's colour and shape words' cross-attention at the 8×8 token grid,
min-max normalised, upsampled to 64 px, thresholded at 0.5, IoU with the object's exact mask. 95% intervals: Wilson's
for the accuracies, Student's t for the IoU.

```json
{arch}
```
"""


def ship_dit(run: Path, dest: Path = SHIPPED_DIR, figures: dict[str, Any] | None = None) -> Path:
    from benchmark.toyworld import CLIP
    from benchmark.toyworld.dit_evidence import dit_evidence

    run, dest = Path(run), Path(dest)
    if (dest / DIT).exists():
        shutil.rmtree(dest / DIT)
    shutil.copytree(run / "model" / DIT, dest / DIT)
    for name in ("dit_loss_curve.png", "dit_samples.png"):
        if (run / name).exists():
            shutil.copy2(run / name, dest / name)
    if figures is None:
        figures = dit_evidence(dest / DIT, dest / CLIP)
    figures = {**figures, "model": str(dest / DIT)}
    (dest / "dit_evidence.json").write_text(json.dumps({**figures, "model": "data/toyworld/dit"}, indent=2) + "\n")
    card = dest / CARD
    card.write_text(replace_section(card.read_text() if card.exists() else "", DIT, section_text(run, dest, figures)))
    return dest / DIT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--dest", default=str(SHIPPED_DIR))
    parser.add_argument("--figures", help="dit evidence JSON already computed for these weights")
    args = parser.parse_args()
    figures = json.loads(Path(args.figures).read_text()) if args.figures else None
    print(ship_dit(Path(args.run), Path(args.dest), figures))


if __name__ == "__main__":
    main()
