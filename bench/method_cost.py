"""Cost of each Stable-Diffusion editing method: NFE and wall-clock time per image.

Two settings, each method with its official defaults (conf/method/*.yaml):

1. the tiny model (model=tiny, 64 px): every method run in full, timed after a warm-up edit;
2. a Stable-Diffusion-1.5-sized model with random weights (the real UNet, VAE and CLIP text-encoder architectures,
   860M-parameter UNet; the 9-channel inpainting and 8-channel InstructPix2Pix UNets share its weights except the
   input convolution) at a small resolution (default 256 px → 32×32 latents). On a CPU a full default run of every
   method would take an hour, so each method is *run for real* with fewer steps (``--sd-steps``; diffedit_repo with
   one noise draw), every denoiser call timed by hooks; the time per image at the default configuration is then
   **extrapolated**: (calls of the default configuration per (UNet, batch size), counted exactly on the tiny model)
   × (the measured mean time of such a call in that method) + (VAE decodes of the default configuration) × (the
   measured mean time of a decode) + the rest of the measured time outside the denoiser (VAE encoder, text encoder,
   scheduler, masks; taken as independent of the step count). Both settings use DDIM as the
   model's own scheduler (methods that choose one, e.g. InstDiffEdit's LMS, use theirs); the SD 1.x checkpoints
   ship PNDM, which adds one call per pipeline run that keeps it (e.g. InstDiffEdit's inpainting pass: 51, not 50).

The last lines are the InstDiffEdit-vs-DiffEdit ratios in evaluations (batch rows), in denoiser calls and in time
(setting 2 unless ``--skip-sd``), against ``diffedit_repo`` (the baseline the InstDiffEdit paper timed: 5.9× in time,
10.8 s vs 64.0 s on an A30) and against diffusers' ``diffedit`` (one batched mask call), with a line saying which
count the paper's time ratio corresponds to. VAE decodes are timed and extrapolated like denoiser calls (the repo's
baseline decodes each of its 2 × 10 img2img passes). On a GPU every interval is measured with CUDA events (recorded
in stream order, read after one synchronisation), elsewhere with ``time.perf_counter``.

    python bench/method_cost.py [--methods instdiffedit diffedit ...] [--sd-resolution 256] [--sd-steps 4]
                                [--skip-sd] [--model-cache outputs/models]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmark.adapter import EditContext, build_method  # noqa: E402
from benchmark.datasets.synthetic import make_sample  # noqa: E402
from benchmark.models import ModelBundle, pipeline_class, synchronize  # noqa: E402
from benchmark.registry import METHODS  # noqa: E402

# every method that runs on a Stable-Diffusion-style UNet; names not registered (yet) are skipped with a note
BENCH_METHODS = [
    "instdiffedit",
    "diffedit",
    "diffedit_repo",
    "p2p",
    "sdedit",
    "instructpix2pix",
    "blended_latent",
    "gt_inpaint",
]
UNET_OF_KIND = {"text2img": 4, "img2img": 4, "diffedit": 4, "inpaint": 9, "instruct_pix2pix": 8}


@dataclass
class CallLog:
    """Denoiser calls of one edit, by (UNet input channels, batch rows): count and summed wall time."""

    calls: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[tuple[int, int], float] = field(default_factory=lambda: defaultdict(float))
    decodes: int = 0  # VAE decoder forwards (images decoded, one call each)
    decode_seconds: float = 0.0

    @property
    def n_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def n_evals(self) -> int:
        return sum(n * b for (_, b), n in self.calls.items())

    @property
    def denoiser_seconds(self) -> float:
        return sum(self.seconds.values())


class Clock:
    """Marks and measures intervals: CUDA events on a GPU (queued in stream order, so no synchronisation inside the
    timed work; read after one ``torch.cuda.synchronize``), ``time.perf_counter`` elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = torch.device(device).type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds
        return end - start


class CallTimer:
    """Forward hooks on every loaded denoiser and VAE decoder: counts calls and batch rows and times each call
    (``Clock``: CUDA events on a GPU). Intervals are resolved when the log is read (``reset``)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.clock = Clock(device)
        self.log = CallLog()
        self._seen: set[int] = set()
        self._start: dict[int, Any] = {}
        self._pending: list[tuple[tuple[int, int] | None, Any, Any]] = []  # (denoiser key or None: decode, start, end)

    def _hook(self, module: Any, key_of: Any) -> None:
        if id(module) in self._seen:
            return
        self._seen.add(id(module))

        def pre(mod: Any, args: tuple, kwargs: dict) -> None:
            self._start[id(mod)] = self.clock.mark()

        def post(mod: Any, args: tuple, kwargs: dict, out: Any) -> None:
            self._pending.append((key_of(args, kwargs), self._start.pop(id(mod)), self.clock.mark()))

        module.register_forward_pre_hook(pre, with_kwargs=True)
        module.register_forward_hook(post, with_kwargs=True)

    def attach_pipeline(self, pipe: Any) -> None:
        unet = getattr(pipe, "unet", None)
        if unet is not None:
            channels = int(unet.config.in_channels)
            self._hook(unet, lambda args, kwargs: (channels, int((args[0] if args else kwargs["sample"]).shape[0])))
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            self._hook(vae.decoder, lambda args, kwargs: None)

    def reset(self) -> CallLog:
        log, self.log = self.log, CallLog()
        for key, start, end in self._pending:
            seconds = self.clock.seconds(start, end)
            if key is None:
                log.decodes += 1
                log.decode_seconds += seconds
            else:
                log.calls[key] += 1
                log.seconds[key] += seconds
        self._pending.clear()
        return log


class RandomSDBundle(ModelBundle):
    """Stable-Diffusion-1.5-shaped pipelines with random weights, built in memory (no download, nothing saved)."""

    def __init__(self, resolution: int) -> None:
        super().__init__(
            OmegaConf.create({"name": "sd15-random", "resolution": resolution, "dtype": "float32", "device": "auto"})
        )
        self._parts: dict[str, Any] | None = None
        self._unets: dict[int, Any] = {}

    def parts(self) -> dict[str, Any]:
        if self._parts is None:
            from diffusers import AutoencoderKL, DDIMScheduler
            from transformers import CLIPTextConfig, CLIPTextModel

            from benchmark.models import load_clip_tokenizer, write_clip_tokenizer
            from benchmark.tiny_models import SD_BETAS, sd15_unet

            with tempfile.TemporaryDirectory() as tmp:
                tokenizer = load_clip_tokenizer(write_clip_tokenizer(Path(tmp) / "tok"))
            torch.manual_seed(0)
            text_encoder = CLIPTextModel(
                CLIPTextConfig(  # CLIP ViT-L/14's text tower (SD 1.x)
                    hidden_size=768,
                    intermediate_size=3072,
                    num_hidden_layers=12,
                    num_attention_heads=12,
                    vocab_size=len(tokenizer),
                    max_position_embeddings=77,
                    projection_dim=768,
                    hidden_act="quick_gelu",
                    bos_token_id=49406,
                    eos_token_id=49407,
                    pad_token_id=49407,
                )
            )
            vae = AutoencoderKL(  # SD 1.x's VAE
                in_channels=3,
                out_channels=3,
                latent_channels=4,
                block_out_channels=(128, 256, 512, 512),
                layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                norm_num_groups=32,
                sample_size=512,
            )
            # DDIM like the tiny model, so both settings make the same calls (the SD 1.x checkpoints ship PNDM,
            # whose PLMS warm-up adds one call per run of a pipeline that keeps the model's scheduler)
            scheduler = DDIMScheduler(**SD_BETAS)
            self._unets[4] = sd15_unet(4)
            self._parts = {
                "tokenizer": tokenizer,
                "text_encoder": text_encoder.to(self.device),
                "vae": vae.to(self.device),
                "scheduler": scheduler,
            }
            self._unets[4].to(self.device)
        return self._parts

    def unet(self, channels: int) -> Any:
        """The 4-channel UNet, or a wider-input one sharing all its weights except ``conv_in``."""
        self.parts()
        if channels not in self._unets:
            from diffusers import UNet2DConditionModel

            base = self._unets[4]
            with torch.device("meta"):
                wide = UNet2DConditionModel.from_config({**base.config, "in_channels": channels})
            for name, child in base.named_children():
                if name != "conv_in":
                    setattr(wide, name, child)
            wide.conv_in = torch.nn.Conv2d(channels, base.conv_in.out_channels, 3, padding=1).to(self.device)
            assert not any(p.is_meta for p in wide.parameters())
            self._unets[channels] = wide
        return self._unets[channels]

    def pipeline(self, kind: str) -> Any:
        if kind in self._pipes:
            return self._pipes[kind]
        from diffusers import DDIMInverseScheduler

        parts = self.parts()
        kwargs = dict(
            parts,
            unet=self.unet(UNET_OF_KIND[kind]),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        if kind == "diffedit":
            kwargs["inverse_scheduler"] = DDIMInverseScheduler.from_config(parts["scheduler"].config)
        pipe = pipeline_class(kind)(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        for hook in self.on_load:
            hook(pipe)
        self._pipes[kind] = pipe
        return pipe


def method_config(name: str, overrides: dict[str, Any]) -> Any:
    cfg = OmegaConf.load(ROOT / "conf" / "method" / f"{name}.yaml")
    for key, value in overrides.items():
        if key in cfg:
            cfg[key] = value
    return cfg


def reduced(name: str, steps: int) -> dict[str, Any]:
    """Overrides for a cheap real run: fewer steps (and one noise draw for diffedit_repo)."""
    out: dict[str, Any] = {"num_inference_steps": steps}
    if name == "diffedit_repo":
        out["num_draws"] = 1
    return out


def timed_edit(method: Any, bundle: ModelBundle, timer: CallTimer, seed: int = 0) -> tuple[float, CallLog]:
    sample = make_sample(seed=0, index=0)
    for kind in method.pipelines:
        bundle.pipeline(kind)  # loaded before the clock starts
    synchronize(bundle.device)
    timer.reset()
    start = timer.clock.mark()
    method.edit(sample, EditContext(seed=seed, device=bundle.device))
    end = timer.clock.mark()
    seconds = timer.clock.seconds(start, end)
    return seconds, timer.reset()


@dataclass
class Row:
    method: str
    calls: int = 0
    evals: int = 0
    tiny_s: float = float("nan")
    default_log: CallLog | None = None
    sd_steps: int = 0
    sd_measured_s: float = float("nan")
    sd_measured_calls: int = 0
    sd_per_call: dict[tuple[int, int], float] = field(default_factory=dict)
    sd_default_s: float = float("nan")


def bench_tiny(names: list[str], model_cache: Path) -> dict[str, Row]:
    bundle = ModelBundle(OmegaConf.load(ROOT / "conf" / "model" / "tiny.yaml"), cache_dir=model_cache)
    timer = CallTimer(bundle.device)
    bundle.on_load.append(timer.attach_pipeline)
    rows = {}
    for name in names:
        warm = build_method(method_config(name, reduced(name, 2)), bundle)
        timed_edit(warm, bundle, timer)  # loads the pipelines, warms the kernels
        seconds, log = timed_edit(build_method(method_config(name, {}), bundle), bundle, timer)
        rows[name] = Row(name, log.n_calls, log.n_evals, seconds, log)
        print(f"  tiny  {name:16s} {log.n_calls:5d} calls {log.n_evals:6d} evals {seconds:8.2f} s", flush=True)
    return rows


def bench_sd(names: list[str], rows: dict[str, Row], resolution: int, steps: int) -> None:
    bundle = RandomSDBundle(resolution)
    timer = CallTimer(bundle.device)
    bundle.on_load.append(timer.attach_pipeline)
    pipe = bundle.pipeline("text2img")
    with torch.no_grad():  # warm-up call: allocator and kernel selection
        lat = torch.randn(1, 4, resolution // 8, resolution // 8, device=bundle.device)
        pipe.unet(lat, 500, encoder_hidden_states=torch.randn(1, 77, 768, device=bundle.device))
    for name in names:
        method = build_method(method_config(name, reduced(name, steps)), bundle)
        seconds, log = timed_edit(method, bundle, timer)
        row = rows[name]
        row.sd_steps, row.sd_measured_s, row.sd_measured_calls = steps, seconds, log.n_calls
        row.sd_per_call = {k: log.seconds[k] / n for k, n in log.calls.items()}
        outside = seconds - log.denoiser_seconds - log.decode_seconds
        per_decode = log.decode_seconds / log.decodes if log.decodes else 0.0
        default = row.default_log
        missing = [k for k in default.calls if k not in row.sd_per_call]
        if missing:  # not expected: the reduced run makes the same kinds of calls
            print(f"  note: {name}: no measured call of (channels, batch) {missing}; extrapolation skipped")
        else:
            calls_s = sum(n * row.sd_per_call[k] for k, n in default.calls.items())
            row.sd_default_s = outside + calls_s + default.decodes * per_decode
        print(
            f"  sd    {name:16s} {log.n_calls:5d} calls measured in {seconds:7.1f} s "
            f"(denoiser {log.denoiser_seconds:6.1f} s) → defaults ≈ {row.sd_default_s:7.1f} s",
            flush=True,
        )


def table(rows: dict[str, Row], resolution: int, skip_sd: bool) -> str:
    import pandas as pd

    records = []
    for r in rows.values():
        rec = {"method": r.method, "NFE calls": r.calls, "NFE evals": r.evals, "tiny s/img": round(r.tiny_s, 3)}
        if not skip_sd:
            per_call = ", ".join(
                f"b{b}{'' if c == 4 else f'/{c}ch'}: {s:.2f}" for (c, b), s in sorted(r.sd_per_call.items())
            )
            rec.update(
                {
                    f"SD@{resolution} measured (steps, calls, s)": f"{r.sd_steps}, {r.sd_measured_calls}, "
                    f"{r.sd_measured_s:.1f}",
                    f"SD@{resolution} s/call by batch": per_call,
                    f"SD@{resolution} s/img defaults (extrapolated)": round(r.sd_default_s, 1),
                }
            )
        records.append(rec)
    return pd.DataFrame(records).to_markdown(index=False)


@dataclass(frozen=True)
class Speedup:
    """Baseline cost / InstDiffEdit cost per image, three ways."""

    evals: float  # denoiser evaluations (batch rows): a CFG call on 3 seeds counts 6
    calls: float  # denoiser forward calls, whatever their batch
    time: float


def speedup(rows: dict[str, Row], baseline: str, skip_sd: bool) -> Speedup:
    a, b = rows["instdiffedit"], rows[baseline]
    t_a, t_b = (a.tiny_s, b.tiny_s) if skip_sd else (a.sd_default_s, b.sd_default_s)
    return Speedup(b.evals / a.evals, b.calls / a.calls, t_b / t_a)


# Which count the paper's time ratio follows (InstDiffEdit: 25 calls of 6 rows = 150 evaluations; the repo's DiffEdit:
# 500 calls of 2 rows = 1000; both then inpaint with 50 calls of 2 rows).
PAPER_RATIO_NOTE = (
    "the paper's 5.9 (64.0 s / 10.8 s on an A30, SD at 512 px) is a time ratio and corresponds to evaluations: on a "
    "GPU at 512 px a UNet call's time grows with its batch rows, so InstDiffEdit's one call on 3 seeds x CFG (6 rows) "
    "costs about three of the baseline's 2-row calls; the calls ratio would hold only if a 6-row call cost the same "
    "as a 2-row one (latency-bound: small models, CPU). The paper's ratio sits above the evaluations ratio because "
    "the official inpainting pass runs in float16 (cheaper rows, in both methods' denominators) and the baseline "
    "decodes 20 images"
)


def bench_blended_diffusion(rows: dict[str, Row], model_cache: Path, skip_sd: bool) -> None:
    """Blended Diffusion beside Blended Latent Diffusion: forward and backward NFE per image at the official defaults
    and seconds per image on the tiny pixel model (model=tiny_pixel, 64 px). Its 8 iterations are alike, so one is
    run and timed and the time multiplied by 8 (the NFE are counted on that run and multiplied likewise). Without
    ``--skip-sd``: the time of one forward + backward of the real ADM 256×256 UNet (552M parameters, random weights)
    at batch 1, × the 75 · 32 guided steps of an image (the UNet only, CLIP's views excluded)."""
    from benchmark.nfe import NFECounter

    if "blended_diffusion" not in METHODS.names():
        print("note: method 'blended_diffusion' is not registered in this checkout: skipped")
        return
    bundle = ModelBundle(OmegaConf.load(ROOT / "conf" / "model" / "tiny_pixel.yaml"), cache_dir=model_cache)
    defaults = build_method(method_config("blended_diffusion", {}), bundle).settings
    one = build_method(method_config("blended_diffusion", {"iterations": 1}), bundle)
    counter = NFECounter()
    bundle.on_load.append(counter.attach_pipeline)
    sample = make_sample(seed=0, index=0)
    with torch.enable_grad():
        warm = {"num_inference_steps": 4, "skip_timesteps": 1, "iterations": 1, "batch_size": 1}
        build_method(method_config("blended_diffusion", warm), bundle).edit(
            sample, EditContext(seed=0, device=bundle.device)
        )  # warm-up: loads the UNet and CLIP
        counter.reset()
        synchronize(bundle.device)
        t0 = time.perf_counter()
        one.edit(sample, EditContext(seed=0, device=bundle.device))
        synchronize(bundle.device)
    n = defaults.iterations
    seconds, forward, backward = (
        n * (time.perf_counter() - t0),
        n * counter.evaluations,
        n * counter.grad_evals,
    )
    print("\nblended_diffusion (pixel space, CLIP-guided) beside blended_latent, official defaults, per image:")
    print(
        f"  blended_diffusion tiny_pixel: NFE forward {forward}, backward {backward}, {seconds:.1f} s (one of {n} "
        f"iterations, ×{n})"
    )
    if "blended_latent" in rows:
        r = rows["blended_latent"]
        print(f"  blended_latent    tiny:       NFE forward {r.evals}, backward 0, {r.tiny_s:.2f} s")
    if skip_sd:
        return
    from diffusers import UNet2DModel

    from benchmark.guided_diffusion import AdmArchitecture, unet_config

    arch = AdmArchitecture()
    torch.manual_seed(0)
    unet = UNet2DModel(**unet_config(arch)).to(bundle.device).requires_grad_(False)
    x = torch.randn(1, 3, arch.image_size, arch.image_size, device=bundle.device, requires_grad=True)
    with torch.enable_grad():
        synchronize(bundle.device)
        t0 = time.perf_counter()
        unet(x, 500).sample.square().sum().backward()
        synchronize(bundle.device)
    step = time.perf_counter() - t0
    steps = (defaults.num_inference_steps - defaults.skip_timesteps) * defaults.iterations * defaults.batch_size
    print(f"  blended_diffusion ADM-256 UNet: {step:.1f} s per forward+backward → ≈ {step * steps:.0f} s per image")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=BENCH_METHODS)
    parser.add_argument("--sd-resolution", type=int, default=256)
    parser.add_argument("--sd-steps", type=int, default=4, help="steps of the real SD-sized runs (default 4)")
    parser.add_argument("--skip-sd", action="store_true", help="tiny model only (times are then the tiny model's)")
    parser.add_argument(
        "--tiny-threads",
        type=int,
        default=1,
        help="torch threads for the tiny model (1: its tiny ops are slower with thread sync)",
    )
    parser.add_argument("--model-cache", default=os.environ.get("EMB_MODEL_CACHE", str(ROOT / "outputs" / "models")))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("emb").setLevel(logging.ERROR)  # "defaults are for model=sd14" is expected here
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    known = set(METHODS.names())
    names = []
    for name in args.methods:
        if name not in known or not (ROOT / "conf" / "method" / f"{name}.yaml").exists():
            print(f"note: method '{name}' is not registered in this checkout: skipped")
        else:
            names.append(name)
    torch.set_grad_enabled(False)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.tiny_threads)
    print(f"tiny model (64 px), official defaults; torch threads {torch.get_num_threads()}", flush=True)
    rows = bench_tiny(names, Path(args.model_cache))
    torch.set_num_threads(threads)
    if not args.skip_sd:
        print(
            f"SD-1.5-sized UNet/VAE/text encoder, random weights, {args.sd_resolution} px "
            f"(latent {args.sd_resolution // 8}); real runs at {args.sd_steps} steps, extrapolated to defaults; "
            f"torch threads {threads}",
            flush=True,
        )
        bench_sd(names, rows, args.sd_resolution, args.sd_steps)
    bench_blended_diffusion(rows, Path(args.model_cache), args.skip_sd)  # beside blended_latent's row
    print()
    print(table(rows, args.sd_resolution, args.skip_sd))
    print()
    where = "tiny model" if args.skip_sd else f"SD-1.5-sized model at {args.sd_resolution} px, extrapolated"
    print(f"times: {where}; NFE: per-image denoiser evaluations (a CFG call on a batch of 2 counts 2)")
    clock = "CUDA events" if torch.cuda.is_available() else "perf_counter"
    for baseline, what in (
        ("diffedit_repo", "the DiffEdit baseline the paper timed; paper: time 5.9"),
        ("diffedit", "diffusers' DiffEdit, one batched mask call"),
    ):
        if "instdiffedit" in rows and baseline in rows:
            r = speedup(rows, baseline, args.skip_sd)
            print(
                f"instdiffedit speedup vs {baseline} ({what}): evaluations (batch rows) {r.evals:.1f}, "
                f"denoiser calls {r.calls:.1f}, time {r.time:.1f} ({clock})"
            )
    if "instdiffedit" in rows and "diffedit_repo" in rows:
        print(PAPER_RATIO_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
