"""The mask oracle: inpaint inside the ground-truth mask with the model's inpainting pipeline."""

from __future__ import annotations

from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample
from methods.base import EditContext, MethodAdapter, mask_to_pil, resize_image


@METHODS.register("gt_inpaint")
class GTInpaint(MethodAdapter):
    name = "gt_inpaint"
    needs_gt_mask = True
    produces_mask = True
    pipelines = ("inpaint",)

    def __init__(
        self,
        models=None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        resolution: int | None = None,
        **params,
    ) -> None:
        super().__init__(
            models,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            negative_prompt=negative_prompt,
            resolution=resolution,
            **params,
        )
        self.steps = int(num_inference_steps)
        self.guidance = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.resolution = resolution

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.models.pipeline("inpaint")
        res = int(self.resolution or self.models.cfg.get("resolution", 512))
        out = pipe(
            prompt=sample.target_prompt,
            negative_prompt=self.negative_prompt,
            image=resize_image(sample.image, (res, res)),
            mask_image=mask_to_pil(sample.mask, (res, res)),
            height=res,
            width=res,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=ctx.generator(),
        ).images[0]
        mask = sample.mask.copy()
        return EditOutput(image=resize_image(out, sample.size), soft_mask=mask.astype("float32"), mask=mask)
