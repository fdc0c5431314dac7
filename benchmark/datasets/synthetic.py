"""Deterministic synthetic editing world: coloured shapes on textured backgrounds.

Every sample is rendered from (seed, index) alone, so the dataset needs no files and streams. Each scene has
1–3 objects; each edit (replace a shape, recolour an object, change the background) comes with source and target
captions, edit words, an instruction, the exact ground-truth mask of the pixels the edit must change, and the
rendered correct result (``target_image``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmark.datasets.base import EditDataset, SampleRef
from benchmark.registry import DATASETS
from benchmark.types import EditSample

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
}
# Backgrounds are pale and unnamed by colour, so object colours always contrast with them.
BACKGROUNDS = ("plain", "striped", "dotted", "noisy")
BACKGROUND_WORDS = {"plain": "plain", "striped": "striped", "dotted": "dotted", "noisy": "noisy"}
EDIT_TYPES = ("replace_shape", "change_colour", "change_background")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    cx: float  # centre, in [0, 1] of the image width
    cy: float
    r: float  # half size, in [0, 1] of the image width


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    bg_tone: tuple[int, int, int]
    texture_seed: int


def _rng(*keys: int | str) -> np.random.Generator:
    digest = hashlib.sha256("/".join(str(k) for k in keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_scene(rng: np.random.Generator, max_objects: int = 3) -> Scene:
    n = int(rng.integers(1, max_objects + 1))
    # Objects sit in distinct cells of a 3x3 grid so they never overlap.
    cells = rng.choice(9, size=n, replace=False)
    objects = []
    for cell in cells:
        gx, gy = cell % 3, cell // 3
        r = float(rng.uniform(0.11, 0.15))
        cx = (gx + 0.5) / 3 + float(rng.uniform(-0.02, 0.02))
        cy = (gy + 0.5) / 3 + float(rng.uniform(-0.02, 0.02))
        objects.append(SceneObject(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), cx, cy, r))
    tone = tuple(int(x) for x in rng.integers(190, 246, size=3))
    return Scene(tuple(objects), str(rng.choice(BACKGROUNDS)), tone, int(rng.integers(0, 2**31)))


def _background(scene: Scene, size: int) -> np.ndarray:
    tone = np.array(scene.bg_tone, dtype=np.float32)
    img = np.broadcast_to(tone, (size, size, 3)).copy()
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(4, size // 8)
    if scene.background == "striped":
        img[(yy // (period // 2)) % 2 == 1] *= 0.72
    elif scene.background == "dotted":
        dot = ((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2 <= (period / 5) ** 2
        img[dot] *= 0.6
    elif scene.background == "noisy":
        # value noise: a coarse Gaussian grid (one value per 8 px) upsampled bilinearly. Unlike per-pixel noise it
        # survives an autoencoder with 16×16 latents, so a model trained on this world can learn and redraw it.
        cells = max(2, size // 8)
        coarse = np.random.default_rng(scene.texture_seed).normal(0, 28, size=(cells, cells)).astype(np.float32)
        noise = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BILINEAR))
        img = img + noise[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def object_mask(obj: SceneObject, size: int) -> np.ndarray:
    """Exact pixel mask of one object (drawn without anti-aliasing, so image and mask agree)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, r = obj.cx * size, obj.cy * size, obj.r * size
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif obj.shape == "square":
        s = r * 0.9
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=255)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.85), (cx + r, cy + r * 0.85)], fill=255)
    elif obj.shape == "cross":
        t = r * 0.38
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=255)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=255)
    else:
        raise ValueError(f"unknown shape {obj.shape}")
    return np.asarray(canvas) > 0


def render(scene: Scene, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The scene as an RGB uint8 array and one exact mask per object."""
    img = _background(scene, size)
    masks = []
    for obj in scene.objects:
        m = object_mask(obj, size)
        img[m] = COLOURS[obj.colour]
        masks.append(m)
    return img, masks


def _relation(a: SceneObject, b: SceneObject) -> str:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dy) >= abs(dx):
        return "above" if dy > 0 else "below"
    return "to the left of" if dx > 0 else "to the right of"


def caption(scene: Scene) -> str:
    """'a red circle above a blue square on a striped background'."""
    objs = scene.objects
    names = [f"a {o.colour} {o.shape}" for o in objs]
    if len(objs) == 1:
        body = names[0]
    elif len(objs) == 2:
        body = f"{names[0]} {_relation(objs[0], objs[1])} {names[1]}"
    else:
        body = f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{body} on a {BACKGROUND_WORDS[scene.background]} background"


@dataclass
class SyntheticEdit:
    source: Scene
    target: Scene
    edit_type: str
    edit_words: tuple[str, str]
    instruction: str
    object_index: int | None


def random_edit(scene: Scene, rng: np.random.Generator, edit_type: str) -> SyntheticEdit:
    if edit_type == "change_background":
        new_bg = str(rng.choice([b for b in BACKGROUNDS if b != scene.background]))
        target = replace(scene, background=new_bg)
        words = (f"{BACKGROUND_WORDS[scene.background]} background", f"{BACKGROUND_WORDS[new_bg]} background")
        return SyntheticEdit(scene, target, edit_type, words, f"make the background {new_bg}", None)
    k = int(rng.integers(0, len(scene.objects)))
    obj = scene.objects[k]
    if edit_type == "replace_shape":
        new = replace(obj, shape=str(rng.choice([s for s in SHAPES if s != obj.shape])))
        words = (f"{obj.colour} {obj.shape}", f"{new.colour} {new.shape}")
        instruction = f"turn the {obj.colour} {obj.shape} into a {new.shape}"
    elif edit_type == "change_colour":
        new = replace(obj, colour=str(rng.choice([c for c in COLOURS if c != obj.colour])))
        words = (f"{obj.colour} {obj.shape}", f"{new.colour} {new.shape}")
        instruction = f"make the {obj.colour} {obj.shape} {new.colour}"
    else:
        raise ValueError(f"unknown edit type '{edit_type}'; known: {', '.join(EDIT_TYPES)}")
    objects = list(scene.objects)
    objects[k] = new
    return SyntheticEdit(scene, replace(scene, objects=tuple(objects)), edit_type, words, instruction, k)


def make_sample(seed: int, index: int, size: int = 64, edit_types: tuple[str, ...] = EDIT_TYPES) -> EditSample:
    rng = _rng("emb-synthetic", seed, index)
    scene = random_scene(rng)
    edit = random_edit(scene, rng, edit_types[index % len(edit_types)])
    src, _ = render(edit.source, size)
    tgt, _ = render(edit.target, size)
    # The ground truth is exactly the set of pixels the correct edit changes.
    gt = np.any(src != tgt, axis=-1)
    return EditSample(
        id=f"syn{seed}-{index:05d}",
        image=Image.fromarray(src),
        mask=gt,
        source_prompt=caption(edit.source),
        target_prompt=caption(edit.target),
        edit_words=edit.edit_words,
        instruction=edit.instruction,
        edit_type=edit.edit_type,
        meta={"source": f"synthetic(seed={seed}, index={index})", "scene": json.loads(json.dumps(asdict(scene)))},
        target_image=Image.fromarray(tgt),
    )


@DATASETS.register("synthetic")
class SyntheticDataset(EditDataset):
    name = "synthetic"

    def __init__(
        self,
        num_samples: int = 200,
        size: int = 64,
        seed: int = 0,
        edit_types: list[str] | tuple[str, ...] = EDIT_TYPES,
    ) -> None:
        self.num_samples = int(num_samples)
        self.size = int(size)
        self.seed = int(seed)
        self.edit_types = tuple(edit_types)
        for t in self.edit_types:
            if t not in EDIT_TYPES:
                raise ValueError(f"dataset.edit_types: unknown '{t}'; known: {', '.join(EDIT_TYPES)}")

    def refs(self) -> Iterator[SampleRef]:
        for i in range(self.num_samples):
            yield SampleRef(
                id=f"syn{self.seed}-{i:05d}",
                load=lambda i=i: make_sample(self.seed, i, self.size, self.edit_types),
                source=f"synthetic index {i}",
            )

    def checksum(self) -> str:
        spec = {
            "generator": "emb-synthetic-v1",
            "n": self.num_samples,
            "size": self.size,
            "seed": self.seed,
            "edit_types": list(self.edit_types),
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "num_samples": self.num_samples, "size": self.size, "seed": self.seed}


def write_dataset(dataset: EditDataset, out_dir: Path, limit: int | None = None) -> int:
    """Write any dataset in the project's own format (manifest.jsonl + PNG files). Returns the sample count."""
    from benchmark.datasets.folder import write_sample

    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out_dir / "manifest.jsonl", "w") as manifest:
        for ref in dataset.refs():
            if limit is not None and n >= limit:
                break
            manifest.write(json.dumps(write_sample(ref.load(), out_dir)) + "\n")
            n += 1
    return n
