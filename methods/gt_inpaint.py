"""The mask oracle: inpaint inside a given mask (by default the ground truth) with the model's inpainting pipeline.

The mask comes from ``mask_source`` (methods/mask_source.py): ``gt`` (default), a folder of PNGs, or another run's
method output — so "inpainting with method X's masks" is this method with ``mask_source=method``.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.image_ops import mask_to_pil, resize_image
from methods.mask_source import MaskSource
from methods.sd_common import inpaint, model_resolution


@METHODS.register("gt_inpaint")
class GTInpaint(MethodAdapter):
    name = "gt_inpaint"
    needs_gt_mask = True
    produces_mask = True
    pipelines = ("inpaint",)

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        resolution: int | None = None,
        mask_source: str = "gt",
        mask_dir: str | None = None,
        mask_run_dir: str | None = None,
        mask_method: str | None = None,
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        self.steps = int(num_inference_steps)
        self.guidance = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.resolution = resolution
        self.mask_source = MaskSource.from_params(
            mask_source, mask_dir, mask_run_dir, mask_method, mask_threshold, owner=self.name
        )
        self.needs_gt_mask = self.mask_source.needs_gt

    def input_fingerprint(self, sample: EditSample) -> str | None:
        return self.mask_source.fingerprint(sample)

    @torch.no_grad()
    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        mask = self.mask_source.load(sample)
        res = model_resolution(self.resolution, self.models)
        out = inpaint(
            self.models,
            sample.target_prompt,
            resize_image(sample.image, (res, res)),
            mask_to_pil(mask.binary, (res, res)),
            self.steps,
            self.guidance,
            ctx.generator(),
            self.negative_prompt,
        )
        return EditOutput(
            image=resize_image(out, sample.size),
            soft_mask=mask.soft,
            mask=mask.binary,
            extras={"mask_origin": mask.origin},
        )
