"""The method adapter protocol: what every editing method implements and declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from benchmark.types import EditOutput, EditSample, MissingInputError


@dataclass
class EditContext:
    """Per-sample run state handed to a method: the seed and the device-bound generator made from it."""

    seed: int
    device: torch.device

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)


def init_params(local_vars: dict[str, Any]) -> dict[str, Any]:
    """An adapter's constructor arguments from its ``locals()``, for ``MethodAdapter.params`` (stamped into every
    result): ``super().__init__(models, **init_params(locals()))`` as the constructor's first statement."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "models", "__class__")}


class MethodAdapter:
    """Base of all adapters: one file in ``methods/`` plus ``conf/method/NAME.yaml`` (README, "Adding a method").

    - ``@METHODS.register("NAME")`` on the class; ``NAME`` is its ``name`` (rows, sample folders, cache entries) and
      the YAML's ``name:``. The registry sets ``name`` from it; a class that states another name is an error.
    - ``__init__(self, models=None, <one keyword per YAML key, default = the official value>)`` and then
      ``super().__init__(models, **init_params(locals()))``: no ``**kwargs``, so a misspelt YAML key is one error
      line. ``base_model`` and ``description`` are YAML-only (the runner reads them).
    - ``edit(sample, ctx)`` returns an ``EditOutput`` (image and/or binary mask, soft mask); take randomness from
      ``ctx.generator()`` so a sample's result depends only on the run seed and the sample id. An exception fails
      that one sample (recorded with its first line); the run goes on.
    - The flags below say what it needs (checked per sample by ``check_inputs``, and ``needs_model`` puts the
      model's digest in the cache key). ``produces_image`` / ``produces_mask`` document what ``edit`` returns.
    - Its cached samples are recomputed when its config, its module, its base classes' modules or the shared
      ``methods.*`` modules they use change; list any other module its result depends on in ``code_modules``.
      ``input_fingerprint`` covers files it reads besides the sample.
    """

    name: ClassVar[str] = "base"
    needs_model: ClassVar[bool] = True
    needs_gt_mask: ClassVar[bool] = False
    needs_source_prompt: ClassVar[bool] = False
    needs_instruction: ClassVar[bool] = False
    produces_image: ClassVar[bool] = True
    produces_mask: ClassVar[bool] = False
    # pipelines the method loads from the model bundle; the runner counts their denoiser calls
    pipelines: ClassVar[tuple[str, ...]] = ()
    # modules outside ``methods.*`` whose code changes this method's results (hashed into its cache entries)
    code_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, models: Any = None, **params: Any) -> None:
        self.models = models
        self.params = params
        if params.get("scheduler"):
            # a misspelt sampler is one line when the method is built, not a failure in every sample
            from methods.sd_common import scheduler_class

            scheduler_class(params["scheduler"], f"{self.name}.scheduler")

    def check_inputs(self, sample: EditSample) -> None:
        """Fail the sample with one line when it lacks an input this method needs."""
        where = sample.meta.get("source", sample.id)
        if self.needs_gt_mask and (sample.mask is None or not sample.mask.any()):
            raise MissingInputError(f"{where}: field 'mask': method '{self.name}' needs a non-empty GT mask")
        if self.needs_source_prompt and not sample.source_prompt:
            raise MissingInputError(f"{where}: field 'source_prompt': method '{self.name}' needs a source prompt")
        if self.needs_instruction and not sample.instruction:
            raise MissingInputError(f"{where}: field 'instruction': method '{self.name}' needs an edit instruction")

    def skip_reason(self) -> str | None:
        """Why this method cannot run with the configured model (checked before any sample), or None."""
        if not self.needs_model:
            return None
        for kind in self.pipelines:
            key = "text2img" if kind in ("img2img", "diffedit") else kind
            if not self.models.cfg.get(key):
                return (
                    f"model '{self.models.name}' has no {key} weights (model.{key} is empty); pick a model "
                    f"that has them or set model.{key}=HUB_ID_OR_FOLDER"
                )
        return None

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        raise NotImplementedError

    def input_fingerprint(self, sample: EditSample) -> str | None:
        """Hash of inputs the method reads besides the sample (e.g. mask files of another run); it enters the
        sample cache key, so a changed input is never served a stale result. None: nothing extra."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def resize_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool or float mask to (width, height)."""
    if mask.shape[1] == size[0] and mask.shape[0] == size[1]:
        return mask
    if mask.dtype == bool:
        im = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        return np.asarray(im) > 127
    im = Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.Resampling.NEAREST)
    return np.asarray(im, dtype=np.float32)


def mask_to_pil(mask: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """A bool/float mask as an L image (white = edit), optionally resized nearest to (width, height)."""
    im = Image.fromarray((np.asarray(mask) > 0.5).astype(np.uint8) * 255)
    return im if size is None or im.size == size else im.resize(size, Image.Resampling.NEAREST)
