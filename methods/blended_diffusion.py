"""Blended Diffusion (Avrahami et al., CVPR 2022): CLIP-guided local editing with an unconditional pixel-space model.

Follows the official code (omriav/blended-diffusion: optimization/image_editor.py, arguments.py, augmentations.py,
losses.py) on OpenAI's guided-diffusion ``256x256_diffusion_uncond.pt`` (``model=guided-diffusion-256-uncond``,
converted by ``emb convert guided-diffusion``):

- DDPM respaced to 100 steps (ADM's ``space_timesteps`` = diffusers' ``DDPMScheduler`` with ``linspace`` spacing),
  the first 25 skipped: the input is noised to the 26th step with ``add_noise`` and denoised for 75 steps;
- each step, classifier guidance on the mean (ADM's ``condition_mean``): mean += variance · ∇ₓ(−loss), where the
  loss is λ_clip · CLIP loss + λ_range · range loss (+ background LPIPS and L2 with ``background_preservation_loss``),
  all on the model's x̂0 (diffusers' ``pred_original_sample``) and differentiated through the model by autograd;
  the CLIP loss is the spherical distance 2·arcsin(‖x−y‖/2)² between the text embedding and the embeddings of 8
  views (the first unaugmented, the others random affine + perspective, kornia as in the official code) of
  mask · (x̂0·√(1−ᾱ_t) + x_t·(1−√(1−ᾱ_t))), averaged over views and summed over the batch;
- after each step, outside the mask, the sample is replaced by the input noised to the current step t:
  x ← x·m + q_sample(x0, t)·(1 − m) (the official ``postprocess_fn``, which noises to t, not t−1);
- the result is the last step's x̂0 with the input's pixels pasted back outside the mask (``enforce_background``);
  ``iterations`` × ``batch_size`` results (32) are ranked by the CLIP distance of the unaugmented masked result
  (lower is better; the official ranking feeds CLIP pixels in [0, 1] without its input normalisation, kept here) and
  the best is returned; every distance is in the sample's extras.

The official code evaluates the model twice per step on the same input (``p_sample``'s mean, then ``cond_fn``'s
gradient); one forward with autograd serves both here (the same output), so a step is one forward and one backward
evaluation per image (the harness counts them as ``nfe`` and ``grad_evals``). The guidance variance at t = 0 uses
ADM's clipped posterior variance (that of the next step), which diffusers' ``_get_variance`` does not: computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.adapter import EditContext, MethodAdapter, setting
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import resize_image, resize_mask
from methods.mask_source import MaskSource, MaskSourceSettings
from methods.sd_common import prompt_text
from methods.sd_settings import check_prompt_field

# augmentations.py: each view after the first gets RandomAffine(15°, translate 0.1, border) and RandomPerspective(0.7),
# each with probability 0.7 (fixed in the official code, not arguments)
AUG_DEGREES, AUG_TRANSLATE, AUG_DISTORTION, AUG_PROBABILITY = 15.0, 0.1, 0.7, 0.7


@dataclass(frozen=True)
class BlendedDiffusionSettings(MaskSourceSettings):
    """The official code's defaults (arguments.py, image_editor.py)."""

    num_inference_steps: int = setting(
        100, "official code", "timestep_respacing: DDPM steps respaced over the model's 1000 (linspace spacing)"
    )
    skip_timesteps: int = setting(25, "official code", "respaced steps skipped: the input is noised to the next one")
    clip_weight: float = setting(1000.0, "official code", "clip_guidance_lambda: weight of the CLIP loss")
    range_weight: float = setting(50.0, "official code", "range_lambda: weight of the loss on x̂0 outside [-1, 1]")
    background_preservation_loss: bool = setting(
        False, "official code", "add the background LPIPS (VGG) and L2 losses (off unless the flag is given)"
    )
    lpips_weight: float = setting(1000.0, "official code", "lpips_sim_lambda (with background_preservation_loss)")
    l2_weight: float = setting(10000.0, "official code", "l2_sim_lambda (with background_preservation_loss)")
    augmentations: int = setting(8, "official code", "aug_num: CLIP views per image, the first one unaugmented")
    batch_size: int = setting(4, "official code", "images sampled together in one iteration")
    iterations: int = setting(8, "official code", "iterations_num: batches sampled; all results are ranked")
    enforce_background: bool = setting(True, "official code", "paste the input's pixels back outside the mask")
    prompt: str = setting(
        "target_words",
        "paper",
        "the text guiding the masked region: target_words (the dataset's phrase for the new content, as the paper's "
        "prompts describe the region only) or a caption field (target_prompt...)",
    )
    clip_model: str = setting(
        "ViT-B-16-quickgelu", "official code", "open_clip name of the guide (the official CLIP ViT-B/16)"
    )
    clip_pretrained: str = setting("openai", "official code", "open_clip tag or checkpoint path of the guide")
    clip_from_model: bool = setting(
        True,
        "ours",
        "when the model config has a clip: folder (the toy world), guide with that CLIP instead of clip_model",
    )
    seed: int | None = setting(404, "official code", "torch seed of each edit; null: the run's per-sample seed")
    resolution: int | None = setting(None, "ours", "working resolution; null: the pixel model's sample_size")
    lpips_backbone_weights: str | None = setting(
        None, "ours", "VGG backbone file of the background LPIPS; null: torchvision's cache"
    )

    def check(self) -> None:
        super().check()
        if self.num_inference_steps < 2:
            raise ValueError(f"num_inference_steps={self.num_inference_steps}: must be at least 2")
        if not 0 <= self.skip_timesteps < self.num_inference_steps:
            raise ValueError(f"skip_timesteps={self.skip_timesteps}: must be in [0, num_inference_steps)")
        for key in ("augmentations", "batch_size", "iterations"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: must be at least 1")
        check_prompt_field("prompt", self.prompt)


# --- the official rules (losses.py, image_editor.py) -------------------------------------------------------------


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d_clip_loss: 2·arcsin(‖x̂ − ŷ‖/2)² of the L2-normalised embeddings (half the squared great-circle angle)."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def range_loss(x: torch.Tensor) -> torch.Tensor:
    """Per image: mean squared excess of the values outside [-1, 1]."""
    return (x - x.clamp(-1, 1)).pow(2).mean([1, 2, 3])


def views_loss(distances: torch.Tensor, batch: int) -> torch.Tensor:
    """The CLIP loss of a batch: views are stacked [all images' view 0, all images' view 1, ...]; the mean over
    each image's views, summed over images."""
    return sum(distances[i::batch].mean() for i in range(batch))


def clip_input(x0: torch.Tensor, x_t: torch.Tensor, alpha_cumprod: torch.Tensor) -> torch.Tensor:
    """What CLIP judges: x̂0·√(1−ᾱ_t) + x_t·(1−√(1−ᾱ_t)) (image_editor.py's cond_fn)."""
    fac = (1 - alpha_cumprod).sqrt()
    return x0 * fac + x_t * (1 - fac)


def blend(sample: torch.Tensor, noised_source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """postprocess_fn: the sample inside the mask, the source noised to the current step outside."""
    return sample * mask + noised_source * (1 - mask)


def blend_with_noised_source(
    x: torch.Tensor, source: torch.Tensor, m: torch.Tensor, scheduler: Any, t: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The step's sample inside the mask, outside it the source noised to the current step t with fresh noise (one
    draw for the batch, as the official code tiles one q_sample of the input)."""
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(source.shape, generator=generator, device=source.device, dtype=source.dtype)
    return blend(x, scheduler.add_noise(source, noise, t.reshape(1)), m)


def guidance_variance(scheduler: Any, t: int, predicted: torch.Tensor) -> torch.Tensor:
    """The variance ADM's condition_mean scales the gradient by, for the scheduler's ``variance_type``:
    ``learned_range``: exp(frac·log β_t + (1−frac)·log σ²), frac = (v + 1)/2 (``predicted`` = the model's variance
    channels), σ² the posterior variance of the respaced step, clipped at the last step (t → 0, where it is 0) to the
    next step's, as ADM's posterior_log_variance_clipped does; ``fixed_small``: σ² itself (0 at the last step);
    ``fixed_large``: β_t (the next step's σ² at the last step)."""
    timesteps = [int(s) for s in scheduler.timesteps]
    ac = scheduler.alphas_cumprod.to(predicted.device, torch.float64)

    def beta_and_posterior(step: int, prev: int) -> tuple[torch.Tensor, torch.Tensor]:
        a_prev = ac[prev] if prev >= 0 else torch.ones((), dtype=ac.dtype, device=ac.device)
        beta = 1 - ac[step] / a_prev
        return beta, beta * (1 - a_prev) / (1 - ac[step])

    index = timesteps.index(int(t))
    prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
    beta, posterior = beta_and_posterior(int(t), prev)
    if prev < 0:
        posterior = beta_and_posterior(timesteps[index - 1], int(t))[1]
    kind = scheduler.config.variance_type
    if kind == "fixed_small":
        return (posterior if prev >= 0 else torch.zeros_like(posterior)).to(predicted.dtype)
    if kind == "fixed_large":
        return (beta if prev >= 0 else posterior).to(predicted.dtype)
    if kind != "learned_range":
        raise ValueError(f"scheduler variance_type='{kind}': use learned_range, fixed_small or fixed_large")
    frac = (predicted.double() + 1) / 2
    return torch.exp(frac * beta.log() + (1 - frac) * posterior.log()).to(predicted.dtype)


def rank_results(distances: list[float]) -> list[int]:
    """Result indices from the lowest CLIP distance (the best) to the highest."""
    return sorted(range(len(distances)), key=lambda i: distances[i])


# --- the CLIP guide ----------------------------------------------------------------------------------------------


@dataclass
class ClipGuide:
    """An open_clip model as Blended Diffusion uses it: its input size and normalisation, and the text embedding."""

    model: Any
    tokenizer: Any
    size: int
    mean: torch.Tensor
    std: torch.Tensor

    def text_embedding(self, text: str, device: torch.device) -> torch.Tensor:
        with torch.no_grad():
            return self.model.encode_text(self.tokenizer([text]).to(device)).float()

    def embed(self, images01: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        x = (images01 - self.mean.to(images01)) / self.std.to(images01) if normalise else images01
        return self.model.encode_image(x).float()

    def ranking_distances(self, images01: torch.Tensor, mask: torch.Tensor, text: torch.Tensor) -> list[float]:
        """unaugmented_clip_distance of each image: mask · image in [0, 1], resized to CLIP's size (not
        normalised, as in the official code)."""
        from torchvision.transforms.functional import resize

        with torch.no_grad():
            x = resize(mask * images01, [self.size, self.size], antialias=True)
            return spherical_distance(self.embed(x, normalise=False), text).tolist()


def load_guide(models: Any, settings: BlendedDiffusionSettings, device: torch.device) -> ClipGuide:
    """The metric suite's open_clip loader: the model config's ``clip:`` folder (open_clip's folder layout with the
    bare model config ``<name>.json``) when it has one and ``clip_from_model``, else ``clip_model`` and
    ``clip_pretrained``."""
    from torchvision.transforms import Normalize

    from benchmark.metrics.clip_score import load_clip

    name, pretrained, model_config = settings.clip_model, settings.clip_pretrained, None
    if settings.clip_from_model and models.cfg.get("clip"):
        folder = Path(models.ident("clip"))
        configs = sorted(p for p in folder.glob("*.json") if p.name != "open_clip_config.json")
        if not configs:
            raise FileNotFoundError(f"model.clip='{folder}': no <model name>.json open_clip model config there")
        name, model_config = configs[0].stem, str(configs[0])
        pretrained = str(folder / "open_clip_model.safetensors")
    model, preprocess, tokenizer = load_clip(name, pretrained, model_config, device)
    norm = next(t for t in preprocess.transforms if isinstance(t, Normalize))
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    return ClipGuide(
        model, tokenizer, size, torch.tensor(norm.mean)[:, None, None], torch.tensor(norm.std)[:, None, None]
    )


def clip_views(images: torch.Tensor, count: int, size: int, augment: torch.nn.Module, seed: int) -> torch.Tensor:
    """ImageAugmentations: average-pooled to CLIP's size, ``count`` copies stacked [view 0 of every image, view 1...],
    the first copy clean, the others through ``augment`` (kornia, its random draws seeded by ``seed``)."""
    pooled = F.adaptive_avg_pool2d(images, (size, size))
    tiled = pooled.repeat(count, 1, 1, 1)
    batch = images.shape[0]
    if count == 1:
        return tiled
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        augmented = augment(tiled[batch:])
    return torch.cat([tiled[:batch], augmented])


# --- the adapter -------------------------------------------------------------------------------------------------


@METHODS.register("blended_diffusion")
class BlendedDiffusion(MethodAdapter):
    """Blended Diffusion: CLIP-guided editing inside a mask with an unconditional pixel-space diffusion model
    (official defaults: guided-diffusion 256×256 unconditional = model=guided-diffusion-256-uncond, 100 respaced
    DDPM steps skipping 25, CLIP ViT-B/16 with 8 views, λ_clip 1000, λ_range 50, 8 × 4 results ranked, seed 404)."""

    settings_class = BlendedDiffusionSettings
    settings: BlendedDiffusionSettings
    base_model = "guided-diffusion-256-uncond"
    produces_mask = True
    pipelines = ("pixel",)

    def __init__(self, models: Any = None, settings: BlendedDiffusionSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self.mask_source = MaskSource.from_settings(self.settings)
        self.needs_gt_mask = self.mask_source.needs_gt
        self._augment: torch.nn.Module | None = None

    def input_fingerprint(self, sample: EditSample) -> str | None:
        return self.mask_source.fingerprint(sample)

    def augmenter(self) -> torch.nn.Module:
        if self._augment is None:
            import kornia.augmentation as K

            self._augment = torch.nn.Sequential(
                K.RandomAffine(degrees=AUG_DEGREES, translate=AUG_TRANSLATE, p=AUG_PROBABILITY, padding_mode="border"),
                K.RandomPerspective(AUG_DISTORTION, p=AUG_PROBABILITY),
            )
        return self._augment

    def guided(self) -> bool:
        s = self.settings
        return bool(s.clip_weight or s.range_weight or s.background_preservation_loss)

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        mask = self.mask_source.load(sample)
        pipe = self.models.pipeline("pixel")
        device = pipe.unet.device
        res = int(s.resolution or pipe.unet.config.sample_size)
        source = pil_to_tensor(sample.image.convert("RGB").resize((res, res), Image.Resampling.LANCZOS), device)
        m = torch.from_numpy(resize_mask(mask.binary, (res, res)).astype(np.float32)).to(device)[None, None]
        guide = load_guide(self.models, s, device) if s.clip_weight else None
        text = guide.text_embedding(prompt_text(sample, s.prompt), device) if guide else None
        generator = torch.Generator(device=device).manual_seed(s.seed) if s.seed is not None else ctx.generator()
        results = torch.cat([self.sample_batch(pipe, source, m, guide, text, generator) for _ in range(s.iterations)])
        if s.enforce_background:
            results = source * (1 - m) + results * m
        results01 = results.add(1).div(2).clamp(0, 1)
        ranking_guide = guide or load_guide(self.models, s, device)
        if text is None:
            text = ranking_guide.text_embedding(prompt_text(sample, s.prompt), device)
        distances = ranking_guide.ranking_distances(results01, m, text)
        order = rank_results(distances)
        image = resize_image(tensor_to_pil(results01[order[0]]), sample.size)
        if s.enforce_background:  # exact input pixels outside the mask at the sample's own size
            image = Image.fromarray(np.where(mask.binary[..., None], np.asarray(image), np.asarray(sample.image)))
        return EditOutput(
            image=image,
            soft_mask=mask.soft,
            mask=mask.binary,
            extras={"mask_origin": mask.origin, "clip_distances": [round(distances[i], 6) for i in order]},
        )

    def sample_batch(
        self,
        pipe: Any,
        source: torch.Tensor,
        m: torch.Tensor,
        guide: ClipGuide | None,
        text: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """One p_sample_loop from the noised input: ``batch_size`` images, each the last step's x̂0."""
        from diffusers import DDPMScheduler
        from diffusers.utils.torch_utils import randn_tensor

        s = self.settings
        # ADM's sampling whatever the model's saved config says: space_timesteps = linspace spacing, and the official
        # clip_denoised=False (x̂0 unclipped, so the range loss sees its excess)
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace", clip_sample=False)
        scheduler.set_timesteps(s.num_inference_steps, device=source.device)
        timesteps = scheduler.timesteps[s.skip_timesteps :]
        shape = (s.batch_size, *source.shape[1:])
        noise = randn_tensor(shape, generator=generator, device=source.device, dtype=source.dtype)
        x = scheduler.add_noise(source.expand(shape), noise, timesteps[:1])
        x0 = source
        for t in timesteps:
            x, x0 = self.step(pipe.unet, scheduler, x, t, source, m, guide, text, generator)
            x = blend_with_noised_source(x, source, m, scheduler, t, generator)
        return x0

    def step(
        self,
        unet: Any,
        scheduler: Any,
        x: torch.Tensor,
        t: torch.Tensor,
        source: torch.Tensor,
        m: torch.Tensor,
        guide: ClipGuide | None,
        text: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDPM step with classifier guidance on the mean: (x_{t-1}, x̂0)."""
        guided = self.guided()
        with torch.set_grad_enabled(guided):
            x_in = x.detach().requires_grad_(guided)
            out = unet(x_in.to(unet.dtype), t).sample.float()
            step = scheduler.step(out, t, x_in, generator=generator)
            prev, x0 = step.prev_sample.detach(), step.pred_original_sample
            if guided:
                loss = self.loss(x0, x_in, scheduler.alphas_cumprod[int(t)].to(x), source, m, guide, text, generator)
                gradient = -torch.autograd.grad(loss, x_in)[0]
                variance = guidance_variance(scheduler, int(t), out[:, x.shape[1] :].detach())  # empty if fixed
                prev = prev + variance * gradient
        return prev.detach(), x0.detach()

    def loss(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        alpha_cumprod: torch.Tensor,
        source: torch.Tensor,
        m: torch.Tensor,
        guide: ClipGuide | None,
        text: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """cond_fn's loss: λ_clip · CLIP views loss + λ_range · range loss (+ background LPIPS and L2)."""
        s = self.settings
        x_in = clip_input(x0, x_t, alpha_cumprod)
        loss = torch.zeros((), device=x0.device)
        if s.clip_weight and guide is not None and text is not None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
            views = clip_views(x_in * m, s.augmentations, guide.size, self.augmenter(), seed).add(1).div(2)
            loss = loss + views_loss(spherical_distance(guide.embed(views), text), x0.shape[0]) * s.clip_weight
        if s.range_weight:
            loss = loss + range_loss(x0).sum() * s.range_weight
        if s.background_preservation_loss:
            background = x_in * (1 - m)
            if s.lpips_weight:
                from benchmark.metrics.lpips_distance import load_lpips

                net = load_lpips("vgg", s.lpips_backbone_weights, None, "0.1", x0.device)
                loss = loss + net(background, source.expand_as(background)).sum() * s.lpips_weight
            if s.l2_weight:  # the official target is the whole input, not its background
                loss = loss + F.mse_loss(background, source.expand_as(background)) * s.l2_weight
        return loss


def pil_to_tensor(image: Image.Image, device: torch.device) -> torch.Tensor:
    """(1, 3, H, W) float32 in [-1, 1]."""
    arr = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return arr[None].to(device).mul(2).sub(1)


def tensor_to_pil(image01: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] as an RGB image (torchvision's to_pil_image rounding: ×255, truncated)."""
    arr = image01.detach().float().cpu().mul(255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr)
