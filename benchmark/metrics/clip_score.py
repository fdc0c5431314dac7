"""CLIPScore of an image and its prompt through open_clip, batched, with an explicit scale.

``scale``: ``100`` → 100·max(cos, 0) (torchmetrics' CLIPScore, PIE-Bench), ``2.5`` → 2.5·max(cos, 0) (Hessel et
al.), any other positive number w → w·max(cos, 0), ``raw`` → the cosine itself. torchmetrics' own CLIPScore is not
used: with transformers 5 its ``get_*_features`` returns an output object, so it breaks; this computes the same
quantity from open_clip embeddings (both L2-normalised, cosine = their dot product), clamped per sample (torchmetrics
clamps the mean of its accumulated batch; identical for one image per call, PIE-Bench's way).

Weights: ``model`` is an open_clip model name; ``pretrained`` is a tag (``openai``, ``laion2b_s32b_b82k``...),
resolved to the file already in the local Hugging Face / open_clip cache, or a local checkpoint path.
``model_config`` registers a custom model JSON (name = file stem), e.g. a tiny test model. OpenAI's weights need
QuickGELU: use ``ViT-L-14-quickgelu`` with ``pretrained: openai`` (open_clip warns and computes something else for
``ViT-L-14`` + ``openai``; this refuses that combination).

Images go through open_clip's preprocessing of the model (resize the short side to 224 with bicubic, centre crop,
normalise). Regions: ``whole`` is the full image; ``edit`` is the image multiplied by the GT mask in uint8
(``edit_mode: multiply``, PIE-Bench) or cropped to the mask's bounding box (``edit_mode: crop``). Prompts longer than
the context (77 tokens) are truncated by open_clip (first 76 tokens + end token); each sample records whether its
prompt was truncated (``clip_prompt_truncated``: 0/1, for the source prompt ``clip_source_prompt_truncated``).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark.metrics.base import Metric, ScoreContext, ScoreItem
from benchmark.metrics.images import mask_at
from benchmark.metrics.networks import cached_network, hf_cached_file
from benchmark.models import MissingWeightsError
from benchmark.registry import METRICS

log = logging.getLogger("emb")

IMAGES = ("edited", "source", "target")
PROMPTS = ("target", "source")


def parse_scale(scale: Any) -> float | None:
    """A multiplier applied to max(cos, 0), or None for the raw cosine."""
    if isinstance(scale, str) and scale.strip().lower() == "raw":
        return None
    try:
        value = float(scale)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metric 'clip_score': scale='{scale}'; use 100, 2.5 (or another factor) or raw") from err
    if value <= 0:
        raise ValueError(f"metric 'clip_score': scale={value} must be positive (or raw)")
    return value


def resolve_pretrained(model: str, pretrained: str | None, cache_dir: str | None = None) -> tuple[Path, dict]:
    """The local checkpoint file of ``pretrained`` (a path or a tag) and the tag's preprocessing config."""
    import open_clip

    if not pretrained:
        raise MissingWeightsError(
            f"metric clip_score: pretrained is not set for model {model}; give a tag (e.g. openai) or a checkpoint path"
        )
    from benchmark.models import resolve_local_path

    path = Path(resolve_local_path(str(pretrained))).expanduser()
    if path.is_file():
        return path, {}
    tag_cfg = open_clip.get_pretrained_cfg(model, str(pretrained))
    if not tag_cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise MissingWeightsError(
            f"metric clip_score: pretrained='{pretrained}' is neither a file nor a tag of {model} (tags: {tags})"
        )
    model_cfg = open_clip.get_model_config(model) or {}
    if tag_cfg.get("quick_gelu") and not model_cfg.get("quick_gelu"):
        raise ValueError(
            f"metric clip_score: weights {model}/{pretrained} were trained with QuickGELU but model {model} uses "
            f"GELU; use model={model}-quickgelu"
        )
    found = None
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        repo, filename = hub.rstrip("/").rsplit("/", 1) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        found = hf_cached_file(repo, names)
    url = tag_cfg.get("url", "")
    if found is None and url:
        candidate = Path(cache_dir or "~/.cache/clip").expanduser() / url.rsplit("/", 1)[-1]
        found = candidate if candidate.is_file() else None
    if found is None:
        where = f"https://huggingface.co/{hub.rstrip('/')}" if hub else url
        raise MissingWeightsError(
            f"metric clip_score: weights {model}/{pretrained} are not in the local cache; download them from "
            f"{where} and set pretrained=/path/to/the/checkpoint"
        )
    preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    return found, preprocess


def load_clip(model: str, pretrained: str | None, model_config: str | None, device: torch.device) -> tuple:
    """(model, preprocess, tokenizer), loaded once per process."""
    import open_clip

    if model_config:
        from benchmark.models import resolve_local_path

        open_clip.add_model_config(str(Path(resolve_local_path(str(model_config))).expanduser()))
    checkpoint, pre = resolve_pretrained(model, pretrained)

    def build() -> tuple:
        net, _, preprocess = open_clip.create_model_and_transforms(
            model,
            pretrained=str(checkpoint),
            device=device,
            image_mean=pre.get("mean"),
            image_std=pre.get("std"),
            image_interpolation=pre.get("interpolation"),
            image_resize_mode=pre.get("resize_mode"),
        )
        return net.eval().requires_grad_(False), preprocess, open_clip.get_tokenizer(model)

    return cached_network(("open_clip", model, str(checkpoint), str(device)), build)


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens the text encoder would need, start and end markers included (before truncation)."""
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "sot_token_id"):
        return len(tokenizer.encode(text)) + 2
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None:
        return len(inner(text)["input_ids"])
    return 0


def edit_region_image(image: Image.Image, mask: np.ndarray, mode: str) -> Image.Image | None:
    """The edit region as CLIP sees it: image × mask (uint8, PIE-Bench) or the mask's bounding-box crop."""
    m = mask_at(mask, image.size)
    if not m.any():
        return None
    arr = np.asarray(image.convert("RGB"))
    if mode == "multiply":
        return Image.fromarray(np.uint8(arr * m[..., None].astype(np.float64)))
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    return image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


@METRICS.register("clip_score")
class CLIPScore(Metric):
    name = "clip_score"
    higher_is_better = {"clip_score": True, "clip_prompt_truncated": False}
    needs_image = True
    supported_regions = ("whole", "edit")

    def __init__(
        self,
        region: str | list[str] = "whole",
        model: str = "ViT-L-14-quickgelu",
        pretrained: str | None = "openai",
        model_config: str | None = None,
        scale: Any = 100,
        image: str = "edited",
        prompt: str | None = None,
        edit_mode: str = "multiply",
        mask_border: int = 0,
        strip_brackets: bool = False,
        batch_size: int = 32,
        prefix: str = "",
    ) -> None:
        super().__init__(
            region,
            model=model,
            pretrained=pretrained,
            model_config=model_config,
            scale=scale,
            image=image,
            prompt=prompt,
            edit_mode=edit_mode,
            mask_border=mask_border,
            strip_brackets=strip_brackets,
            batch_size=batch_size,
            prefix=prefix,
        )
        if image not in IMAGES:
            raise ValueError(f"metric 'clip_score': image='{image}'; use one of {', '.join(IMAGES)}")
        prompt = prompt or ("source" if image == "source" else "target")
        if prompt not in PROMPTS:
            raise ValueError(f"metric 'clip_score': prompt='{prompt}'; use one of {', '.join(PROMPTS)}")
        if edit_mode not in ("multiply", "crop"):
            raise ValueError(f"metric 'clip_score': edit_mode='{edit_mode}'; use multiply or crop")
        self.model_name, self.pretrained, self.model_config = model, pretrained, model_config
        self.scale = parse_scale(scale)
        self.image, self.prompt, self.edit_mode = image, prompt, edit_mode
        self.mask_border, self.strip_brackets = int(mask_border), bool(strip_brackets)
        self.batch_size, self.prefix = max(1, int(batch_size)), prefix
        self.net: Any = None
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, bool]] = OrderedDict()
        self.truncated = 0
        self.prompts = 0

    # --- names -------------------------------------------------------------------------------------------------
    def value_names(self) -> dict[str, str]:
        stem = "clip_score" if self.image == "edited" else f"clip_score_{self.image}"
        return {r: f"{self.prefix}{stem}_{r}" for r in self.regions}

    def truncation_name(self) -> str:
        return (
            f"{self.prefix}clip_prompt_truncated"
            if self.prompt == "target"
            else (f"{self.prefix}clip_source_prompt_truncated")
        )

    def directions(self) -> dict[str, bool]:
        return {**{n: True for n in self.value_names().values()}, self.truncation_name(): False}

    # --- loading -----------------------------------------------------------------------------------------------
    def weights_problem(self) -> str | None:
        if self.network is not None:
            return None
        try:
            resolve_pretrained(self.model_name, self.pretrained)
        except MissingWeightsError as err:
            return str(err)
        return None

    def prepare(self, ctx: ScoreContext) -> None:
        super().prepare(ctx)
        # a given (model, preprocess, tokenizer) is used as is; otherwise loaded once per process
        self.net = self.network or load_clip(self.model_name, self.pretrained, self.model_config, self.device)

    # --- scoring -----------------------------------------------------------------------------------------------
    def clean_prompt(self, text: str) -> str:
        if self.strip_brackets:
            text = text.replace("[", "").replace("]", "")
        return text.strip()

    def text_features(self, prompts: list[str]) -> dict[str, tuple[torch.Tensor, bool]]:
        """Normalised text embeddings and truncation flags, each distinct prompt encoded once."""
        model, _, tokenizer = self.net
        todo = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        context = int(getattr(tokenizer, "context_length", 77) or 77)
        for start in range(0, len(todo), self.batch_size):
            part = todo[start : start + self.batch_size]
            with torch.no_grad():
                feats = model.encode_text(tokenizer(part).to(self.device)).float()
            feats = feats / feats.norm(dim=-1, keepdim=True)
            for text, f in zip(part, feats.cpu(), strict=True):
                self._text_cache[text] = (f, token_count(tokenizer, text) > context)
        while len(self._text_cache) > 4096:
            self._text_cache.popitem(last=False)
        return {p: self._text_cache[p] for p in prompts}

    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        model, preprocess, _ = self.net
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([preprocess(im) for im in images[start : start + self.batch_size]]).to(self.device)
            with torch.no_grad():
                feats = model.encode_image(batch).float()
            out.append((feats / feats.norm(dim=-1, keepdim=True)).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def to_score(self, cos: torch.Tensor) -> torch.Tensor:
        return cos if self.scale is None else self.scale * cos.clamp(min=0)

    def pick_image(self, item: ScoreItem) -> Image.Image | None:
        if self.image == "edited":
            return item.output.image
        return item.sample.image if self.image == "source" else item.sample.target_image

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        names = self.value_names()
        rows: list[dict[str, float]] = [{} for _ in items]
        jobs: list[tuple[int, str, Image.Image, str]] = []  # (item, region, image, prompt)
        for i, item in enumerate(items):
            image = self.pick_image(item)
            if image is None:
                continue
            text = self.clean_prompt(
                item.sample.target_prompt if self.prompt == "target" else item.sample.source_prompt
            )
            for region in self.regions:
                if region == "whole":
                    jobs.append((i, region, image, text))
                    continue
                mask = item.sample.mask
                crop = None
                if mask is not None:
                    crop = edit_region_image(
                        image, mask_at(mask, item.sample.image.size, self.mask_border), self.edit_mode
                    )
                if crop is None:  # empty edit region: undefined
                    rows[i][names[region]] = math.nan
                else:
                    jobs.append((i, region, crop, text))
        if not jobs:
            return rows
        texts = self.text_features([j[3] for j in jobs])
        img = self.image_features([j[2] for j in jobs])
        txt = torch.stack([texts[j[3]][0] for j in jobs])
        scores = self.to_score((img * txt).sum(dim=-1).to(torch.float64))
        for (i, region, _, text), value in zip(jobs, scores, strict=True):
            rows[i][names[region]] = float(value)
            rows[i][self.truncation_name()] = float(texts[text][1])
        for row in rows:
            if self.truncation_name() in row:
                self.prompts += 1
                self.truncated += int(row[self.truncation_name()])
        return rows

    def compute(self) -> dict[str, float]:
        if self.truncated:
            log.warning(
                "clip_score: %d of %d %s prompts were longer than the text encoder's context and were truncated "
                "(per sample: %s)",
                self.truncated,
                self.prompts,
                self.prompt,
                self.truncation_name(),
            )
        return {}

    def reset(self) -> None:
        self.truncated = self.prompts = 0
