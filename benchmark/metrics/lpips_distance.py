"""LPIPS between the edited image and its reference, per region, batched (the ``lpips`` package, v0.1).

Inputs are images in [0, 1] mapped to [−1, 1] (what LPIPS expects; torchmetrics' ``normalize=True`` does the
same). The linear calibration layers ship with the ``lpips`` package (``linear_weights`` overrides them); the
backbone (AlexNet / VGG16 / SqueezeNet 1.1 ImageNet weights) is torchvision's file, read from ``backbone_weights``
or, when null, from torchvision's download cache ``$TORCH_HOME/hub/checkpoints/<file>`` — never downloaded here.
``mode: select`` averages LPIPS's spatial map (``spatial=True``) over the region.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from benchmark.metrics.base import ScoreContext
from benchmark.metrics.images import PairMetric
from benchmark.metrics.networks import cached_network, load_state_dict_file, require_file, torch_hub_checkpoint
from benchmark.models import MissingWeightsError
from benchmark.registry import METRICS

# LPIPS net → torchvision model and its weights enum (the ImageNet weights LPIPS was calibrated on)
BACKBONES = {
    "alex": ("alexnet", "AlexNet_Weights"),
    "vgg": ("vgg16", "VGG16_Weights"),
    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights"),
}


def backbone_url(net: str) -> str:
    import torchvision

    return getattr(torchvision.models, BACKBONES[net][1]).IMAGENET1K_V1.url


def backbone_path(net: str, backbone_weights: str | None) -> Path:
    if backbone_weights:
        return Path(backbone_weights).expanduser()
    return torch_hub_checkpoint(backbone_url(net).rsplit("/", 1)[-1])


def load_backbone(model: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Load torchvision ``features.N.*`` weights into the ``lpips`` slices (``sliceK.N.*`` hold the same layers)."""
    owner = {idx: sname for sname, part in model.net.named_children() for idx, _ in part.named_children()}
    mapped = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head != "features":
            continue  # the classifier is not part of LPIPS
        idx, _, param = rest.partition(".")
        if idx in owner:
            mapped[f"{owner[idx]}.{idx}.{param}"] = value
    model.net.load_state_dict(mapped, strict=True)


def load_lpips(
    net: str, backbone_weights: str | None, linear_weights: str | None, version: str, device: torch.device
) -> Any:
    backbone = backbone_path(net, backbone_weights)

    def build() -> Any:
        import lpips

        with warnings.catch_warnings():  # lpips calls torchvision with its deprecated `pretrained=` keyword
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(
                net=net, version=version, pretrained=True, pnet_rand=True, model_path=linear_weights, verbose=False
            )
        load_backbone(model, load_state_dict_file(backbone))
        return model.eval().requires_grad_(False).to(device)

    return cached_network(("lpips", net, version, str(backbone), linear_weights, str(device)), build)


@METRICS.register("lpips")
class LPIPS(PairMetric):
    name = family = "lpips"
    higher_is_better = {"lpips": False}

    def __init__(
        self,
        region: str | list[str] = "whole",
        net: str = "alex",
        version: str = "0.1",
        backbone_weights: str | None = None,
        linear_weights: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(
            region, net=net, version=version, backbone_weights=backbone_weights, linear_weights=linear_weights, **params
        )
        if net not in BACKBONES:
            raise ValueError(f"metric 'lpips': net='{net}' unknown; use one of {', '.join(BACKBONES)}")
        self.net_name, self.version = net, str(version)
        self.backbone_weights, self.linear_weights = backbone_weights, linear_weights
        self.net: Any = None

    def weights_problem(self) -> str | None:
        path = backbone_path(self.net_name, self.backbone_weights)
        try:
            require_file(
                path,
                "metric lpips: backbone_weights",
                f"it is torchvision's ImageNet {BACKBONES[self.net_name][0]} ({backbone_url(self.net_name)}): "
                f"download it there or set backbone_weights=PATH",
            )
            if self.linear_weights:
                require_file(self.linear_weights, "metric lpips: linear_weights", "set it to an lpips v0.1 .pth")
        except MissingWeightsError as err:
            return str(err)
        return None

    def prepare(self, ctx: ScoreContext) -> None:
        super().prepare(ctx)
        problem = self.weights_problem()
        if problem:
            raise MissingWeightsError(problem)
        self.net = load_lpips(self.net_name, self.backbone_weights, self.linear_weights, self.version, self.device)

    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1, y * 2 - 1).flatten()

    def pixel_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.net.spatial = True  # the same module, asked for its per-pixel map (upsampled per layer)
        try:
            return self.net(x * 2 - 1, y * 2 - 1)[:, 0]
        finally:
            self.net.spatial = False
