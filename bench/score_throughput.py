"""Scoring throughput: the harness's batched scoring vs a per-image loop over torchmetrics modules.

Both sides score the same N (source, edited) pairs of real photographs (scikit-image samples at ``--size``², masks
drawn as ellipses) with the same networks and get the same numbers (checked, max relative difference printed):

- per-image: PIE-Bench's evaluator, re-written from its formulas (``bench/pie_bench_reference.py``): for every pair
  and metric one call of a torchmetrics module (PSNR, SSIM, MSE, LPIPS-SqueezeNet), images converted and masked
  per call, PIE-Bench's metric names (``psnr``, ``psnr_unedit_part``, ``psnr_edit_part``, ...);
- batched: the harness's metrics as the ``pie_bench`` preset configures them (multiply rule, border rule), every
  region of a family in one call, ``batch_size`` pairs per call, networks loaded once.

``--full`` adds PIE-Bench's network metrics: CLIP similarity (whole, edit part, source image; open_clip ViT-L-14
architecture, random weights) and the structure distance (DINO ViT-B/8 architecture, random weights). These two are
dominated by large matrix products whose cost per image does not change with batching on a CPU, so the ratio is
lower with them; they are off by default to keep the run short.

Networks have random weights (real architectures; no download): the LPIPS backbone is written to a temporary
TORCH_HOME so torchmetrics loads the very same file the harness reads. Timings alternate the two sides
``--repeats`` times and keep each side's best run (other processes share the machine). ``--threads`` (default 1)
fixes torch's CPU threads for both sides: on a loaded 2-core machine two OpenMP threads spin-wait on each other,
which penalises the per-image loop's many small calls far more than the batched calls and would inflate the ratio.

The last line is ``throughput ratio: X.XX`` (per-image time / batched time).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchmark.metrics import build_metrics, prepare_metrics  # noqa: E402
from benchmark.metrics.base import ScoreContext, ScoreItem  # noqa: E402
from benchmark.types import EditOutput, EditSample  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
PIXEL_METRICS = [f"{m}{p}" for m in ("psnr", "lpips", "mse", "ssim") for p in ("", "_unedit_part", "_edit_part")]
NETWORK_METRICS = [
    "structure_distance",
    "clip_similarity_source_image",
    "clip_similarity_target_image",
    "clip_similarity_target_image_edit_part",
]


def make_pairs(n: int, size: int) -> list[ScoreItem]:
    """N pairs of photographs: an ellipse mask, another photo pasted inside it, a mild global change outside."""
    from skimage import data
    from skimage.draw import ellipse

    pics = [Image.fromarray(getattr(data, p)()[..., :3]).convert("RGB").resize((size, size)) for p in PHOTOS]
    items = []
    rng = np.random.default_rng(0)
    for i in range(n):
        src, other = pics[i % len(pics)], pics[(i + 3) % len(pics)]
        mask = np.zeros((size, size), dtype=bool)
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        rr, cc = ellipse(cy, cx, size * rng.uniform(0.1, 0.3), size * rng.uniform(0.1, 0.3), shape=mask.shape)
        mask[rr, cc] = True
        blurred = np.asarray(src.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
        edited = np.where(mask[..., None], np.asarray(other, dtype=np.float32), blurred * rng.uniform(0.9, 1.1))
        sample = EditSample(
            id=f"pair{i}",
            image=src,
            mask=mask,
            source_prompt=f"a photo of {PHOTOS[i % len(PHOTOS)]}",
            target_prompt=f"a photo of [{PHOTOS[(i + 3) % len(PHOTOS)]}]",
        )
        items.append(ScoreItem(sample, EditOutput(image=Image.fromarray(np.clip(edited, 0, 255).astype(np.uint8)))))
    return items


def harness_preset(weights: dict[str, str], full: bool, batch_size: int) -> dict:
    """The pie_bench preset's definitions, with every region PIE-Bench's evaluator can compute (CLIP and DINO
    networks are attached as modules afterwards, see ``main``)."""
    common = {"region": ["whole", "background", "edit"], "mode": "multiply", "mask_border": 1}
    metrics = [
        {"name": "psnr", "data_range": 1.0, **common},
        {"name": "lpips", "net": "squeeze", "backbone_weights": weights["squeeze"], **common},
        {"name": "mse", **common},
        {"name": "ssim", "data_range": 1.0, **common},
    ]
    if full:
        clip = {"model": "ViT-L-14-quickgelu", "scale": 100, "strip_brackets": True}
        metrics += [
            {"name": "structure_distance", "region": ["whole"], "pixel_scale": 255},
            {"name": "clip_score", "region": ["whole", "edit"], "mask_border": 1, "batch_size": batch_size, **clip},
            {"name": "clip_score", "image": "source", "region": ["whole"], "batch_size": batch_size, **clip},
        ]
    return {"batch_size": batch_size, "device": "cpu", "metrics": metrics}


def random_networks(folder: Path, full: bool) -> tuple[dict[str, str], tuple | None, torch.nn.Module | None]:
    """The LPIPS backbone as a file (both sides load it); CLIP ViT-L/14 and DINO ViT-B/8 as modules both share."""
    from benchmark.metrics import random_weights as rw

    files = {"squeeze": str(rw.lpips_backbone("squeeze", folder / "squeezenet1_1.pth"))}
    if not full:
        return files, None, None
    import open_clip
    import timm

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14-quickgelu", pretrained=None)
    clip = (model.eval().requires_grad_(False), preprocess, open_clip.get_tokenizer("ViT-L-14-quickgelu"))
    vit = timm.create_model("vit_base_patch8_224", num_classes=0, dynamic_img_size=True).eval().requires_grad_(False)
    return files, clip, vit


def run_batched(metrics: list, items: list[ScoreItem], batch_size: int) -> tuple[float, list[dict]]:
    rows: list[dict] = [{} for _ in items]
    t0 = time.perf_counter()
    for start in range(0, len(items), batch_size):
        batch = [ScoreItem(it.sample, it.output, it.record) for it in items[start : start + batch_size]]
        for m in metrics:
            for row, values in zip(rows[start : start + batch_size], m.update(batch), strict=True):
                row.update(values)
    return time.perf_counter() - t0, rows


def run_per_image(calc, names: list[str], items: list[ScoreItem]) -> tuple[float, list[dict]]:
    from pie_bench_reference import evaluate_pair

    rows = []
    t0 = time.perf_counter()
    for it in items:
        s = it.sample
        rows.append(evaluate_pair(calc, names, s.image, it.output.image, s.mask, s.source_prompt, s.target_prompt))
    return time.perf_counter() - t0, rows


def max_relative_difference(a: list[dict], b: list[dict]) -> tuple[float, str]:
    worst, where = 0.0, ""
    for ra, rb in zip(a, b, strict=True):
        for name, vb in rb.items():
            va = ra[name]
            if math.isnan(va) and math.isnan(vb):
                continue
            diff = abs(va - vb) / max(abs(vb), 1e-6)
            if diff > worst:
                worst, where = diff, f"{name}: {va:.7g} vs {vb:.7g}"
    return worst, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="image side (PIE-Bench: 512)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="add CLIP (ViT-L/14) and structure (DINO ViT-B/8)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = make_pairs(args.pairs, args.size)

    with tempfile.TemporaryDirectory(prefix="emb-bench-") as tmp:
        folder = Path(tmp)
        weights, clip, vit = random_networks(folder, args.full)
        # torchmetrics' LPIPS reads torchvision's cache: put the same backbone file there
        ckpt = folder / "torch_home" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(Path(weights["squeeze"]).read_bytes())
        os.environ["TORCH_HOME"] = str(folder / "torch_home")

        metrics = build_metrics(harness_preset(weights, args.full, args.batch_size))
        for m in metrics:  # the same module objects on both sides
            m.network = {"clip_score": clip, "structure_distance": vit}.get(m.name, m.network)
        metrics, _ = prepare_metrics(metrics, ScoreContext())
        from pie_bench_reference import PieBenchCalculator

        names = PIXEL_METRICS + (NETWORK_METRICS if args.full else [])
        calc = PieBenchCalculator(clip=clip, vit=vit)

        # warm-up both sides on two pairs (lazy initialisation, kernel selection), then alternate
        run_batched(metrics, items[:2], args.batch_size)
        run_per_image(calc, names, items[:2])
        per_image_times, batched_times = [], []
        for _ in range(args.repeats):
            t, reference_rows = run_per_image(calc, names, items)
            per_image_times.append(t)
            t, rows = run_batched(metrics, items, args.batch_size)
            batched_times.append(t)
    per_image, batched = min(per_image_times), min(batched_times)
    n_values = sum(len(r) for r in reference_rows)
    print(
        f"pairs: {args.pairs} at {args.size}x{args.size}, {n_values} values, threads {args.threads}, "
        f"{'with' if args.full else 'without'} CLIP/DINO"
    )
    print(f"per-image torchmetrics loop: {per_image:.2f} s ({args.pairs / per_image:.2f} pairs/s)")
    print(f"harness batched (batch {args.batch_size}): {batched:.2f} s ({args.pairs / batched:.2f} pairs/s)")
    worst, where = max_relative_difference(rows, reference_rows)
    print(f"max relative difference of the values: {worst:.2e} ({where})")
    print(f"throughput ratio: {per_image / batched:.2f}")


if __name__ == "__main__":
    main()
