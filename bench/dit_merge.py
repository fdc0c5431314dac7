"""Patch (token) merging in DiT4Edit's self-attention: seconds per denoiser call and per edit at merge ratios 0, 0.5
and 0.8, and the output difference each ratio causes.

The transformer is PixArt-XL-2-shaped with random weights (``PixArtTransformer2DModel``: full width 1152 = 16 heads
× 72, T5-XXL caption width 4096, patch 2, ``ada_norm_single``), with ``--layers`` of its 28 blocks, at the token
counts of 512 px (64×64 latents → 1,024 tokens) and 1024 px (128×128 latents → 4,096 tokens, with the multi-aspect
micro-conditions). The ratios are timed side by side in one run, round-robin, on one batch row, after a warm-up round;
the fastest call of each counts (synchronised on a GPU). Seconds per edit are **extrapolated** from the per-call time:
per call × 28 / layers × (N + 4·N) batch rows at the default N = 30 steps (inversion: 1 row per step; the edit: 4),
so the blocks' share of a call is assumed to dominate (the patch embedding, caption projection and final layer are
small). The difference is ‖out_r − out_0‖ / ‖out_0‖ over the predicted noise. The last line is the speedup at 0.8
of the 1024-px call.

    nice -n 10 python bench/dit_merge.py [--layers 1] [--repeats 3] [--device auto] [--dtype auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmark.models import quiet_hub_progress, resolve_device, resolve_dtype, synchronize  # noqa: E402
from methods.dit_attention import DiTAttentionState, install_dit_attention  # noqa: E402
from methods.pixart_common import MAX_TOKENS, TextCond, predict_noise, token_grid  # noqa: E402

RATIOS = (0.0, 0.5, 0.8)
PIXART_DEPTH = 28
EDIT_ROWS_PER_STEP = 1 + 4  # inversion row + [uncond, cond] × [source, target]
DEFAULT_STEPS = 30


def pixart_xl2(layers: int, sample_size: int, device: torch.device, dtype: torch.dtype):
    """PixArt-XL-2's transformer configuration (PixArt-alpha/PixArt-XL-2-512x512 and -1024-MS) with ``layers``
    blocks and random weights."""
    from diffusers import PixArtTransformer2DModel

    from benchmark.tiny_models import PIXART_BLOCKS

    torch.manual_seed(0)
    model = PixArtTransformer2DModel(
        **PIXART_BLOCKS,
        sample_size=sample_size,
        num_layers=layers,
        attention_head_dim=72,
        num_attention_heads=16,
        caption_channels=4096,
        cross_attention_dim=1152,
        out_channels=8,
        use_additional_conditions=sample_size == 128,
    )
    return model.to(device=device, dtype=dtype).eval()


def call(model, latents: torch.Tensor, text: TextCond, image_side: int) -> tuple[float, torch.Tensor]:
    """Seconds of one denoiser call (synchronised) and its output."""
    t = torch.tensor(500, device=latents.device)
    synchronize(latents.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = predict_noise(model, latents, t, text, None, 1.0, (image_side, image_side))
    synchronize(latents.device)
    return time.perf_counter() - start, out.float()


def bench_resolution(side: int, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """The ratios timed round-robin (one warm-up round, then ``repeats`` rounds; the fastest call of each ratio
    counts), so a load change on a shared machine hits every ratio alike."""
    latent = side // 8
    model = pixart_xl2(args.layers, latent, device, dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(1, 4, latent, latent, generator=gen).to(device, dtype)
    text = TextCond(
        torch.randn(1, MAX_TOKENS, 4096, generator=gen).to(device, dtype),
        torch.cat([torch.ones(1, 12), torch.zeros(1, MAX_TOKENS - 12)], 1).to(device),
    )
    grid = token_grid(model, (latent, latent))
    states = {ratio: DiTAttentionState(grid, merge_ratio=ratio) for ratio in RATIOS}
    seconds: dict[float, list[float]] = {ratio: [] for ratio in RATIOS}
    outputs: dict[float, torch.Tensor] = {}
    for round_ in range(args.repeats + 1):
        for ratio, state in states.items():
            with install_dit_attention(model, state):
                took, outputs[ratio] = call(model, latents, text, side)
            if round_ > 0:
                seconds[ratio].append(took)
    rows = []
    for ratio in RATIOS:
        best = min(seconds[ratio])
        diff = float((outputs[ratio] - outputs[0.0]).norm() / outputs[0.0].norm())
        per_edit = best * PIXART_DEPTH / args.layers * EDIT_ROWS_PER_STEP * DEFAULT_STEPS
        kept = grid[0] * grid[1] - states[ratio].merged_tokens
        rows.append({"side": side, "ratio": ratio, "call_s": best, "edit_s": per_edit, "diff": diff})
        print(
            f"| {side:>5} | {grid[0] * grid[1]:>6} | {ratio:>5.1f} | {kept:>6} | {best:>9.3f} | "
            f"{per_edit:>12.0f} | {min(seconds[0.0]) / best:>7.2f} | {diff:>9.4f} |",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=1, help="transformer blocks of PixArt-XL-2's 28 (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after a warm-up (fastest counts)")
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024], help="image sides (px)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    quiet_hub_progress()
    device = resolve_device(args.device, "--device")
    dtype = resolve_dtype(args.dtype, device)
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(
        f"PixArt-XL-2-shaped transformer, random weights, {args.layers} of {PIXART_DEPTH} blocks, {device}, "
        f"{str(dtype).replace('torch.', '')}, {torch.get_num_threads()} thread(s), batch 1, "
        f"fastest of {args.repeats} rounds"
    )
    print(
        f"per edit (est.) = per call x {PIXART_DEPTH}/{args.layers} x {EDIT_ROWS_PER_STEP} rows x {DEFAULT_STEPS} steps"
    )
    print("|  side | tokens | ratio |   kept | s/call    | s/edit (est.) | speedup | rel. diff |")
    print("|------:|-------:|------:|-------:|----------:|-------------:|--------:|----------:|")
    results = [row for side in args.sides for row in bench_resolution(side, args, device, dtype)]
    last_side = max(args.sides)
    base = next(r for r in results if r["side"] == last_side and r["ratio"] == 0.0)
    top = next(r for r in results if r["side"] == last_side and r["ratio"] == 0.8)
    print(f"({last_side} px per denoiser call)")
    print(f"patch merging speedup at 0.8: {base['call_s'] / top['call_s']:.1f}")


if __name__ == "__main__":
    main()
