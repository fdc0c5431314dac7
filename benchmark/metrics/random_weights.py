"""Weight files of the metric networks' real architectures with random weights, written without any download.

For tests and ``bench/``: the files go through exactly the loading code real weights go through (the same paths,
formats and key names), so only the numbers differ from published ones. Each writer is idempotent: an existing
file is kept.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

TINY_CLIP = "emb-tiny-clip"


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    else:
        torch.save(state, tmp)
    tmp.replace(path)
    return path


def inception(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3 (566 tensors, 96 MB) with Kaiming-initialised convolutions.

    PyTorch's default init gives features ~1e-8 and FID ≈ 0 for any pair of sets; Kaiming keeps the activations
    O(1) through the 94 convolutions so test numbers are meaningful.
    """
    if path.exists():
        return path
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
            return None  # keep the random initialisation instead of the pretrained file

    empty = path.with_name(path.name + ".empty")
    empty.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, empty)
    torch.manual_seed(seed)
    net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    empty.unlink()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return _save(net.state_dict(), path)


def lpips_backbone(net: str, path: Path, seed: int = 0) -> Path:
    """torchvision's AlexNet / VGG16 / SqueezeNet 1.1 with its default (random) init, as torchvision saves them."""
    if path.exists():
        return path
    import torchvision

    from benchmark.metrics.lpips_distance import BACKBONES

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, BACKBONES[net][0])(weights=None)
    return _save(model.state_dict(), path)


def tiny_clip_config(folder: Path) -> Path:
    """A 1.8M-parameter open_clip model config (real CLIP architecture, CLIP tokenizer, 77-token context)."""
    path = folder / f"{TINY_CLIP}.json"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        }
        path.write_text(json.dumps(cfg, indent=1))
    return path


def clip(model: str, path: Path, model_config: Path | None = None, seed: int = 0) -> Path:
    """An open_clip model's random weights as a state dict file (what ``pretrained=PATH`` loads)."""
    if path.exists():
        return path
    import open_clip

    if model_config is not None:
        open_clip.add_model_config(str(model_config))
    torch.manual_seed(seed)
    net = open_clip.create_model(model, pretrained=None)
    return _save(net.state_dict(), path)


def vit(model: str, path: Path, model_kwargs: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A timm ViT's random weights (same key names as DINO's checkpoints) as safetensors."""
    if path.exists():
        return path
    import timm

    torch.manual_seed(seed)
    net = timm.create_model(model, pretrained=False, num_classes=0, **(model_kwargs or {}))
    return _save(net.state_dict(), path)
