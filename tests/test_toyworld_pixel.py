"""The toy world's pixel UNet (`emb toyworld train --stage pixel`): its loss rule, a shortened stage that is
interrupted and resumed bit-identically, its DDPMPipeline export, the shipped weights and (slow) their FID figure."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmark.toyworld import SHIPPED_DIR
from tests.conftest import compose

PIXEL_BUDGET_BYTES = 10_000_000
ALL_SHIPPED_BUDGET_BYTES = 80_000_000  # every toy model shipped in data/toyworld together


def tiny_unet():
    """A real UNet2DModel of the stage's kind, small enough for a test."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=4,
    )


def test_pixel_loss_is_epsilon_mse_on_the_forward_process():
    """The loss equals ADM's L_simple written out: x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε on the linear β schedule
    (1e-4 to 0.02, 1000 steps), MSE between the model's output and ε, with (ε, t) drawn from the generator in that
    order. Checked to fail: comparing the output with x0 instead of ε, or building ᾱ from a β schedule ending at 0.012
    (SD's), each made the comparison fail."""
    from benchmark.toyworld.pixel import pixel_loss, pixel_scheduler

    unet, sched = tiny_unet().eval(), pixel_scheduler()
    images = torch.rand(16, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        loss = pixel_loss(unet, sched, images, torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        eps = torch.randn(images.shape, generator=g)
        t = torch.randint(0, 1000, (16,), generator=g)
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        ac = torch.cumprod(1 - betas, 0)[t].float()[:, None, None, None]
        x_t = ac.sqrt() * images + (1 - ac).sqrt() * eps
        expected = (unet(x_t, t).sample - eps).square().mean()
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)


def _short_pixel_stage(monkeypatch, steps: int = 4) -> None:
    """The real stage (model, data, loss, EMA) shortened: `steps` steps of batch 2, a checkpoint every 2 steps."""
    from benchmark.toyworld import train as tw

    (spec,) = [s for s in tw.EXTRA_STAGES if s.name == "pixel"]
    monkeypatch.setattr(tw, "EXTRA_STAGES", (replace(spec, steps=steps, batch_size=2, warmup=1),))
    monkeypatch.setattr(tw, "CKPT_EVERY", 2)


def test_pixel_stage_resumes_bit_identically_and_exports_a_ddpm_pipeline(tmp_path, monkeypatch):
    """Interrupted after a checkpoint and resumed, the stage ends bit-identical (EMA weights, exported files) to a
    run never stopped; the export loads with DDPMPipeline.from_pretrained (float16 stored, float32 loaded), samples,
    and a repeat without --resume or with other options is refused."""
    from diffusers import DDPMPipeline

    from benchmark.toyworld import pixel
    from benchmark.toyworld.train import _load_safetensors, train

    _short_pixel_stage(monkeypatch)
    straight = train(tmp_path / "straight", stages=("pixel",), samples=False)

    real_loss, calls = pixel.pixel_loss, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # step 3: after the checkpoint at step 2
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(pixel, "pixel_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "stopped", stages=("pixel",), samples=False)
    assert (tmp_path / "stopped" / "checkpoints" / "pixel.pt").exists()
    monkeypatch.setattr(pixel, "pixel_loss", real_loss)
    resumed = train(tmp_path / "stopped", resume=True, stages=("pixel",), samples=False)

    a, _ = _load_safetensors(tmp_path / "straight" / "stages" / "pixel.safetensors")
    b, _ = _load_safetensors(tmp_path / "stopped" / "stages" / "pixel.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    exported = "pixel/unet/diffusion_pytorch_model.safetensors"
    assert (straight / exported).read_bytes() == (resumed / exported).read_bytes()
    rows = (tmp_path / "stopped" / "logs" / "pixel.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2, 3]
    assert (tmp_path / "stopped" / "pixel_loss_curve.png").exists()
    summary = json.loads((tmp_path / "stopped" / "pixel_summary.json").read_text())
    assert summary["model_bytes"] < PIXEL_BUDGET_BYTES

    stored, _ = _load_safetensors(straight / exported)
    assert all(v.dtype == torch.float16 for v in stored.values())
    pipe = DDPMPipeline.from_pretrained(str(straight / "pixel"))
    assert pipe.unet.dtype == torch.float32 and pipe.scheduler.config.variance_type == "fixed_small"
    images = pipe(batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert images.images.shape == (2, 64, 64, 3)

    with pytest.raises(FileExistsError):
        train(tmp_path / "straight", stages=("pixel",), samples=False)
    with pytest.raises(ValueError, match="different configuration"):
        train(tmp_path / "straight", resume=True, seed=1, stages=("pixel",), samples=False)
    with pytest.raises(ValueError, match="--stage clip"):
        train(tmp_path / "other", stages=("clip",))


def test_reshipping_the_main_card_keeps_the_pixel_section():
    from benchmark.toyworld.card import replace_section, stage_sections

    card = replace_section("# Toy world\n\nbody\n", "pixel", "## Pixel UNet\n\nold")
    assert card.count("## Pixel UNet") == 1 and card.startswith("# Toy world")
    card = replace_section(card, "pixel", "## Pixel UNet\n\nnew")
    assert "old" not in card and card.count("## Pixel UNet") == 1 and card.rstrip().endswith("<!-- /stage:pixel -->")
    assert stage_sections("# regenerated\n") == "" and "new" in stage_sections(card)


@pytest.mark.skipif(not (SHIPPED_DIR / "pixel").exists(), reason="pixel weights not shipped yet")
def test_shipped_pixel_model_loads_through_the_model_config_and_samples(tmp_path, monkeypatch):
    from diffusers import DDPMPipeline

    from benchmark.models import resolve_local_path

    monkeypatch.chdir(tmp_path)  # the shipped folder resolves from anywhere
    cfg = compose(["model=toyworld_pixel"]).model
    assert cfg.name == "toyworld_pixel" and cfg.text2img and cfg.clip  # the whole toy world under another name
    folder = Path(resolve_local_path(str(cfg.pixel)))
    assert folder == SHIPPED_DIR / "pixel" and compose(["model=toyworld"]).model.pixel == cfg.pixel
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < PIXEL_BUDGET_BYTES
    shipped = sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*") if p.is_file() and p.suffix != ".png")
    assert shipped < ALL_SHIPPED_BUDGET_BYTES
    pipe = DDPMPipeline.from_pretrained(str(folder))
    assert pipe.unet.config.sample_size == 64 and pipe.unet.config.out_channels == 3
    out = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 64, 64, 3)
    card = (SHIPPED_DIR / "MODEL_CARD.md").read_text()
    assert "## Pixel UNet" in card and "pixel_samples.png" in card


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED_DIR / "pixel_evidence.json").exists(), reason="pixel weights not shipped yet")
def test_shipped_pixel_fid_reproduces():
    """The card's FID figures recomputed on the shipped weights (about 10 minutes on 1 thread)."""
    from dataclasses import asdict

    from benchmark.toyworld.pixel import pixel_figures

    shipped = json.loads((SHIPPED_DIR / "pixel_evidence.json").read_text())
    now = asdict(pixel_figures(SHIPPED_DIR / "pixel", n=shipped["n"], steps=shipped["sample_steps"]))
    for key in ("fid_samples_vs_renders", "fid_renders_vs_renders"):
        assert now[key] == pytest.approx(shipped[key], rel=0.05, abs=1e-3), key
