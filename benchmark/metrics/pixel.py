"""Pixel fidelity between the edited image and its reference (source image, or the dataset's reference edit):
PSNR, SSIM and MSE per region (whole / background / edit), batched.

Images are float in [0, 1] (``data_range: 1.0``, PIE-Bench's convention). Whole-image values are torchmetrics'
functional forms per image; ``mode: select`` values come from per-pixel maps averaged over the region (PSNR from
the region's mean squared error, SSIM from torchmetrics' full SSIM image). Identical images give PSNR = inf.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from benchmark.metrics.images import PairMetric
from benchmark.registry import METRICS


@METRICS.register("psnr")
class PSNR(PairMetric):
    name = family = "psnr"
    higher_is_better = {"psnr": True}

    def __init__(self, region: str | list[str] = "whole", data_range: float = 1.0, **params: Any) -> None:
        super().__init__(region, data_range=data_range, **params)
        self.data_range = float(data_range)

    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return peak_signal_noise_ratio(x, y, data_range=self.data_range, reduction="none", dim=(1, 2, 3))

    def pixel_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).square().mean(dim=1)

    def from_map(self, pixel_map: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        mse = super().from_map(pixel_map, weight)
        return 10.0 * torch.log10(self.data_range**2 / mse)


@METRICS.register("mse")
class MSE(PairMetric):
    name = family = "mse"
    higher_is_better = {"mse": False}

    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).square().mean(dim=(1, 2, 3))

    def pixel_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).square().mean(dim=1)


@METRICS.register("ssim")
class SSIM(PairMetric):
    """torchmetrics' SSIM (Gaussian window 11, σ 1.5, k1 0.01, k2 0.03, reflect padding: the map is H×W)."""

    name = family = "ssim"
    higher_is_better = {"ssim": True}

    def __init__(
        self,
        region: str | list[str] = "whole",
        data_range: float = 1.0,
        gaussian_kernel: bool = True,
        sigma: float = 1.5,
        kernel_size: int = 11,
        k1: float = 0.01,
        k2: float = 0.03,
        **params: Any,
    ) -> None:
        super().__init__(
            region,
            data_range=data_range,
            gaussian_kernel=gaussian_kernel,
            sigma=sigma,
            kernel_size=kernel_size,
            k1=k1,
            k2=k2,
            **params,
        )
        self.kw = dict(
            data_range=float(data_range),
            gaussian_kernel=bool(gaussian_kernel),
            sigma=float(sigma),
            kernel_size=int(kernel_size),
            k1=float(k1),
            k2=float(k2),
        )

    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return structural_similarity_index_measure(x, y, reduction="none", **self.kw)

    def pixel_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, full = structural_similarity_index_measure(x, y, reduction="none", return_full_image=True, **self.kw)
        return full.mean(dim=1)
