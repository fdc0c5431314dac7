"""Metric protocol.

A metric scores batches of finished samples (``update``), returning one dict of values per sample (these become the
per-sample rows every table cell is traced to), and may accumulate additive state for dataset-level values
(``compute``, e.g. FID). ``higher_is_better`` and ``region`` (whole / background = outside the GT mask / edit =
inside) describe each value it produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from benchmark.types import EditOutput, EditSample

REGIONS = ("whole", "background", "edit")


@dataclass
class ScoreItem:
    sample: EditSample
    output: EditOutput
    record: dict[str, Any] = field(default_factory=dict)


class Metric:
    name: ClassVar[str] = "metric"
    # value name → higher is better; filled by subclasses (a family may produce several values)
    higher_is_better: ClassVar[dict[str, bool]] = {}
    needs_image: ClassVar[bool] = False
    needs_mask: ClassVar[bool] = False

    def __init__(self, region: str = "whole", **params: Any) -> None:
        if region not in REGIONS:
            raise ValueError(f"metric '{self.name}': region='{region}' unknown; use one of {', '.join(REGIONS)}")
        self.region = region
        self.params = params

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        """Score a batch; return one {value name: value} per item (NaN where undefined)."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """Dataset-level values from the accumulated state (default: none)."""
        return {}

    def reset(self) -> None:
        """Clear accumulated state (per method)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "region": self.region, **self.params}
