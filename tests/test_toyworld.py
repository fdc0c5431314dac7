"""The toy world: model conversion and token bookkeeping, a smoke run of `emb toyworld train` (1 step per stage,
resumed), the shipped weights loading through the same paths as a hub model, and (slow) the quality figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.toyworld import CLIP, INPAINT, SHIPPED_DIR, TEXT2IMG
from tests.conftest import compose

SHIPPED_BUDGET_BYTES = 30_000_000


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from benchmark.models import load_clip_tokenizer, write_clip_tokenizer

    return load_clip_tokenizer(write_clip_tokenizer(tmp_path_factory.mktemp("tok")))


def test_text_tower_converts_to_an_identical_transformers_text_encoder(tokenizer):
    from benchmark.toyworld.clip import build_clip, encode_text_short, text_tower_to_hf
    from benchmark.toyworld.clip import tokenizer as oc_tokenizer

    model = build_clip(seed=3).eval()
    hf = text_tower_to_hf(model)
    caps = ["a red circle above a blue square on a striped background", "a green cross on a plain background"]
    ids = oc_tokenizer()(caps)
    with torch.no_grad():
        x = model.token_embedding(ids) + model.positional_embedding
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        y = hf(ids).last_hidden_state
        assert torch.allclose(x, y, atol=1e-5)
        # the shortened training forward pass gives open_clip's own text embedding
        assert torch.allclose(encode_text_short(model, ids), model.encode_text(ids), atol=1e-5)
    # the SD tokenizer (pads with the end token) and open_clip's (pads with 0) agree up to the end token
    hf_ids = tokenizer(caps[0]).input_ids
    assert hf_ids == ids[0, : len(hf_ids)].tolist()


def test_object_words_map_to_their_tokens(tokenizer):
    from benchmark.toyworld.evidence import object_token_positions

    text = "a red circle, a blue square and a green triangle on a striped background"
    ids = tokenizer(text).input_ids
    words = [[tokenizer.convert_ids_to_tokens(ids[i]) for i in obj] for obj in object_token_positions(tokenizer, text)]
    assert words == [["red</w>", "circle</w>"], ["blue</w>", "square</w>"], ["green</w>", "triangle</w>"]]


def test_inpaint_training_masks_match_the_editing_ground_truth():
    from benchmark.toyworld.unet import inpaint_batch

    images, masks, captions = inpaint_batch(seed=0, step=0, batch_size=12)
    assert images.shape == (12, 3, 64, 64) and masks.shape == (12, 1, 64, 64)
    assert float(images.min()) >= -1 and float(images.max()) <= 1
    assert all(0 < m.sum() for m in masks) and all(c.endswith("background") for c in captions)
    again = inpaint_batch(seed=0, step=0, batch_size=12)
    assert torch.equal(again[0], images) and torch.equal(again[1], masks) and again[2] == captions


def test_train_smoke_resume_and_load(tmp_path):
    """One step per stage into tmp, then --resume (nothing left to do) and the exported folders load through
    ModelBundle exactly like the shipped ones."""
    from benchmark.models import ModelBundle
    from benchmark.toyworld.train import STAGE_NAMES, train

    out = tmp_path / "run"
    model_dir = train(out, steps_scale=1e-4, samples=False)
    for name in STAGE_NAMES:
        rows = (out / "logs" / f"{name}.csv").read_text().splitlines()
        assert rows[0] == "step,loss,lr,seconds" and len(rows) == 2
    assert (out / "loss_curves.png").exists()
    with pytest.raises(FileExistsError):
        train(out, steps_scale=1e-4, samples=False)
    with pytest.raises(ValueError, match="different configuration"):
        train(out, resume=True, steps_scale=2e-4, samples=False)
    before = (out / "stages" / "unet.safetensors").read_bytes()
    train(out, resume=True, steps_scale=1e-4, samples=False)
    assert (out / "stages" / "unet.safetensors").read_bytes() == before
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["model_bytes"] < SHIPPED_BUDGET_BYTES

    cfg = compose(["model=toyworld"]).model
    cfg.text2img, cfg.inpaint = str(model_dir / TEXT2IMG), str(model_dir / INPAINT)
    bundle = ModelBundle(cfg)
    pipe = bundle.pipeline("text2img")
    assert pipe.unet.config.in_channels == 4 and pipe.unet.dtype == torch.float32
    assert bundle.pipeline("inpaint").unet.config.in_channels == 9


def test_resolve_local_path_uses_the_project_root(tmp_path, monkeypatch):
    from benchmark.models import resolve_local_path
    from benchmark.provenance import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)
    assert resolve_local_path("conf/model") == str(PROJECT_ROOT / "conf/model")
    assert resolve_local_path("org/some-model") == "org/some-model"  # a hub id stays a hub id
    (tmp_path / "conf" / "model").mkdir(parents=True)
    assert resolve_local_path("conf/model") == "conf/model"  # the working directory wins


def test_shipped_models_load_and_run_like_hub_models(tmp_path, monkeypatch):
    from benchmark.models import ModelBundle
    from benchmark.toyworld.evidence import ToyClip
    from benchmark.toyworld.features import ToyClipFeatures

    monkeypatch.chdir(tmp_path)  # the shipped folders resolve from anywhere
    size = sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*") if p.is_file() and p.suffix != ".png")
    assert size < SHIPPED_BUDGET_BYTES
    bundle = ModelBundle(compose(["model=toyworld"]).model)
    pipe = bundle.pipeline("text2img")
    assert len(pipe.tokenizer) == 49408 and pipe.vae.config.block_out_channels[-1] > 0
    assert pipe.unet.dtype == torch.float32  # float16 storage, upcast on load
    gen = torch.Generator().manual_seed(0)
    image = pipe(
        "a red circle on a plain background", height=64, width=64, num_inference_steps=2, generator=gen
    ).images[0]
    assert image.size == (64, 64)
    inpaint = bundle.pipeline("inpaint")
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    from PIL import Image

    out = inpaint(
        "a blue square on a plain background",
        image=image,
        mask_image=Image.fromarray(mask),
        height=64,
        width=64,
        num_inference_steps=2,
        generator=gen,
    ).images[0]
    assert out.size == (64, 64)
    clip = ToyClip(SHIPPED_DIR / CLIP)
    assert clip.image_features([image]).shape == (1, 64)
    feats = ToyClipFeatures("data/toyworld/clip")(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert feats.shape == (2, feats.shape[1]) and torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_toyworld_dataset_config_is_the_200_sample_editing_set():
    from benchmark.datasets import build_dataset, iter_selected

    cfg = compose(["dataset=toyworld"]).dataset
    assert len(list(build_dataset(cfg).refs())) == 200  # the set
    refs = list(iter_selected(build_dataset(cfg), cfg))
    assert len(refs) == 16  # what the default run takes (dataset.limit)
    s = refs[0].load()
    assert np.array_equal(np.any(np.asarray(s.image) != np.asarray(s.target_image), axis=-1), s.mask)


@pytest.mark.slow
def test_quality_figures_of_the_shipped_world():
    """The model card's figures, recomputed from the shipped weights (several minutes on CPU)."""
    from benchmark.toyworld.evidence import evidence, format_evidence

    figures = evidence(SHIPPED_DIR)
    assert figures["passed"], format_evidence(figures)


def test_shipped_card_states_the_figures():
    card = (SHIPPED_DIR / "MODEL_CARD.md").read_text()
    for key in ("clip_colour_acc", "generated_shape_acc", "attention_mask_iou", "emb toyworld train"):
        assert key in card
    assert Path(SHIPPED_DIR / "loss_curves.png").exists() and Path(SHIPPED_DIR / "samples.png").exists()


def test_shipped_clip_takes_open_clips_default_normalisation():
    from benchmark.toyworld.clip import OPENAI_MEAN, OPENAI_STD, build_clip, fold_input_normalisation

    model = build_clip(seed=1).eval()
    x = torch.rand(2, 3, 64, 64)
    folded = fold_input_normalisation(model)
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(x * 2 - 1), folded.encode_image((x - mean) / std), atol=1e-4)
