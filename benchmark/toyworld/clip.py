"""The toy world's CLIP: an open_clip model (small ViT image tower + text tower over the real CLIP BPE vocabulary)
trained contrastively on rendered scenes, with hard-negative captions (one attribute changed, colours swapped
between objects) so it separates exactly the differences an edit makes.

It serves three roles: CLIPScore on this world, the feature network of a FID on this world, and (its text tower,
converted to a transformers ``CLIPTextModel``) the text encoder of the toy diffusion model, as OpenAI's CLIP text
tower is Stable Diffusion 1.x's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.datasets.synthetic import Scene
from benchmark.toyworld.render_batches import (
    attribute_variants,
    hard_negative_caption,
    scene_batch,
    swap_binding_caption,
)

# open_clip model config (written as open_clip_config.json, loadable with ``local-dir:``)
CLIP_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 64,
    # 4 px patches: an object (~16 px) spans 4×4 patches, so its silhouette (circle vs square) is visible to the
    # tokens; with 8 px patches shape was learned far more slowly than colour
    "vision_cfg": {"image_size": 64, "patch_size": 4, "width": 64, "layers": 4, "head_width": 16, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 3, "mlp_ratio": 4.0},
}
# Training feeds images in [-1, 1], i.e. ToTensor() then Normalize(0.5, 0.5). The shipped model has that folded into
# its patch embedding (``fold_input_normalisation``) so that it expects open_clip's *default* (OpenAI) mean and std:
# every open_clip loading route (``local-dir:``, a model-config JSON + checkpoint file, ...) then preprocesses right.
TRAIN_MEAN, TRAIN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_PREPROCESS_CFG: dict[str, Any] = {
    "size": 64,
    "mode": "RGB",
    "mean": list(OPENAI_MEAN),
    "std": list(OPENAI_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
MODEL_NAME = "toyworld_clip"  # the name under which the model-config JSON registers (open_clip.add_model_config)


def build_clip(seed: int = 0):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**CLIP_MODEL_CFG)


def tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=CLIP_MODEL_CFG["text_cfg"]["context_length"])


@dataclass
class ClipBatch:
    """Rendered scenes with their captions, distractor captions, and the per-object attribute variants."""

    images: torch.Tensor  # (B, 3, 64, 64) in [-1, 1]
    captions: list[str]  # B, the positives
    negatives: list[str]  # extra distractors for the image→text direction
    variant_texts: list[str]  # unique captions of the variant groups
    # per attribute: (image rows (G,), variant text indices (G, k), index of the true variant (G,))
    groups: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def clip_loss(model, batch: ClipBatch, tok) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Symmetric InfoNCE over the batch (extra distractors in the image→text direction), plus, for every object
    of every image, cross-entropy over its caption's colour (resp. shape) variants: a scene must score its own
    caption above the same caption with that one object's colour or shape changed. The second term is what makes
    shape, which in-batch negatives barely ask about, learned in an affordable number of steps."""
    n_pos, n_all = len(batch.captions), len(batch.captions) + len(batch.negatives)
    texts = tok(batch.captions + batch.negatives + batch.variant_texts)
    img = F.normalize(model.encode_image(batch.images), dim=-1)
    txt = F.normalize(encode_text_short(model, texts), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * img @ txt[:n_all].t()  # (B, B + N)
    target = torch.arange(n_pos)
    i2t = F.cross_entropy(logits, target)
    t2i = F.cross_entropy(logits[:, :n_pos].t(), target)
    terms = {"contrastive": (i2t + t2i) / 2}
    variant_txt = txt[n_all:]
    for attribute, (rows, idx, true) in batch.groups.items():
        group_logits = scale * torch.einsum("gd,gkd->gk", img[rows], variant_txt[idx])
        terms[attribute] = F.cross_entropy(group_logits, true)
    return sum(terms.values()), {k: v.detach() for k, v in terms.items()}


def variant_groups(scenes: list[Scene]) -> tuple[list[str], dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Every object's colour and shape variants (``attribute_variants``) as index groups into unique captions."""
    index: dict[str, int] = {}
    groups: dict[str, tuple[list[int], list[list[int]], list[int]]] = {"colour": ([], [], []), "shape": ([], [], [])}
    for row, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            for attribute, (rows, idx, true) in groups.items():
                variants = attribute_variants(scene, k, attribute)
                rows.append(row)
                idx.append([index.setdefault(text, len(index)) for _, text in variants])
                true.append([v for v, _ in variants].index(getattr(obj, attribute)))
    tensors = {a: (torch.tensor(r), torch.tensor(i), torch.tensor(t)) for a, (r, i, t) in groups.items()}
    return list(index), tensors


def encode_text_short(model, ids: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` computed only up to the longest caption's end token: under the causal mask the
    positions after it cannot change the pooled (end-token) output, and the world's captions use ~20 of 77."""
    n = int(ids.argmax(dim=-1).max()) + 1  # the end token has the highest id
    x = model.token_embedding(ids[:, :n]) + model.positional_embedding[:n]
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), ids[:, :n].argmax(dim=-1)]
    return x @ model.text_projection


# Share of training images softened (``soften``): images a diffusion model generates, and even the VAE's
# reconstructions of renders, are softer than renders; a CLIP trained on crisp renders only mistook a reconstructed
# square for a circle (shape accuracy 0.98 on renders, 0.84 on their VAE round trips), and it scores generated images.
SOFTEN_P = 0.5
SOFTEN_SIGMA = (0.5, 1.5)  # Gaussian blur, pixels
SOFTEN_NOISE = 0.05  # max std of added pixel noise, in [-1, 1] units


def soften(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random ``SOFTEN_P`` of the images blurred (σ uniform in ``SOFTEN_SIGMA``) with a little pixel noise."""
    from torchvision.transforms.v2.functional import gaussian_blur

    out = images.clone()
    for i in np.flatnonzero(rng.random(len(images)) < SOFTEN_P):
        sigma = float(rng.uniform(*SOFTEN_SIGMA))
        kernel = 2 * math.ceil(3 * sigma) + 1
        noise = torch.from_numpy(rng.standard_normal(images.shape[1:]).astype(np.float32))
        blurred = gaussian_blur(images[i], [kernel, kernel], [sigma, sigma])
        out[i] = (blurred + float(rng.uniform(0, SOFTEN_NOISE)) * noise).clamp(-1, 1)
    return out


def clip_batch(seed: int, step: int, batch_size: int, stream: str = "clip") -> ClipBatch:
    batch = scene_batch(seed, stream, step, batch_size)
    rng = np.random.default_rng([seed, step, 7 if stream == "clip" else 17])
    negatives = [hard_negative_caption(s, rng) for s in batch.scenes]
    swaps = [swap_binding_caption(s, rng) for s in batch.scenes]
    negatives += [c for c in swaps if c is not None]
    texts, groups = variant_groups(batch.scenes)
    return ClipBatch(soften(batch.images, rng), batch.captions, negatives, texts, groups)


@torch.no_grad()
def fold_input_normalisation(model) -> Any:
    """A copy of ``model`` that takes images normalised with OpenAI's mean/std and computes exactly what ``model``
    computes on the same images normalised with (0.5, 0.5): u = 2x − 1 = 2s·v + (2m − 1) for v = (x − m)/s, so the
    patch convolution's weights scale by 2s per input channel and the constant part becomes a per-channel offset,
    added to every patch token's positional embedding (the class token does not pass through the convolution)."""
    import copy

    folded = copy.deepcopy(model)
    conv = folded.visual.conv1
    if conv.bias is not None:
        raise RuntimeError("fold_input_normalisation: patch embedding with a bias is not supported")
    s = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    m = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    w = conv.weight.detach().clone()
    offset = (w * (2 * m - 1)).sum(dim=(1, 2, 3))  # (width,)
    conv.weight.copy_(w * 2 * s)
    folded.visual.positional_embedding[1:] += offset
    return folded


def save_open_clip(model, out_dir: Path, fp16: bool = True) -> Path:
    """The open_clip ``local-dir:`` layout (open_clip_config.json + open_clip_model.safetensors), plus the bare model
    config as ``toyworld_clip.json`` for the ``add_model_config`` + checkpoint-file route. ``model`` is a trained
    model (taking [-1, 1] inputs); what is saved takes OpenAI-normalised inputs (see ``fold_input_normalisation``)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": CLIP_MODEL_CFG, "preprocess_cfg": CLIP_PREPROCESS_CFG}
    (out_dir / "open_clip_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out_dir / f"{MODEL_NAME}.json").write_text(json.dumps(CLIP_MODEL_CFG, indent=2) + "\n")
    folded = fold_input_normalisation(model)
    state = {
        k: (v.half() if fp16 and v.is_floating_point() else v).contiguous() for k, v in folded.state_dict().items()
    }
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    return out_dir


def load_open_clip(folder: Path | str, device: str | torch.device = "cpu"):
    """(model, preprocess, tokenizer) of a toy CLIP folder, through open_clip's own ``local-dir:`` loader."""
    import open_clip

    name = f"local-dir:{Path(folder)}"
    model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def text_tower_to_hf(model) -> Any:
    """The CLIP text tower as a transformers ``CLIPTextModel`` with identical outputs (last hidden state =
    open_clip's ``ln_final`` output), so SD pipelines can use it as their text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    t = CLIP_MODEL_CFG["text_cfg"]
    cfg = CLIPTextConfig(
        vocab_size=t["vocab_size"],
        hidden_size=t["width"],
        intermediate_size=int(t["width"] * t["mlp_ratio"]),
        num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"],
        max_position_embeddings=t["context_length"],
        hidden_act="gelu",  # open_clip's nn.GELU (exact), not OpenAI's quick_gelu
        layer_norm_eps=1e-5,
        projection_dim=CLIP_MODEL_CFG["embed_dim"],
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    hf = CLIPTextModel(cfg)
    src = model.state_dict()
    w = t["width"]
    state = {
        "text_model.embeddings.token_embedding.weight": src["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": src["positional_embedding"],
        "text_model.final_layer_norm.weight": src["ln_final.weight"],
        "text_model.final_layer_norm.bias": src["ln_final.bias"],
    }
    for i in range(t["layers"]):
        a, b = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        qkv_w, qkv_b = src[a + "attn.in_proj_weight"], src[a + "attn.in_proj_bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[b + f"self_attn.{name}.weight"] = qkv_w[j * w : (j + 1) * w]
            state[b + f"self_attn.{name}.bias"] = qkv_b[j * w : (j + 1) * w]
        pairs = {
            "attn.out_proj": "self_attn.out_proj",
            "ln_1": "layer_norm1",
            "ln_2": "layer_norm2",
            "mlp.c_fc": "mlp.fc1",
            "mlp.c_proj": "mlp.fc2",
        }
        for s, d in pairs.items():
            state[b + d + ".weight"] = src[a + s + ".weight"]
            state[b + d + ".bias"] = src[a + s + ".bias"]
    # transformers 5 has no ``text_model.`` level inside CLIPTextModel's own state dict; older versions do
    prefix = "text_model." if any(k.startswith("text_model.") for k in hf.state_dict()) else ""
    state = {prefix + k.removeprefix("text_model."): v.clone() for k, v in state.items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"text tower conversion: missing {missing}, unexpected {unexpected}")
    return hf.eval()
