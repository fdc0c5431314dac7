"""Metric protocol.

A metric scores batches of finished samples (``update``), returning one dict of values per sample (these become the
per-sample rows every table cell is traced to), and may accumulate additive state for dataset-level values
(``compute``, e.g. FID). ``higher_is_better`` and ``region`` (whole / background = outside the GT mask / edit =
inside) describe each value it produces.

Life cycle in a scoring run: ``prepare(ctx)`` once (loads networks through the per-process cache in
``networks.py``, reads or builds dataset-level statistics), then ``fork()`` once per method: each fork shares what
``prepare`` loaded and has its own dataset-level accumulators. The scorer decodes each dataset sample once and queues
it for every method holding it, so the forks of several methods are updated interleaved: ``update(batch)``... on
each method's fork (a batch holds one method's samples), then ``compute()`` on each fork. ``reset()`` clears a
metric's accumulators for direct use (one metric object scoring one set of samples after another).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import torch

from benchmark.types import EditOutput, EditSample

if TYPE_CHECKING:
    from benchmark.rundir import SampleRecord

log = logging.getLogger("emb")

REGIONS = ("whole", "background", "edit")
# what the edited image is compared with: the source image, or the dataset's reference edit (``target_image``)
REFERENCES = ("source", "target")


@dataclass
class ScoreItem:
    sample: EditSample
    output: EditOutput
    record: SampleRecord | None = None  # the run's record of this sample (None outside a run)
    # tensors prepared for this item (resized images, masks), shared by every metric scoring the same batch
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ScoreContext:
    """What metrics need beyond the batches: the device, a cache folder and the selected dataset samples."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    # identity of the sample selection (dataset checksum, limit, shard) for dataset-level statistics caches
    dataset_key: dict[str, Any] = field(default_factory=dict)
    # yields the selected samples (for real-image statistics); None when scoring outside a dataset
    samples: Callable[[], Iterator[EditSample]] | None = None


def value_name(family: str, region: str, reference: str = "source", prefix: str = "") -> str:
    """``psnr_background``; against the dataset's reference edit: ``psnr_background_vs_target``."""
    return f"{prefix}{family}_{region}" + ("_vs_target" if reference == "target" else "")


def as_regions(region: str | list[str] | tuple[str, ...], allowed: tuple[str, ...] = REGIONS, who: str = "") -> tuple:
    regions = (region,) if isinstance(region, str) else tuple(region)
    for r in regions:
        if r not in allowed:
            raise ValueError(f"metric '{who}': region='{r}' not supported; use one of {', '.join(allowed)}")
    if not regions:
        raise ValueError(f"metric '{who}': region list is empty")
    return regions


class Metric:
    name: ClassVar[str] = "metric"
    # value name (or family prefix of it) → higher is better; filled by subclasses
    higher_is_better: ClassVar[dict[str, bool]] = {}
    needs_image: ClassVar[bool] = False
    needs_mask: ClassVar[bool] = False
    # regions this family can score
    supported_regions: ClassVar[tuple[str, ...]] = REGIONS

    def __init__(self, region: str | list[str] = "whole", **params: Any) -> None:
        self.regions = as_regions(region, self.supported_regions, self.name)
        self.region = self.regions[0]
        self.params = params
        # optional metrics are skipped (one warning line) when their weights are missing; set by build_metrics
        self.optional = False
        # a feature network given as a module (Python API) instead of by name and weights path
        self.network: Any = None
        self.device = torch.device("cpu")

    def weights_problem(self) -> str | None:
        """One line naming missing weights (and where they come from), or None. Cheap: no network is loaded."""
        return None

    def prepare(self, ctx: ScoreContext) -> None:
        """Once per scoring run, before any update: load networks, dataset-level statistics. Missing weights
        (``weights_problem``) stop it with that one line before anything loads."""
        from benchmark.models import MissingWeightsError

        problem = self.weights_problem()
        if problem:
            raise MissingWeightsError(problem)
        self.device = ctx.device

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        """Score a batch; return one {value name: value} per item (NaN where undefined)."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """Dataset-level values from the accumulated state (default: none)."""
        return {}

    def reset(self) -> None:
        """Clear accumulated state (for direct use; a scoring run forks instead)."""

    def fork(self) -> Self:
        """A metric for one method's samples: it shares what ``prepare`` loaded (networks, real-image statistics,
        caches) and starts with empty dataset-level accumulators of its own. The default is a shallow copy that is
        then ``reset()``, which is right when ``reset`` rebinds its accumulators (``self.n = 0``); a metric whose
        accumulators are mutable objects (a list it appends to, torchmetrics states) overrides ``fork`` so that no
        two forks share them."""
        twin = copy.copy(self)
        twin.reset()
        return twin

    def directions(self) -> dict[str, bool]:
        """Value name → higher is better, for the values this configured metric produces."""
        return dict(self.higher_is_better)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "region": list(self.regions), **self.params}
