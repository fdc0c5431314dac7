"""The settings the Stable-Diffusion adapters share, declared once (``benchmark.adapter``, "Settings").

``SDSettings`` holds what every SD adapter has (steps, guidance, working resolution); ``NegativePromptSettings`` and
``SchedulerSettings`` add the negative prompt and the choice of sampler for the adapters that take them (P2P samples
with its own DDIM, DiffEdit's pipeline has no negative prompt in its config, and so on). An adapter's settings class
extends the ones it has, e.g. ``class SDEditSettings(SchedulerSettings, NegativePromptSettings, SDSettings)``, and
redeclares a field only where that method's official default differs (``scheduler``), keeping the field's doc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.adapter import MethodSettings, setting
from benchmark.models import scheduler_class
from methods.sd_common import PROMPT_FIELDS

# The sampler of the InstDiffEdit repo's scripts (its InstDiffEdit, DiffEdit and SDEdit baselines):
# LMSDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"), the class's own defaults
# for the rest, which differ from SD 1.4's scheduler config in these two keys.
LMS = "LMSDiscreteScheduler"
LMS_CONFIG = {"timestep_spacing": "linspace", "steps_offset": 0}
LMS_CONFIG_DOC = "the keys where the repo's LMSDiscreteScheduler(...) differs from SD 1.4's scheduler config"


def check_prompt_field(key: str, value: str) -> None:
    """A setting naming which text of a sample a method conditions on (``methods.sd_common.prompt_text``)."""
    if value not in PROMPT_FIELDS:
        raise ValueError(f"{key}='{value}': use one of {', '.join(PROMPT_FIELDS)}")


@dataclass(frozen=True)
class SDSettings(MethodSettings):
    """Settings every Stable-Diffusion adapter has. 50 steps and guidance 7.5 are Stable Diffusion's own sampling
    defaults (the CompVis scripts, diffusers' pipelines), which each method's official code keeps unless its
    settings class says otherwise."""

    num_inference_steps: int = setting(50, "official code", "denoising steps of the full schedule")
    guidance_scale: float = setting(
        7.5, "official code", "classifier-free guidance scale; 1: no guidance (one batch row per image and step)"
    )
    resolution: int | None = setting(
        None, "ours", "image side fed to the model; null: the model config's resolution (512 for SD 1.x)"
    )


@dataclass(frozen=True)
class NegativePromptSettings(MethodSettings):
    """The negative prompt, for the adapters whose guidance takes one."""

    negative_prompt: str = setting("", "official code", "text of the unconditional guidance branch ('': empty prompt)")


@dataclass(frozen=True)
class SchedulerSettings(MethodSettings):
    """The sampler, for the adapters whose official code picks one; checked when the method is built."""

    scheduler: str | None = setting(
        None,
        "official code",
        "diffusers scheduler class, built from the model's scheduler config (same betas); null: the model's own",
    )
    scheduler_config: dict[str, Any] = setting(
        {}, "official code", "scheduler config keys set over the model's (e.g. timestep_spacing, steps_offset)"
    )

    def check(self) -> None:
        super().check()
        if self.scheduler:
            # a misspelt sampler is one line when the method is built, not a failure in every sample
            scheduler_class(self.scheduler, "scheduler")


@dataclass(frozen=True)
class InpaintPassSettings(SDSettings):
    """The SD inpainting pass of the mask-then-inpaint methods (InstDiffEdit and the DiffEdit of its repo)."""

    mask_only: bool = setting(False, "ours", "true: stop after the mask (no inpainting pass, no edited image)")
    inpaint_num_inference_steps: int | None = setting(
        None, "official code", "null: num_inference_steps (official: the inpainting pipeline's default 50)"
    )
    inpaint_guidance_scale: float = setting(7.5, "official code", "CFG scale of the inpainting pass")

    @property
    def inpaint_steps(self) -> int:
        return int(self.inpaint_num_inference_steps or self.num_inference_steps)
