"""LPIPS between the edited image and its reference, per region, batched (the ``lpips`` package, v0.1).

Inputs are images in [0, 1] mapped to [−1, 1] (what LPIPS expects; torchmetrics' ``normalize=True`` does the
same). The linear calibration layers ship with the ``lpips`` package (``linear_weights`` overrides them); the
backbone (AlexNet / VGG16 / SqueezeNet 1.1 ImageNet weights) is torchvision's file, read from ``backbone_weights``
or, when null, from torchvision's download cache ``$TORCH_HOME/hub/checkpoints/<file>`` — never downloaded here.
``mode: select`` averages LPIPS's spatial map (``spatial=True``) over the region.

The ``lpips`` package's modules (scaling layer, backbone, calibrated 1×1 layers) run in channels-last layout, and
the distance head — per layer: unit-normalise each feature vector, squared difference, weighted channel sum, spatial
mean (or bilinear upsampling for the spatial map), summed over layers — is evaluated by ``lpips_distance`` below with
fewer temporaries than the package's forward (the same formula; tested against the package and torchmetrics). On a
CPU this is ~2× faster than ``lpips.LPIPS.forward`` at 512².
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


def lpips_distance(net: Any, x: torch.Tensor, y: torch.Tensor, spatial: bool = False) -> torch.Tensor:
    """LPIPS v0.1 of image batches in [−1, 1]: N (or N×H×W with ``spatial``), from an ``lpips.LPIPS`` module."""
    if net.version == "0.1":
        x, y = net.scaling_layer(x), net.scaling_layer(y)
    feats_x, feats_y = net.net(x), net.net(y)
    total: torch.Tensor | float = 0.0
    for k in range(net.L):
        fx, fy = feats_x[k], feats_y[k]
        # lpips.normalize_tensor: x / (sqrt(sum_c x²) + 1e-10)
        d = fx / (torch.linalg.vector_norm(fx, dim=1, keepdim=True) + 1e-10)
        d = d.sub_(fy / (torch.linalg.vector_norm(fy, dim=1, keepdim=True) + 1e-10)).square_()
        weight = net.lins[k].model[-1].weight  # 1×C×1×1 calibrated channel weights (Dropout is inactive)
        layer = (d * weight).sum(dim=1, keepdim=True)
        if spatial:
            layer = torch.nn.functional.interpolate(layer, size=x.shape[2:], mode="bilinear", align_corners=False)
        else:
            layer = layer.mean(dim=(2, 3), keepdim=True)
        total = total + layer
    assert isinstance(total, torch.Tensor)
    return total[:, 0] if spatial else total.flatten()


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
        # channels-last: LPIPS's per-layer channel normalisation and 1×1 convolutions run ~2.7× faster on a CPU
        return model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)

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
        if self.network is not None:
            return None
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
        self.net = self.network or load_lpips(
            self.net_name, self.backbone_weights, self.linear_weights, self.version, self.device
        )

    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lpips_distance(self.net, x * 2 - 1, y * 2 - 1)

    def pixel_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lpips_distance(self.net, x * 2 - 1, y * 2 - 1, spatial=True)
