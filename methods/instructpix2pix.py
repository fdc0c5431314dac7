"""InstructPix2Pix (Brooks et al., CVPR 2023): edit by a written instruction, conditioned on the source image.

Run through diffusers' ``StableDiffusionInstructPix2PixPipeline`` with the model timbrooks/instruct-pix2pix
(model=instruct-pix2pix) and its defaults: 100 steps, text CFG 7.5, image CFG 1.5, the model's own scheduler
(Euler ancestral). Needs ``sample.instruction``; produces no mask. The image is prepared as ``edit_cli.py`` does
(``methods.image_framing.ip2p_framing``: aspect kept, sides multiples of 64, the longer near ``resolution``) and the
edit is mapped back to the sample's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark.adapter import EditContext, MethodAdapter, setting
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_framing import ip2p_framing
from methods.sd_common import model_resolution, with_scheduler
from methods.sd_settings import NegativePromptSettings, SchedulerSettings, SDSettings


@dataclass(frozen=True)
class InstructPix2PixSettings(SchedulerSettings, NegativePromptSettings, SDSettings):
    """The official edit script's defaults (timbrooks/instruct-pix2pix)."""

    num_inference_steps: int = setting(100, "official code")
    image_guidance_scale: float = setting(
        1.5, "official code", "image guidance scale (cfg-image; guidance_scale is the text's, cfg-text)"
    )


@METHODS.register("instructpix2pix")
class InstructPix2Pix(MethodAdapter):
    """InstructPix2Pix: instruction-driven editing (model=instruct-pix2pix: timbrooks/instruct-pix2pix). Defaults of
    the official code: 100 steps, text CFG 7.5, image CFG 1.5. Needs an instruction per sample; produces no mask."""

    settings_class = InstructPix2PixSettings
    settings: InstructPix2PixSettings
    base_model = "instruct-pix2pix"
    needs_instruction = True
    pipelines = ("instruct_pix2pix",)

    def __init__(self, models: Any = None, settings: InstructPix2PixSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self._pipe = None

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        if self._pipe is None:
            self._pipe = with_scheduler(self.models.pipeline("instruct_pix2pix"), s.scheduler, s.scheduler_config)
        frame = ip2p_framing(sample.size, model_resolution(s.resolution, self.models))
        out = self._pipe(
            prompt=sample.instruction,
            negative_prompt=s.negative_prompt,
            image=frame.model_input(sample.image),
            num_inference_steps=s.num_inference_steps,
            guidance_scale=s.guidance_scale,
            image_guidance_scale=s.image_guidance_scale,
            generator=ctx.generator(),
        ).images[0]
        extras = {} if frame.whole else {"model_box": list(frame.paste_box()), "model_size": list(frame.size)}
        return EditOutput(image=frame.image_back(out, sample.image), extras=extras)
