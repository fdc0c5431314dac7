"""The mask oracle: inpaint inside a given mask (by default the ground truth) with the model's inpainting pipeline.

The mask comes from ``mask_source`` (methods/mask_source.py): ``gt`` (default), a folder of PNGs, or another run's
method output — so "inpainting with method X's masks" is this method with ``mask_source=method``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark.adapter import EditContext, MethodAdapter
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import mask_to_pil, resize_image
from methods.mask_source import MaskSource, MaskSourceSettings
from methods.sd_common import inpaint, model_resolution
from methods.sd_settings import NegativePromptSettings, SDSettings


@dataclass(frozen=True)
class GTInpaintSettings(MaskSourceSettings, NegativePromptSettings, SDSettings):
    """The inpainting pipeline's sampling settings and the mask source."""


@METHODS.register("gt_inpaint")
class GTInpaint(MethodAdapter):
    """The mask oracle: the inpainting pipeline run inside the ground-truth mask (or another mask source) with the
    target prompt."""

    settings_class = GTInpaintSettings
    settings: GTInpaintSettings
    base_model = "sd-inpainting"  # any model with an inpainting pipeline
    needs_gt_mask = True
    produces_mask = True
    pipelines = ("inpaint",)

    def __init__(self, models: Any = None, settings: GTInpaintSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        self.mask_source = MaskSource.from_settings(self.settings)
        self.needs_gt_mask = self.mask_source.needs_gt

    def input_fingerprint(self, sample: EditSample) -> str | None:
        return self.mask_source.fingerprint(sample)

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        s = self.settings
        mask = self.mask_source.load(sample)
        res = model_resolution(s.resolution, self.models)
        out = inpaint(
            self.models,
            sample.target_prompt,
            resize_image(sample.image, (res, res)),
            mask_to_pil(mask.binary, (res, res)),
            s.num_inference_steps,
            s.guidance_scale,
            ctx.generator(),
            s.negative_prompt,
        )
        return EditOutput(
            image=resize_image(out, sample.size),
            soft_mask=mask.soft,
            mask=mask.binary,
            extras={"mask_origin": mask.origin},
        )
