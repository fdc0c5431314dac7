"""SDEdit (Meng et al., ICLR 2022): noise the image part-way and denoise it with the target prompt (img2img).

Run through diffusers' ``StableDiffusionImg2ImgPipeline``. Defaults = the SDEdit baseline of the InstDiffEdit repo
(model/sdedit.py): SD 1.4, LMS, 50 steps, strength 0.5, CFG 7.5, but the target caption as prompt: that script
conditioned on the list file's replacement text, which only Editing-Mask has (``prompt=official_prompt``). No mask.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import resize_image
from methods.sd_common import PROMPT_FIELDS, model_resolution, prompt_text, with_scheduler


@METHODS.register("sdedit")
class SDEdit(MethodAdapter):
    name = "sdedit"
    pipelines = ("img2img",)

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        strength: float = 0.5,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        prompt: str = "target_prompt",
        scheduler: str | None = "LMSDiscreteScheduler",
        scheduler_config: dict | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        if not 0.0 < float(strength) <= 1.0:
            raise ValueError(f"sdedit.strength={strength}: must be in (0, 1]")
        self.steps, self.strength, self.guidance = int(num_inference_steps), float(strength), float(guidance_scale)
        if prompt not in PROMPT_FIELDS:
            raise ValueError(f"sdedit.prompt='{prompt}': use one of {', '.join(PROMPT_FIELDS)}")
        self.negative_prompt, self.prompt_field = negative_prompt, prompt
        self.scheduler_name, self.scheduler_config = scheduler, dict(scheduler_config or {})
        self.resolution = resolution
        self._pipe = None

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        if self._pipe is None:
            self._pipe = with_scheduler(self.models.pipeline("img2img"), self.scheduler_name, self.scheduler_config)
        res = model_resolution(self.resolution, self.models)
        out = self._pipe(
            prompt=prompt_text(sample, self.prompt_field),
            negative_prompt=self.negative_prompt,
            image=resize_image(sample.image, (res, res)),
            strength=self.strength,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=ctx.generator(),
        ).images[0]
        return EditOutput(image=resize_image(out, sample.size))
