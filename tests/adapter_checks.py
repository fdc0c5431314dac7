"""Checks every method adapter passes, in the spirit of diffusers' pipeline tester mixins.

A test class per adapter (tests/test_adapters.py) mixes in ``AdapterChecks`` and states, from the method's algorithm
and not from the adapter's code: the registered name, shrunk settings, the sample fields the method cannot run
without, the shape of the mask it returns, and its NFE formula. The checks call ``edit()`` directly on the tiny
model bundle (built from config, saved and loaded through ``from_pretrained``), on two synthetic samples whose size
(96 px) differs from the model's resolution (64 px), so an adapter that forgets to resize its output back fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from benchmark.adapter import EditContext, MethodAdapter, MethodSettings
from benchmark.datasets.synthetic import make_sample
from benchmark.nfe import NFECounter
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample, MissingInputError

SAMPLE_SIDE = 96
MODEL_SIDE = 64  # conf/model/tiny.yaml resolution
LATENT_SIDE = MODEL_SIDE // 8  # the VAE downsamples by 8
OPTIONAL_FIELDS = ("mask", "source_prompt", "instruction")  # what a sample may lack (EditSample)


@dataclasses.dataclass
class Edit:
    """One ``edit`` call: its sample, output and the denoiser (calls, evaluations) counted during it."""

    sample: EditSample
    output: EditOutput
    nfe: tuple[int, int]


def without(sample: EditSample, field: str) -> EditSample:
    empty = {"mask": None, "source_prompt": "", "instruction": None}[field]
    return dataclasses.replace(sample, **{field: empty})


def array(image: Any) -> np.ndarray | None:
    return None if image is None else np.asarray(image)


class AdapterChecks:
    method: ClassVar[str]  # the registered name
    settings: ClassVar[dict[str, Any]] = {}  # shrunk settings (few steps) given to the adapter
    needs: ClassVar[tuple[str, ...]] = ()  # the OPTIONAL_FIELDS a sample must have for this method
    seed: ClassVar[int] = 1234

    def expected_nfe(self, s: MethodSettings) -> tuple[int, int]:
        """(denoiser calls, evaluations = batch rows) of one edit with settings ``s``, from the algorithm."""
        raise NotImplementedError

    def expected_mask_shape(self, s: MethodSettings) -> tuple[int, int] | None:
        """(height, width) of the returned mask and soft mask; None: the method returns no mask."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture(scope="class")
    def adapter(self, tiny_bundle: Any) -> MethodAdapter:
        return METHODS.get(self.method)(tiny_bundle, **self.settings)

    @pytest.fixture(scope="class")
    def samples(self) -> list[EditSample]:
        return [make_sample(seed=0, index=i, size=SAMPLE_SIDE) for i in range(2)]

    @pytest.fixture(scope="class")
    def edits(self, adapter: MethodAdapter, samples: list[EditSample], tiny_bundle: Any) -> Iterator[list[Edit]]:
        """Each sample edited once, and the first one a second time with the same seed."""
        counter = NFECounter()
        tiny_bundle.on_load.append(counter.attach_pipeline)
        for pipe in tiny_bundle._pipes.values():  # pipelines earlier tests loaded (the runner does the same)
            counter.attach_pipeline(pipe)
        out = []
        try:
            for sample in [*samples, samples[0]]:
                counter.reset()
                output = adapter.edit(sample, EditContext(seed=self.seed, device=tiny_bundle.device))
                out.append(Edit(sample, output, (counter.calls, counter.evaluations)))
            yield out
        finally:
            tiny_bundle.on_load.remove(counter.attach_pipeline)
            counter.detach()

    # ------------------------------------------------------------------ checks

    def test_same_seed_gives_the_same_image_and_mask(self, edits: list[Edit]) -> None:
        first, again = edits[0].output, edits[-1].output
        for name in ("image", "mask", "soft_mask"):
            a, b = array(getattr(first, name)), array(getattr(again, name))
            assert (a is None) == (b is None), name
            assert a is None or np.array_equal(a, b), name

    def test_image_has_the_sample_size_and_masks_the_stated_shape(
        self, adapter: MethodAdapter, edits: list[Edit]
    ) -> None:
        shape = self.expected_mask_shape(adapter.settings)
        for edit in edits:
            out = edit.output
            assert (out.image is not None) == adapter.produces_image
            if out.image is not None:
                assert out.image.size == edit.sample.size and out.image.mode == "RGB"
            assert (out.mask is not None) == (shape is not None) == adapter.produces_mask
            if shape is not None:
                assert out.mask.dtype == bool and out.mask.shape == shape
                assert out.soft_mask.shape == shape

    def test_soft_mask_is_in_the_unit_interval(self, edits: list[Edit]) -> None:
        for edit in edits:
            soft = edit.output.soft_mask
            if soft is not None:
                assert soft.dtype == np.float32 and np.isfinite(soft).all()
                assert soft.min() >= 0.0 and soft.max() <= 1.0

    def test_nfe_is_the_algorithms_count(self, adapter: MethodAdapter, edits: list[Edit]) -> None:
        expected = self.expected_nfe(adapter.settings)
        if adapter.needs_model:
            assert expected[0] > 0 and expected[1] >= expected[0]
        for edit in edits:
            assert edit.nfe == expected, edit.sample.id

    def test_a_sample_lacking_a_needed_input_fails_with_one_line_naming_it(
        self, adapter: MethodAdapter, samples: list[EditSample]
    ) -> None:
        """Each optional field removed in turn: the method refuses exactly the fields it needs, in one line naming
        the field and the sample's source."""
        sample = samples[0]
        adapter.check_inputs(sample)
        for field in OPTIONAL_FIELDS:
            if field in self.needs:
                with pytest.raises(MissingInputError) as err:
                    adapter.check_inputs(without(sample, field))
                line = str(err.value)
                assert "\n" not in line and f"field '{field}'" in line and sample.meta["source"] in line
            else:
                adapter.check_inputs(without(sample, field))
