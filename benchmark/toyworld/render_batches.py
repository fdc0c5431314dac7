"""Training batches of the toy world, rendered on the fly from the synthetic renderer.

A batch is a pure function of (seed, stream, step): resuming a run re-creates exactly the batches it would have seen,
and no file is ever read. The stream name keeps every training stage's scenes apart from each other and from the
editing dataset (``benchmark.datasets.synthetic`` draws from the namespace ``emb-synthetic``; these from
``emb-toyworld-train``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from benchmark.datasets.synthetic import (
    BACKGROUNDS,
    COLOURS,
    EDIT_TYPES,
    SHAPES,
    Scene,
    _rng,
    caption,
    random_edit,
    random_scene,
    render,
)

NAMESPACE = "emb-toyworld-train"


@dataclass
class SceneBatch:
    images: torch.Tensor  # (B, 3, H, W) float in [-1, 1]
    captions: list[str]
    scenes: list[Scene]
    masks: list[list[np.ndarray]]  # per scene, one bool (H, W) mask per object


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC arrays → float NCHW in [-1, 1] (the range the SD VAE works in)."""
    arr = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def scene_batch(seed: int, stream: str, step: int, batch_size: int, size: int = 64) -> SceneBatch:
    scenes, images, masks = [], [], []
    for i in range(batch_size):
        scene = random_scene(_rng(NAMESPACE, seed, stream, step, i))
        img, m = render(scene, size)
        scenes.append(scene)
        images.append(img)
        masks.append(m)
    return SceneBatch(to_tensor(images), [caption(s) for s in scenes], scenes, masks)


def hard_negative_caption(scene: Scene, rng: np.random.Generator) -> str:
    """The caption of a minimally different scene (one object's shape or colour, or the background, changed):
    the distractor a CLIP must reject to be useful for scoring edits."""
    edit_type = str(rng.choice(EDIT_TYPES, p=[0.4, 0.4, 0.2]))
    return caption(random_edit(scene, rng, edit_type).target)


def swap_binding_caption(scene: Scene, rng: np.random.Generator) -> str | None:
    """Colours of two objects swapped: same words, wrong binding (None for one-object scenes)."""
    if len(scene.objects) < 2:
        return None
    i, j = rng.choice(len(scene.objects), size=2, replace=False)
    objs = list(scene.objects)
    objs[i], objs[j] = replace(objs[i], colour=objs[j].colour), replace(objs[j], colour=objs[i].colour)
    if objs[i].colour == objs[j].colour:
        return None
    return caption(replace(scene, objects=tuple(objs)))


def attribute_variants(scene: Scene, index: int, attribute: str) -> list[tuple[str, str]]:
    """(value, caption) for every value of one object's ``attribute`` (colour or shape), the true one included."""
    values = list(COLOURS) if attribute == "colour" else list(SHAPES)
    out = []
    for v in values:
        objs = list(scene.objects)
        objs[index] = replace(objs[index], **{attribute: v})
        out.append((v, caption(replace(scene, objects=tuple(objs)))))
    return out


__all__ = [
    "BACKGROUNDS",
    "NAMESPACE",
    "SceneBatch",
    "attribute_variants",
    "hard_negative_caption",
    "scene_batch",
    "swap_binding_caption",
    "to_tensor",
]
