"""FID with another feature network than Inception, named in config by factory (as the toy world's CLIP is)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from benchmark.metrics import build_metrics, prepare_metrics
from benchmark.metrics.base import ScoreContext, ScoreItem
from benchmark.types import EditOutput, EditSample


class PooledColour(torch.nn.Module):
    """A small real feature network: fixed random 4x4 conv features, pooled. Takes uint8 (N, 3, H, W)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, width, 4, stride=4)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x.float() / 255.0)).mean((2, 3)).double()


def pooled_colour(width: int = 16) -> PooledColour:
    return PooledColour(width)


def _items(n: int) -> list[ScoreItem]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        src = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        out = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        items.append(ScoreItem(EditSample(id=f"s{i}", image=src, mask=np.ones((32, 32), bool)), EditOutput(image=out)))
    return items


def test_fid_with_a_named_feature_network_equals_torchmetrics_on_the_same_module() -> None:
    [fid] = build_metrics(
        {
            "metrics": [
                {
                    "name": "fid",
                    "kid": False,
                    "real": "source",
                    "feature_network": "tests.test_fid_feature_network:pooled_colour",
                    "feature_network_args": {"width": 8},
                }
            ]
        }
    )
    assert fid.weights_problem() is None
    prepare_metrics([fid], ScoreContext(device=torch.device("cpu")))
    items = _items(12)
    fid.reset()
    fid.update(items)
    ours = fid.compute()["fid"]
    ref = FrechetInceptionDistance(feature=PooledColour(8))
    for it in items:
        ref.update(torch.from_numpy(np.array(it.sample.image)).permute(2, 0, 1)[None], real=True)
        ref.update(torch.from_numpy(np.array(it.output.image)).permute(2, 0, 1)[None], real=False)
    assert ours == pytest.approx(float(ref.compute()), rel=1e-5)
    assert fid.extractor_id()["name"] == "tests.test_fid_feature_network:pooled_colour"


def test_unimportable_feature_network_is_one_line() -> None:
    [fid] = build_metrics({"metrics": [{"name": "fid", "feature_network": "no.such.module:net"}]})
    with pytest.raises(ValueError, match="feature_network='no.such.module:net'"):
        fid.weights_problem()
