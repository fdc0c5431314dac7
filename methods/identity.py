"""The floor: return the input unchanged and an empty mask."""

from __future__ import annotations

import numpy as np

from benchmark.adapter import EditContext, MethodAdapter
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample


@METHODS.register("identity")
class Identity(MethodAdapter):
    """The floor: the input image unchanged and an empty mask. No settings: any key in its config is a mistake."""

    needs_model = False
    produces_mask = True

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        w, h = sample.size
        empty = np.zeros((h, w), dtype=bool)
        return EditOutput(image=sample.image.copy(), soft_mask=empty.astype(np.float32), mask=empty)
