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
    from benchmark.toyworld.words import object_token_positions

    text = "a red circle, a blue square and a green triangle on a striped background"
    ids = tokenizer(text).input_ids
    words = [[tokenizer.convert_ids_to_tokens(ids[i]) for i in obj] for obj in object_token_positions(tokenizer, text)]
    assert words == [["red</w>", "circle</w>"], ["blue</w>", "square</w>"], ["green</w>", "triangle</w>"]]


def test_grounding_loss_reads_the_unets_cross_attention_with_gradients(tokenizer):
    """The grounding loss sees every cross-attention layer at 16×16 and 8×8 of a real UNet; its token term is 0 for
    attention entirely inside the objects and 1 entirely outside, its pixel term far smaller for the former; the
    gradient reaches the cross-attention keys."""
    from benchmark.attention import install_controller
    from benchmark.toyworld.render_batches import scene_batch
    from benchmark.toyworld.unet import AttentionGrab, build_unet, grounding_loss, grounding_targets

    batch = scene_batch(seed=0, stream="test", step=0, batch_size=3)
    captions = [batch.captions[0], "", batch.captions[2]]  # a dropped caption has nothing to ground
    rows, tokens, masks = grounding_targets(tokenizer, captions, batch.masks)
    n_objects = len(batch.scenes[0].objects) + len(batch.scenes[2].objects)
    assert len(rows) == n_objects and set(rows.tolist()) == {0, 2} and masks.shape == (n_objects, 1, 64, 64)

    unet = build_unet(seed=0)
    grab = AttentionGrab()
    cond = torch.randn(3, 77, unet.config.cross_attention_dim)
    with install_controller(unet, grab):
        unet(torch.randn(3, 4, 16, 16), torch.tensor([10, 500, 900]), cond)
    # down_blocks.0 (16) and .1 (8) hold one transformer each, up_blocks.1 (8) and .2 (16) two each
    assert sorted(side for _, side, _ in grab.maps) == [8, 8, 8, 16, 16, 16]
    token, pixel = grounding_loss(grab.maps, rows, tokens, masks)
    assert 0 < float(token) < 1 and float(pixel) > 0
    (token + pixel).backward()
    key = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight
    assert key.grad is not None and float(key.grad.abs().sum()) > 0

    def attention_on(region: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
        probs = torch.full((3, 16 * 16, 77), 1e-9)
        for r, toks, m in zip(rows, tokens, region, strict=True):
            probs[r, :, toks] = probs[r, :, toks] + m.flatten()[:, None]  # 16×16 cells, objects never overlap
        return [(1, 16, probs)]

    cells = torch.nn.functional.interpolate(masks, size=(16, 16), mode="area")
    inside, outside = (cells == 1).float(), (cells == 0).float()
    token_in, pixel_in = grounding_loss(attention_on(inside), rows, tokens, masks)
    token_out, pixel_out = grounding_loss(attention_on(outside), rows, tokens, masks)
    assert float(token_in) < 1e-6 and float(token_out) > 1 - 1e-6
    assert float(pixel_in) < float(pixel_out) / 10


def test_clip_batch_variant_groups_hold_every_objects_true_caption():
    """Every object of every scene has a colour group (6 captions) and a shape group (4), each holding the scene's
    own caption at its true index and otherwise that caption with the one attribute changed."""
    from benchmark.datasets.synthetic import COLOURS, SHAPES
    from benchmark.toyworld.clip import clip_batch
    from benchmark.toyworld.render_batches import scene_batch

    b = clip_batch(seed=0, step=0, batch_size=4)
    scenes = scene_batch(seed=0, stream="clip", step=0, batch_size=4).scenes
    n_objects = sum(len(s.objects) for s in scenes)
    assert b.groups["colour"][1].shape == (n_objects, len(COLOURS))
    assert b.groups["shape"][1].shape == (n_objects, len(SHAPES))
    assert len(set(b.variant_texts)) == len(b.variant_texts)
    for rows, idx, true in b.groups.values():
        assert [b.variant_texts[i[t]] for i, t in zip(idx, true, strict=True)] == [b.captions[r] for r in rows]
        for row, group in zip(rows, idx, strict=True):
            texts = [b.variant_texts[i] for i in group]
            assert len(set(texts)) == len(texts)
            assert all(sum(x != y for x, y in zip(t.split(), b.captions[row].split(), strict=True)) <= 1 for t in texts)


def test_clip_batches_soften_about_half_their_renders_reproducibly():
    """``soften`` blurs a random share of the batch (reproducibly from the batch's seed and step) and leaves the
    rest bit-identical to the renders; softened images are blurred renders and stay in [-1, 1]."""
    from benchmark.toyworld.clip import SOFTEN_P, clip_batch
    from benchmark.toyworld.render_batches import scene_batch

    renders = scene_batch(seed=0, stream="clip", step=3, batch_size=64).images
    a, b = clip_batch(seed=0, step=3, batch_size=64).images, clip_batch(seed=0, step=3, batch_size=64).images
    assert torch.equal(a, b)
    changed = (a != renders).flatten(1).any(1)
    assert abs(changed.float().mean().item() - SOFTEN_P) < 0.2
    assert a.min() >= -1 and a.max() <= 1

    # softened images are nearer to their render blurred (σ 1, mid-range) than to the render itself (all but a few
    # plain scenes, where blur changes little and the pixel noise decides)
    from torchvision.transforms.v2.functional import gaussian_blur

    soft, sharp = a[changed], renders[changed]
    blurred = gaussian_blur(sharp, [7, 7], [1.0, 1.0])
    nearer = (soft - blurred).square().mean(dim=(1, 2, 3)) < (soft - sharp).square().mean(dim=(1, 2, 3))
    assert nearer.float().mean() > 0.9


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
    from benchmark.toyworld.train import STAGE_NAMES, _load_safetensors, train

    out = tmp_path / "run"
    model_dir = train(out, steps_scale=1e-4, samples=False)
    for name in STAGE_NAMES:
        rows = (out / "logs" / f"{name}.csv").read_text().splitlines()
        assert rows[0] == "step,loss,lr,seconds,parts" and len(rows) == 2
    assert "grounding=" in (out / "logs" / "unet.csv").read_text()  # the UNet's loss terms are logged
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
    assert summary["provenance"]["versions"]["torch"] and "commit" in summary["provenance"]["git"]
    # same seed, same thread count: a second run from scratch gives bit-identical weights at every stage
    train(tmp_path / "again", steps_scale=1e-4, samples=False)
    for name in STAGE_NAMES:
        first, _ = _load_safetensors(out / "stages" / f"{name}.safetensors")
        second, _ = _load_safetensors(tmp_path / "again" / "stages" / f"{name}.safetensors")
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first), name

    cfg = compose(["model=toyworld"]).model
    cfg.text2img, cfg.inpaint = str(model_dir / TEXT2IMG), str(model_dir / INPAINT)
    bundle = ModelBundle(cfg)
    pipe = bundle.pipeline("text2img")
    assert pipe.unet.config.in_channels == 4 and pipe.unet.dtype == torch.float32
    assert bundle.pipeline("inpaint").unet.config.in_channels == 9


def test_an_interrupted_stage_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Kill a stage mid-way (after a checkpoint), rerun it: optimiser, EMA, data stream and log continue exactly, so the
    final weights are bit-identical to a run that was never stopped. This is what makes `--resume` safe for the
    hour-long default schedule."""
    from benchmark.toyworld import train as tw

    monkeypatch.setattr(tw, "CKPT_EVERY", 3)
    spec = tw.StageSpec("probe", steps=8, batch_size=4, lr=1e-2, warmup=2, weight_decay=0.01, ema_decay=0.9)

    def run(out: Path, fail_at: int | None = None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))

        def loss_fn(step: int) -> torch.Tensor:
            if step == fail_at:
                raise KeyboardInterrupt
            x = torch.randn(spec.batch_size, 4, generator=tw.generator(0, spec.name, step))
            return ((model(x).squeeze(1) - x.sum(1)) ** 2).mean()

        return tw._load_safetensors(tw.run_stage(spec, out, model, loss_fn))[0]

    straight = run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "stopped", fail_at=7)
    assert (tmp_path / "stopped" / "checkpoints" / "probe.pt").exists()
    resumed = run(tmp_path / "stopped")
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    log_rows = (tmp_path / "stopped" / "logs" / "probe.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in log_rows] == list(range(spec.steps))  # rows of lost steps are redone once


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
    # the SD-shaped family's budget; stages trained on their own (pixel/, ...) have their own (their tests)
    family = [SHIPPED_DIR / name for name in (TEXT2IMG, INPAINT, CLIP)]
    size = sum(p.stat().st_size for d in family for p in d.rglob("*") if p.is_file())
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


@pytest.mark.slow
def test_train_reproduces_the_shipped_figures(tmp_path):
    """`emb toyworld train` from scratch (about an hour on 2 cores), then `emb toyworld evidence --reference` against
    the shipped figures: every figure within the card's tolerance and above its bar."""
    from benchmark.cli import main

    out = tmp_path / "run"
    assert main(["toyworld", "train", "--out", str(out), "--no-samples"]) == 0
    figures = tmp_path / "figures.json"
    code = main(
        [
            "toyworld",
            "evidence",
            "--model",
            str(out / "model"),
            "--reference",
            str(SHIPPED_DIR / "evidence.json"),
            "--out",
            str(figures),
        ]
    )
    assert code == 0, json.loads(figures.read_text())["reproduction"]


def test_evidence_reference_check_rejects_a_malformed_reference(tmp_path, capsys):
    from benchmark.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"figures": []}')
    assert main(["toyworld", "evidence", "--reference", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "values" in err[0]


def test_reproduction_comparison_applies_the_tolerance():
    from benchmark.toyworld.evidence import REPRODUCTION_TOLERANCE, compare_to_reference

    ref = {"values": dict.fromkeys(REPRODUCTION_TOLERANCE, 0.5)}
    near = {"values": {k: 0.5 + 0.9 * t for k, t in REPRODUCTION_TOLERANCE.items()}}
    far = {"values": {**near["values"], "attention_mask_iou": 0.5 - 2 * REPRODUCTION_TOLERANCE["attention_mask_iou"]}}
    assert all(c["ok"] for c in compare_to_reference(near, ref).values())
    cmp = compare_to_reference(far, ref)
    assert not cmp["attention_mask_iou"]["ok"] and cmp["clip_shape_acc"]["ok"]


def test_evidence_intervals_are_wilson_for_accuracies_and_t_for_ious():
    from benchmark.toyworld.evidence import mean_ci95

    # Wilson score interval, by its closed form: 60 hits of 100
    p, n, z = 0.6, 100, 1.959963984540054
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert mean_ci95([True] * 60 + [False] * 40) == pytest.approx([centre - half, centre + half])
    lo, hi = mean_ci95([True] * 12)  # all hits: the interval stays inside [0, 1] and is not a point
    assert 0.7 < lo < 1.0 and hi == pytest.approx(1.0)
    x = np.array([0.3, 0.5, 0.6, 0.4])
    half_t = 3.182446305284263 * x.std(ddof=1) / 2  # t(0.975, 3) * s / sqrt(4)
    assert mean_ci95(list(x)) == pytest.approx([x.mean() - half_t, x.mean() + half_t])


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
