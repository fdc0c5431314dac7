"""The records that flow through the harness: a sample in, an edit out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class EditSample:
    """One editing task: a source image, its ground-truth edit region and the prompts.

    ``mask`` is a boolean array of the image's size (H, W); True marks the region to edit.
    ``target_image`` is the correct edited result when the dataset knows it (synthetic / toy world).
    """

    id: str
    image: Image.Image
    mask: np.ndarray | None
    source_prompt: str = ""
    target_prompt: str = ""
    edit_words: tuple[str, str] = ("", "")
    instruction: str | None = None
    edit_type: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)
    target_image: Image.Image | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) like PIL."""
        return self.image.size


@dataclass
class EditOutput:
    """What a method returns for one sample.

    ``soft_mask`` is float in [0, 1] at any resolution (the method's own); ``mask`` is its binarisation.
    Either may be None for methods that do not produce a mask; ``image`` may be None for mask-only modes.
    ``nfe`` counts denoiser evaluations per sample (a CFG call on a batch of 2 counts as 2 evaluations);
    ``denoiser_calls`` counts forward calls of the network (the batched count); ``grad_evals`` counts the batch
    rows of backward passes through it (null-text inversion's Adam steps), 0 when none.
    """

    image: Image.Image | None = None
    soft_mask: np.ndarray | None = None
    mask: np.ndarray | None = None
    nfe: int = 0
    denoiser_calls: int = 0
    grad_evals: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


class SampleError(Exception):
    """A sample cannot be processed; the message names the file and field."""


def error_line(err: BaseException, *, with_type: bool = False, joined: bool = False) -> str:
    """An exception as one line for a log or an error message: its first non-empty line (its type's name when it
    has no text). ``with_type``: prefixed with the type's name (``ValueError: bad input``), except for a
    ``SampleError``, whose text already names the file and field. ``joined``: every line joined by spaces instead of
    the first only, without the config search path listing Hydra appends to its errors."""
    text = str(err).strip()
    if joined:
        text = " ".join(part.strip() for part in text.splitlines() if part.strip())
        return text.split(" Config search path:")[0] or type(err).__name__
    first = text.splitlines()[0] if text else ""
    if with_type and not isinstance(err, SampleError):
        return f"{type(err).__name__}: {first}"
    return first or type(err).__name__


class MissingInputError(SampleError):
    """A method needs an input the sample lacks (e.g. an instruction)."""
