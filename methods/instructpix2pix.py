"""InstructPix2Pix (Brooks et al., CVPR 2023): edit by a written instruction, conditioned on the source image.

Run through diffusers' ``StableDiffusionInstructPix2PixPipeline`` with the model timbrooks/instruct-pix2pix
(model=instruct-pix2pix) and its defaults: 100 steps, text CFG 7.5, image CFG 1.5, the model's own scheduler
(Euler ancestral). Needs ``sample.instruction``; produces no mask.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import resize_image
from methods.sd_common import model_resolution, with_scheduler


@METHODS.register("instructpix2pix")
class InstructPix2Pix(MethodAdapter):
    name = "instructpix2pix"
    needs_instruction = True
    pipelines = ("instruct_pix2pix",)

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 100,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        negative_prompt: str = "",
        scheduler: str | None = None,
        scheduler_config: dict | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        self.steps, self.guidance = int(num_inference_steps), float(guidance_scale)
        self.image_guidance = float(image_guidance_scale)
        self.negative_prompt = negative_prompt
        self.scheduler_name, self.scheduler_config = scheduler, dict(scheduler_config or {})
        self.resolution = resolution
        self._pipe = None

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        if self._pipe is None:
            self._pipe = with_scheduler(
                self.models.pipeline("instruct_pix2pix"), self.scheduler_name, self.scheduler_config
            )
        res = model_resolution(self.resolution, self.models)
        out = self._pipe(
            prompt=sample.instruction,
            negative_prompt=self.negative_prompt,
            image=resize_image(sample.image, (res, res)),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            image_guidance_scale=self.image_guidance,
            generator=ctx.generator(),
        ).images[0]
        return EditOutput(image=resize_image(out, sample.size))
