"""The toy-world PixArt (`emb toyworld train --stage dit`): its tokenizer, the training/pipeline equivalence of its
text conditioning, a tiny run of the stage resumed bit-identically, the exported folder and the shipped one loading
through `PixArtAlphaPipeline.from_pretrained` and generating, and (slow) the card's figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmark.toyworld import SHIPPED_DIR

SHIPPED_DIT = SHIPPED_DIR / "dit"
GEN_KW = {"height": 64, "width": 64, "use_resolution_binning": False, "clean_caption": False}


@pytest.fixture(scope="module")
def tokenizer():
    from benchmark.toyworld.dit import build_tokenizer

    return build_tokenizer()


def test_every_world_word_is_one_token_and_the_saved_tokenizer_is_the_same(tokenizer, tmp_path):
    from transformers import T5Tokenizer

    from benchmark.datasets.synthetic import BACKGROUND_WORDS, COLOURS, SHAPES
    from benchmark.toyworld.dit import check_tokenizer
    from benchmark.toyworld.words import object_token_positions

    for word in [*COLOURS, *SHAPES, *BACKGROUND_WORDS.values()]:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    text = "a red circle, a blue square and a green cross on a striped background"
    ids = tokenizer(text).input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    assert [tokenizer.convert_ids_to_tokens(ids[i]) for i, _ in object_token_positions(tokenizer, text)] == [
        "▁red",
        "▁blue",
        "▁green",
    ]
    unknown = tokenizer("a cyan cat").input_ids  # words outside the world: single characters, never <unk>
    assert (
        tokenizer.convert_ids_to_tokens(unknown)[:4] == ["▁a", "▁", "c", "y"] and tokenizer.unk_token_id not in unknown
    )
    tokenizer.save_pretrained(str(tmp_path))
    again = T5Tokenizer.from_pretrained(str(tmp_path))
    check_tokenizer(again, str(tmp_path))
    assert again(text).input_ids == ids
    tiny = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)], extra_ids=0)  # the offline trap's kind
    with pytest.raises(ValueError, match="tokens, the toy world's has"):
        check_tokenizer(tiny, "hub-id")


def test_training_conditioning_equals_the_pipelines(tokenizer):
    """Training pads captions to the batch's longest; PixArtAlphaPipeline pads to max_sequence_length=120. Both mask
    the padding in the encoder and in cross-attention, so the transformer's output is the same. Checked to fail:
    without `encoder_attention_mask` the two outputs differ (by ~1e-2 on random weights)."""
    from diffusers import PixArtAlphaPipeline

    from benchmark.toyworld.dit import (
        TextToLatent,
        build_text_encoder,
        build_transformer,
        load_shipped_vae,  # noqa: F401  (the vae is not needed here)
        sampling_scheduler,
        tokenize,
    )

    model = TextToLatent(build_transformer(0), build_text_encoder(0, len(tokenizer))).eval()
    torch.manual_seed(3)
    for p in model.parameters():  # away from the zero-initialised output layers, so the text matters
        p.data.add_(0.05 * torch.randn_like(p))
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=model.text_encoder,
        vae=None,
        transformer=model.transformer,
        scheduler=sampling_scheduler(),
    )
    captions = ["a red circle on a plain background", "a blue square above a green cross on a noisy background"]
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 500])
    cond = {"resolution": None, "aspect_ratio": None}
    with torch.no_grad():
        ids, mask = tokenize(tokenizer, captions)
        text = model.text_encoder(ids, attention_mask=mask)[0]
        ours = model.transformer(
            x, encoder_hidden_states=text, encoder_attention_mask=mask, timestep=t, added_cond_kwargs=cond
        ).sample
        embeds, pmask, _, _ = pipe.encode_prompt(
            captions, do_classifier_free_guidance=False, device="cpu", clean_caption=False
        )
        assert embeds.shape[1] == 120
        theirs = model.transformer(
            x, encoder_hidden_states=embeds, encoder_attention_mask=pmask, timestep=t, added_cond_kwargs=cond
        ).sample
        unmasked = model.transformer(x, encoder_hidden_states=embeds, timestep=t, added_cond_kwargs=cond).sample
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, unmasked, atol=1e-3)


def test_grounding_reads_every_layers_cross_attention_at_the_token_grid(tokenizer):
    """The TokenCompose terms see one 8×8 map per transformer layer, with gradients into the transformer."""
    from benchmark.attention import install_controller
    from benchmark.toyworld.dit import (
        DIT_CFG,
        TextToLatent,
        build_text_encoder,
        build_transformer,
        dit_loss,
        noise_scheduler,
    )
    from benchmark.toyworld.render_batches import scene_batch
    from benchmark.toyworld.unet import AttentionGrab

    model = TextToLatent(build_transformer(0), build_text_encoder(0, len(tokenizer)))
    batch = scene_batch(0, "test", 0, 3)
    grab = AttentionGrab(sides=(8,))
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with install_controller(model.transformer, grab):
        res = dit_loss(
            model,
            noise_scheduler(),
            tokenizer,
            latents,
            batch.captions,
            batch.masks,
            grab,
            torch.Generator().manual_seed(0),
        )
    assert len(grab.maps) == DIT_CFG["num_layers"]
    assert all(side == 8 and probs.shape[1] == 64 for _, side, probs in grab.maps)
    assert 0 < float(res.terms["grounding"]) < 1 and set(res.terms) == {"denoise", "grounding", "pixel"}
    res.terms["grounding"].requires_grad_(False)
    grad = torch.autograd.grad(res.loss, model.transformer.transformer_blocks[0].attn2.to_k.weight)[0]
    assert grad.abs().sum() > 0


def _tiny_stage(monkeypatch, steps: int = 4):
    from benchmark.toyworld import train as tw

    monkeypatch.setattr(tw, "CKPT_EVERY", 2)
    spec = replace(tw.ADDED_STAGES["dit"], steps=steps, batch_size=4, warmup=1)
    monkeypatch.setitem(tw.ADDED_STAGES, "dit", spec)
    return tw


def test_dit_stage_resumes_to_the_same_weights_and_exports_a_loadable_pipeline(tmp_path, monkeypatch):
    """The stage interrupted after a checkpoint and resumed ends bit-identical to one never stopped; its export loads
    through PixArtAlphaPipeline.from_pretrained (float16 on disk) and generates."""
    from diffusers import PixArtAlphaPipeline

    from benchmark.toyworld import dit

    tw = _tiny_stage(monkeypatch)
    tw.train(tmp_path / "straight", stages=("dit",), samples=False)
    real_loss, calls = dit.dit_loss, {"n": 0}

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # step 3, after the checkpoint at step 2
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(dit, "dit_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        tw.train(tmp_path / "stopped", stages=("dit",), samples=False)
    assert (tmp_path / "stopped" / "checkpoints" / "dit.pt").exists()
    monkeypatch.setattr(dit, "dit_loss", real_loss)
    with pytest.raises(FileExistsError):
        tw.train(tmp_path / "stopped", stages=("dit",), samples=False)
    resumed = tw.train(tmp_path / "stopped", stages=("dit",), samples=False, resume=True)
    first, _ = tw._load_safetensors(tmp_path / "straight" / "stages" / "dit.safetensors")
    second, _ = tw._load_safetensors(tmp_path / "stopped" / "stages" / "dit.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    rows = (tmp_path / "stopped" / "logs" / "dit.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2, 3] and "grounding=" in rows[0]
    summary = json.loads((tmp_path / "stopped" / "dit_summary.json").read_text())
    assert summary["stage_train_seconds"]["dit"] > 0 and summary["model_bytes"] < 12_000_000

    folder = resumed / "dit"
    assert {p.name for p in folder.iterdir()} >= {"transformer", "text_encoder", "tokenizer", "vae", "scheduler"}
    from safetensors import safe_open

    with safe_open(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    pipe = PixArtAlphaPipeline.from_pretrained(str(folder), dtype=torch.float32)
    assert pipe.transformer.config.norm_type == "ada_norm_single" and pipe.transformer.config.patch_size == 2
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    shipped_vae = json.loads((SHIPPED_DIR / "text2img" / "vae" / "config.json").read_text())
    assert pipe.vae.config.scaling_factor == pytest.approx(shipped_vae["scaling_factor"])
    image = pipe(
        "a red circle on a plain background",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        **GEN_KW,
    ).images[0]
    assert image.size == (64, 64)
    with pytest.raises(ValueError, match="not a stage trained alone"):
        tw.train(tmp_path / "other", stages=("unet",))


def test_dit_and_pixel_card_sections_live_side_by_side_and_are_replaced():
    from benchmark.toyworld.card import replace_section, stage_sections
    from benchmark.toyworld.dit_card import HEADING

    card = replace_section("# Card\n\nbody\n", "pixel", "## Pixel UNet\n\npixel text")
    one = replace_section(card, "dit", f"{HEADING}\n\nfirst\n")
    two = replace_section(one, "dit", f"{HEADING}\n\nsecond\n")
    assert "first" not in two and two.count(HEADING) == 1 and "pixel text" in two
    kept = stage_sections(two)
    assert kept.index("pixel text") < kept.index("second") and "body" not in kept


@pytest.mark.skipif(not SHIPPED_DIT.exists(), reason="the toy-world PixArt is not shipped in this checkout")
def test_shipped_dit_loads_like_a_hub_model_and_generates(tmp_path, monkeypatch):
    from benchmark.toyworld.dit import load_dit_pipeline
    from tests.conftest import compose

    monkeypatch.chdir(tmp_path)
    from benchmark.models import resolve_local_path

    folder = resolve_local_path(compose(["model=toyworld_dit"]).model.dit)
    pipe = load_dit_pipeline(Path(folder))
    size = sum(p.stat().st_size for p in SHIPPED_DIT.rglob("*") if p.is_file())
    assert size < 12_000_000 and pipe.transformer.dtype == torch.float32
    image = pipe(
        "a blue square on a dotted background",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        **GEN_KW,
    ).images[0]
    assert image.size == (64, 64)
    card = (SHIPPED_DIR / "MODEL_CARD.md").read_text()
    figures = json.loads((SHIPPED_DIR / "dit_evidence.json").read_text())
    assert "## DiT" in card and f"{figures['values']['attention_mask_iou']:.3f}" in card


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_DIT.exists(), reason="the toy-world PixArt is not shipped in this checkout")
def test_dit_figures_of_the_shipped_world_reproduce():
    """The DiT section's figures, recomputed from the shipped weights (a few minutes on CPU): the same within 0.03
    (another thread count or CPU sums in another order, which can flip a few of the ~200 classifications)."""
    from benchmark.toyworld.dit_evidence import dit_evidence

    shipped = json.loads((SHIPPED_DIR / "dit_evidence.json").read_text())
    figures = dit_evidence(SHIPPED_DIT, SHIPPED_DIR / "clip")
    for key, value in shipped["values"].items():
        assert figures["values"][key] == pytest.approx(value, abs=0.03), key
