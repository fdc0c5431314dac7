"""Structure distance (Tumanyan et al., Splice; PIE-Bench's "Structure Distance"), batched.

For each image: resize so the short side is ``resize`` (224) with the long side at most ``max_size`` (480)
(torchvision ``Resize``, bilinear with antialias), normalise with ImageNet mean/std, run DINO ViT-B/8 and take the
keys of block ``layer`` (11, the last) for every token (CLS included), heads concatenated; the structure is the
token-by-token cosine self-similarity matrix of those keys. The distance is the mean squared difference between
the edited image's and the reference's matrices.

``pixel_scale``: what the [0, 1] image is multiplied by before normalisation. DINO expects 1; PIE-Bench's evaluator
feeds 0–255 values (``pixel_scale: 255``), which its preset reproduces. Regions other than ``whole`` use PIE-Bench's
rule (``mode: multiply``: both images multiplied by the region mask first).

Network: a timm ViT (``model``, default ``vit_base_patch8_224``, the DINO ViT-B/8 architecture) with
``dynamic_img_size`` so non-square inputs work; ``weights`` is a local file (DINO's ``dino_vitbase8_pretrain.pth``
or timm's ``vit_base_patch8_224.dino`` safetensors, same key names) or null for the file in the local Hugging Face
cache of ``timm/vit_base_patch8_224.dino``. For non-square inputs timm interpolates the position embedding slightly
differently from DINO's own code; square inputs (PIE-Bench's 512×512 → 224×224) need no interpolation.
``model_kwargs`` builds a smaller ViT of the same family (tests use it for speed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmark.metrics.base import ScoreContext
from benchmark.metrics.images import PairMetric
from benchmark.metrics.networks import cached_network, hf_cached_file, load_state_dict_file, require_file
from benchmark.models import MissingWeightsError
from benchmark.registry import METRICS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_HUB = {
    "vit_base_patch8_224": "timm/vit_base_patch8_224.dino",
    "vit_small_patch8_224": "timm/vit_small_patch8_224.dino",
}


def weights_path(model: str, weights: str | None) -> Path | None:
    if weights:
        return Path(weights).expanduser()
    repo = DINO_HUB.get(model)
    return hf_cached_file(repo, ("model.safetensors", "pytorch_model.bin")) if repo else None


def clean_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINO training checkpoints prefix the backbone (``backbone.``, ``module.``) and carry a head: drop them."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            k = k.removeprefix(prefix)
        if not k.startswith("head"):
            out[k] = v
    return out


def load_vit(model: str, weights: Path, model_kwargs: dict[str, Any], device: torch.device) -> torch.nn.Module:
    def build() -> torch.nn.Module:
        import timm

        net = timm.create_model(model, pretrained=False, num_classes=0, dynamic_img_size=True, **model_kwargs)
        net.load_state_dict(clean_keys(load_state_dict_file(weights)), strict=True)
        return net.eval().requires_grad_(False).to(device)

    key = ("vit", model, str(weights), tuple(sorted(model_kwargs.items())), str(device))
    return cached_network(key, build)


def cosine_self_similarity(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """B×T×D → B×T×T cosine similarities (norm products clamped at eps, as Splice does)."""
    norm = x.norm(dim=2, keepdim=True)
    return (x @ x.transpose(1, 2)) / (norm @ norm.transpose(1, 2)).clamp(min=eps)


@METRICS.register("structure_distance")
class StructureDistance(PairMetric):
    name = family = "structure_distance"
    higher_is_better = {"structure_distance": False}
    modes = ("multiply",)
    max_items_per_call = 4  # ViT-B/8 at 224: 785 tokens, attention maps of 30 MB per image and layer

    def __init__(
        self,
        region: str | list[str] = "whole",
        model: str = "vit_base_patch8_224",
        weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        layer: int = 11,
        resize: int = 224,
        max_size: int | None = 480,
        pixel_scale: float = 1.0,
        mode: str = "multiply",
        **params: Any,
    ) -> None:
        super().__init__(
            region,
            mode=mode,
            model=model,
            weights=weights,
            model_kwargs=model_kwargs,
            layer=layer,
            resize=resize,
            max_size=max_size,
            pixel_scale=pixel_scale,
            **params,
        )
        self.model_name, self.weights = model, weights
        self.model_kwargs = dict(model_kwargs or {})
        self.layer, self.resize, self.max_size = int(layer), int(resize), max_size
        self.pixel_scale = float(pixel_scale)
        self.net: Any = None
        self._keys: list[torch.Tensor] = []

    def weights_problem(self) -> str | None:
        if self.network is not None:
            return None
        path = weights_path(self.model_name, self.weights)
        hub = DINO_HUB.get(self.model_name)
        source = (
            f"download DINO's weights (https://huggingface.co/{hub}, or dino_vitbase8_pretrain.pth from "
            f"github.com/facebookresearch/dino) and set weights=PATH"
            if hub
            else "set weights=PATH to a state dict of this timm model"
        )
        try:
            if path is None:
                raise MissingWeightsError(
                    f"metric structure_distance: weights: not set and {hub or self.model_name} is not in the local "
                    f"Hugging Face cache; {source}"
                )
            require_file(path, "metric structure_distance: weights", source)
        except MissingWeightsError as err:
            return str(err)
        return None

    def prepare(self, ctx: ScoreContext) -> None:
        super().prepare(ctx)
        self.net = self.network or load_vit(
            self.model_name, weights_path(self.model_name, self.weights), self.model_kwargs, self.device
        )
        if not 0 <= self.layer < len(self.net.blocks):
            raise ValueError(
                f"metric structure_distance: layer={self.layer} but the ViT has {len(self.net.blocks)} blocks"
            )

    def keys_self_similarity(self, images: torch.Tensor) -> torch.Tensor:
        """N×3×H×W images in [0, 1] → N×T×T self-similarity of the chosen block's keys."""
        from torchvision.transforms import functional as TF

        x = TF.resize(images * self.pixel_scale, self.resize, max_size=self.max_size, antialias=True)
        x = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        attn = self.net.blocks[self.layer].attn
        captured: list[torch.Tensor] = []
        hook = attn.qkv.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            # the blocks after `layer` do not change the keys: run only up to it
            h = self.net.patch_embed(x)
            h = self.net._pos_embed(h)
            h = self.net.patch_drop(h)
            h = self.net.norm_pre(h)
            for block in self.net.blocks[: self.layer + 1]:
                h = block(h)
        finally:
            hook.remove()
        qkv = captured[0]  # B×T×3C, laid out (3, heads, head_dim) like DINO's
        b, t, _ = qkv.shape
        keys = qkv.reshape(b, t, 3, attn.num_heads, -1)[:, :, 1].reshape(b, t, -1)
        return cosine_self_similarity(keys)

    def whole(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = self.keys_self_similarity(torch.cat([x, y]))
        n = len(x)
        return (both[:n] - both[n:]).square().mean(dim=(1, 2))
