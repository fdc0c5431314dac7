"""Prompt-to-Prompt, DDIM inversion and null-text inversion on the tiny model (offline, real components).

Token positions below are written by hand from the real CLIP BPE (``<|startoftext|>`` is position 0):
"a cat sitting on a mat" → [SOT, a, cat, sitting, on, a, mat, EOT]; "meerkat" is two tokens (meer, kat).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.attention import AttnCall, install_controller
from benchmark.datasets.synthetic import make_sample
from benchmark.models import ModelBundle
from methods.ddim_inversion import (
    ddim_invert,
    ddim_sample,
    ddim_schedulers,
    inversion_latent,
    predict_noise,
    text_embeddings,
)
from methods.null_text_inversion import null_text_inversion
from methods.p2p import PromptToPrompt
from methods.p2p_control import CrossEdit, LocalBlend, P2PController, attention_layers, pick_self_limit
from methods.p2p_tokens import (
    choose_edit,
    cross_replace_schedule,
    equalizer,
    refinement_mapper,
    replacement_mapper,
    word_token_indices,
)
from methods.sd_common import pick_side
from tests.conftest import compose

L = 77
CAT = "a cat sitting on a mat"


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    return tiny_bundle.pipeline("text2img")


@pytest.fixture(scope="module")
def tok(pipe):
    return pipe.tokenizer


def dense(pairs: dict[tuple[int, int], float]) -> torch.Tensor:
    m = torch.zeros(L, L)
    for (i, j), v in pairs.items():
        m[i, j] = v
    return m


# ---------------------------------------------------------------- token bookkeeping


def test_word_token_indices_multi_token_words_and_punctuation(tok):
    # the trimmed word rule (an option): [SOT, a, meer, kat, ",", sitting, ".", EOT]; punctuation belongs to no word
    assert word_token_indices("A meerkat, sitting.", tok) == [[1], [2, 3], [5]]


# the word-swap mapper with unequal token counts, the official word rule and the aligner's tie-breaking:
# tests/test_p2p_official.py


def test_replacement_mapper_same_length_swap_is_identity_and_needs_equal_word_counts(tok):
    assert torch.equal(replacement_mapper(CAT, "a dog sitting on a mat", tok), torch.eye(L))
    with pytest.raises(ValueError, match="same number of words"):
        replacement_mapper(CAT, "a cat sitting on a red mat", tok)


def test_refinement_alignment_added_word(tok):
    # target [SOT, a, cat, sitting, on, a, striped, mat, EOT]: "striped" (6) is new; padding maps to itself
    mapper, alphas = refinement_mapper(CAT, "a cat sitting on a striped mat", tok)
    assert mapper[:9].tolist() == [0, 1, 2, 3, 4, 5, -1, 6, 7]
    assert mapper[9:].tolist() == list(range(9, L))
    assert alphas[:9].tolist() == [1, 1, 1, 1, 1, 1, 0, 1, 1] and bool(alphas[9:].all())


def test_refinement_alignment_added_phrase_with_multi_token_word(tok):
    # target [SOT, a, fluffy, meer, kat, sitting, on, a, mat, EOT]: "cat" has no partner, 2-4 are new
    mapper, alphas = refinement_mapper(CAT, "a fluffy meerkat sitting on a mat", tok)
    assert mapper[:10].tolist() == [0, 1, -1, -1, -1, 3, 4, 5, 6, 7]
    assert alphas[:10].tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1]


def test_edit_choice_equalizer_and_schedule(tok):
    assert choose_edit(CAT, "a dog sitting on a mat", tok) == "replace"
    assert choose_edit(CAT, "a meerkat sitting on a mat", tok) == "refine"  # token count changes
    assert choose_edit(CAT, "a cat sitting on a striped mat", tok) == "refine"
    eq = equalizer(CAT, ["cat"], 2.0, tok)
    assert eq[2] == 2 and eq.sum() == L + 1
    # T = 10 steps → 11 rows; fraction f covers rows [0, int(f·11)); "mat" (token 6) gets its own 0.4
    alpha = cross_replace_schedule({"default_": 0.8, "mat": 0.4}, CAT, 10, tok)
    assert alpha[:, 2].tolist() == [1] * 8 + [0] * 3
    assert alpha[:, 6].tolist() == [1] * 4 + [0] * 7


def test_pie_bench_variant_refine_with_reweight(tok):
    """PIE-Bench's P2P: AttentionRefine always, equalizer 2 on the target edit word (AttentionReweight on top)."""
    p2p = PromptToPrompt(models=None, edit="refine", equalizer_words="edit", equalizer_value=2.0)
    edit = p2p.plan_edit(CAT, "a dog sitting on a mat", tok, target_words="dog")
    assert edit.kind == "refine" and edit.mapper[:8].tolist() == [0, 1, -1, 3, 4, 5, 6, 7]
    assert edit.equalizer[2] == 2 and edit.equalizer.sum() == L + 1
    src, tgt = torch.rand(2, 1, 4, L).softmax(-1)
    expected = torch.where(edit.alphas.bool(), src[..., edit.mapper.clamp(min=0)], tgt) * edit.equalizer
    assert torch.allclose(edit.apply(src, tgt), expected)


# ---------------------------------------------------------------- controller and LocalBlend


def test_controller_edits_only_the_conditional_target_row(tok):
    mapper = replacement_mapper(CAT, "a meerkat sitting on a mat", tok)
    schedule = cross_replace_schedule(0.5, "a meerkat sitting on a mat", 4, tok)  # rows 0, 1 of 5
    ctrl = P2PController(CrossEdit("replace", mapper), schedule, self_steps=(0, 2), self_max_len=16)
    probs = torch.rand(4 * 2, 16, L, generator=torch.Generator().manual_seed(0)).softmax(-1)  # CFG: 4 rows, 2 heads
    p = probs.reshape(4, 2, 16, L)
    cross, self_small, self_big = AttnCall("c", True, 2, 16), AttnCall("s", False, 2, 16), AttnCall("s", False, 2, 64)
    ctrl.set_step(1)
    out = ctrl(probs.clone(), cross).reshape(4, 2, 16, L)
    assert torch.equal(out[:3], p[:3])  # unconditional rows and the source untouched
    assert torch.allclose(out[3], p[2] @ mapper)
    # the official mapper keeps the attention mass except source "sitting"'s (3): after the last swap it writes the
    # diagonal from target 4 on, so source 3 maps nowhere
    assert torch.allclose(out[3].sum(-1), 1 - p[2, ..., 3])
    assert ctrl.wants(self_small) and not ctrl.wants(self_big)
    assert torch.equal(ctrl(probs.clone(), self_small).reshape(4, 2, 16, L)[3], p[2])
    ctrl.set_step(2)  # past both schedules: nothing wanted
    assert not ctrl.wants(cross) and not ctrl.wants(self_small)


def test_local_blend_mask_by_hand():
    # 4×4 attention, latent 8×8. Source blend token 2 peaks at cell (0, 0), target token 3 at (3, 3); a 0.2 bump
    # (below the 0.3 threshold after normalising) at (0, 3) of the source. 3×3 max-pool grows each peak to a
    # 2×2 block, nearest upsampling doubles it: two 4×4 corners of the 8×8 latent.
    weights = torch.zeros(2, L)
    weights[0, 2] = weights[1, 3] = 1
    blend = LocalBlend(weights, (4, 4), threshold=0.3, start_step=1)
    maps = torch.zeros(2, 3, 16, L)  # (rows, heads, queries, tokens)
    maps[0, :, 0, 2] = 1.0
    maps[0, :, 3, 2] = 0.2
    maps[1, :, 15, 3] = 0.5
    blend.capture(maps)
    soft, hard = blend.mask((8, 8))
    expected = np.zeros((8, 8), bool)
    expected[:4, :4] = expected[4:, 4:] = True
    assert np.array_equal(hard.numpy(), expected)
    assert soft.max() == 1 and torch.isclose(soft[0, 7], torch.tensor(0.2))
    latents = torch.stack([torch.zeros(4, 8, 8), torch.ones(4, 8, 8)])
    assert torch.equal(blend(0, latents), latents)  # before start_step
    out = blend(1, latents)
    assert torch.equal(out[0], latents[0]) and torch.equal(out[1], torch.from_numpy(expected).float().expand(4, 8, 8))


class _Recorder:
    def __init__(self) -> None:
        self.seen: dict[str, tuple[bool, int]] = {}

    def wants(self, call: AttnCall) -> bool:
        self.seen[call.layer] = (call.is_cross, call.query_len)
        return False

    def __call__(self, probs, call):
        return probs


def test_attention_resolutions_match_the_unet_and_the_p2p_rule(pipe):
    layers = attention_layers(pipe.unet, (8, 8))
    rec = _Recorder()
    with install_controller(pipe.unet, rec), torch.no_grad():
        pipe.unet(torch.zeros(1, 4, 8, 8), 10, encoder_hidden_states=torch.zeros(1, L, 32))
    assert rec.seen == {name: (is_cross, h * w) for name, (is_cross, h, w) in layers.items()}
    cross = {h for c, h, _ in layers.values() if c}
    assert cross == {8, 4}
    # tiny (latent 8): no 2×2 layer; LocalBlend reads the down/up blocks (not the 4×4 mid block), so 8×8, and
    # self-attention is copied up to 4×4
    blend_sides = {h for n, (c, h, _) in layers.items() if c and not n.startswith("mid_block")}
    assert blend_sides == {8} and pick_side(blend_sides, 8, None, "x") == 8
    assert pick_self_limit({8, 4}, 8, None) == 4
    # the toy world's UNet (latent 16, cross-attention at 16, 8 and the 4×4 mid block): the paper's 16×16
    assert pick_side({16, 8}, 16, None, "x") == 16
    # SD 1.x at 512 px (latent 64): the 16×16 layers, and the five of them the official code reads
    from diffusers import UNet2DConditionModel

    sd_shaped = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=8,
        attention_head_dim=4,
    )
    sd_layers = attention_layers(sd_shaped, (64, 64))
    sd_cross = {h for c, h, _ in sd_layers.values() if c}
    assert sd_cross == {64, 32, 16, 8}
    assert pick_side(sd_cross, 64, None, "x") == 16 and pick_self_limit(sd_cross, 64, None) == 16
    at16 = sorted(n.split(".transformer")[0] for n, (c, h, _) in sd_layers.items() if c and h == 16)
    assert at16 == [
        "down_blocks.2.attentions.0",
        "down_blocks.2.attentions.1",
        "up_blocks.1.attentions.0",
        "up_blocks.1.attentions.1",
        "up_blocks.1.attentions.2",
    ]


# ---------------------------------------------------------------- inversion


@pytest.fixture(scope="module")
def source(pipe):
    sample = make_sample(0, 0)
    return (
        inversion_latent(pipe, sample.image),
        text_embeddings(pipe, [sample.source_prompt]),
        text_embeddings(pipe, [""]),
    )


@torch.no_grad()
def test_ddim_inverse_and_sampling_steps_are_exact_inverses(pipe, source):
    """With the same ε, a sampling step undoes an inversion step exactly (float32 rounding): the two schedulers
    pair the same timesteps and ᾱ values, down to ᾱ_0 at the last step."""
    z, cond, _ = source
    sampler, inverse = ddim_schedulers(pipe, 5)
    # the official code's DDIMScheduler(..., clip_sample=False, set_alpha_to_one=False): steps_offset 0
    assert sampler.timesteps.tolist() == [800, 600, 400, 200, 0]
    for t_inv, t in zip(inverse.timesteps, reversed(sampler.timesteps), strict=True):
        assert int(t_inv) == int(t)
        eps = predict_noise(pipe.unet, z, t, cond, None, 1.0)
        up = inverse.step(eps, t, z).prev_sample
        assert torch.allclose(sampler.step(eps, t, up).prev_sample, z, atol=1e-5, rtol=1e-5)
        z = up


@torch.no_grad()
def test_ddim_inversion_reconstructs_input(pipe, source):
    """Invert with the source prompt, regenerate at CFG 1, compare latents.

    DDIM inversion approximates ε(z_t, t) by ε(z_{t−1}, t): each round trip misses by O(Δ²) for a step of O(Δ),
    so the miss relative to the step halves when the step count doubles (checked: ratio of means 0.4–0.6).
    End to end the tiny UNet's random weights make no denoiser: its x0-prediction divides by √ᾱ_t ≈ 0.07 near
    t = 981 and the reverse ODE amplifies every local miss about tenfold, so at 20 steps the reconstruction is
    only held to within a quarter of the distance a regeneration from fresh noise (same norm) ends at (measured
    ≈ 0.11); on a trained SD model the same code reconstructs closely (P2P's premise).
    """
    z0, cond, _ = source

    def local_ratio(steps: int):
        traj = ddim_invert(pipe, z0, cond, steps)
        sampler, _ = ddim_schedulers(pipe, steps)
        ratios = []
        for i, t in enumerate(sampler.timesteps):
            z = traj.latents[steps - i]
            back = sampler.step(predict_noise(pipe.unet, z, t, cond, None, 1.0), t, z).prev_sample
            ratios.append(float((back - traj.target(i)).norm() / (z - traj.target(i)).norm()))
        return float(np.mean(ratios)), traj

    r10, _ = local_ratio(10)
    r20, traj = local_ratio(20)
    assert r10 < 0.7 and 0.4 < r20 / r10 < 0.6
    rec = ddim_sample(pipe, traj.z_T, cond, 20, 1.0)
    noise = torch.randn(traj.z_T.shape, generator=torch.Generator().manual_seed(0))
    fresh = ddim_sample(pipe, noise * traj.z_T.norm() / noise.norm(), cond, 20, 1.0)
    assert (rec - z0).norm() < 0.25 * (fresh - z0).norm()


def test_null_text_inversion_beats_ddim_at_cfg_7_5(pipe, source):
    z0, cond, uncond = source
    traj = ddim_invert(pipe, z0, cond, 4)
    plain = ddim_sample(pipe, traj.z_T, cond, 4, 7.5, uncond)
    result = null_text_inversion(pipe, traj, cond, uncond, guidance_scale=7.5, inner_steps=10)
    tuned = ddim_sample(pipe, traj.z_T, cond, 4, 7.5, result.embeddings)
    assert len(result.embeddings) == 4 and result.inner_steps == [10] * 4  # far from ε: no early stop
    assert (tuned - z0).norm() < 0.9 * (plain - z0).norm()
    # early stop: loss < ε + i·2e-5 after the first Adam step when ε is huge
    assert null_text_inversion(pipe, traj, cond, uncond, epsilon=1e3).inner_steps == [1] * 4


def test_null_text_needs_float32(model_cache):
    bundle = ModelBundle(compose(["model.dtype=bfloat16"]).model, cache_dir=model_cache)
    with pytest.raises(ValueError, match="float32"):
        PromptToPrompt(models=bundle, inversion="null_text")
    PromptToPrompt(models=bundle, inversion="ddim")  # plain DDIM inversion runs in any dtype


@torch.no_grad()
def test_p2p_branches_source_untouched_target_controlled_and_blended(tiny_bundle, pipe):
    """The edit batch against each prompt denoised alone from the same inverted noise."""
    sample = make_sample(0, 0)
    # the tiny model's attention is nearly uniform: a high threshold gives a partial mask to check the blend on
    p2p = PromptToPrompt(models=tiny_bundle, num_inference_steps=3, inversion="ddim", blend_threshold=0.95)
    latents, blend, extras = p2p.edit_latents(sample)
    assert extras["edit"] == "replace"  # "purple circle" → "purple square": a same-length word swap
    _, hard = blend.mask((8, 8))
    assert 0 < hard.float().mean() < 1
    cond = text_embeddings(pipe, [sample.source_prompt, sample.target_prompt])
    uncond = text_embeddings(pipe, [""])
    traj = ddim_invert(pipe, inversion_latent(pipe, sample.image), cond[:1], 3)
    alone = [ddim_sample(pipe, traj.z_T, cond[k : k + 1], 3, 7.5, uncond)[0] for k in (0, 1)]
    assert torch.allclose(latents[0], alone[0], atol=1e-4)  # control and blending never touch the source row
    assert torch.equal(latents[1][:, ~hard], latents[0][:, ~hard])  # LocalBlend: the source outside the mask
    assert (latents[1] - alone[1])[:, hard].abs().max() > 1e-2  # attention control changed the target


# ---------------------------------------------------------------- through the harness


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def test_p2p_end_to_end_with_iou_and_nfe(tmp_path, model_cache):
    """NFE (batch rows through the UNet, counted by the runner's hook) with T steps:
    DDIM inversion T (CFG 1: 1 row) + null-text Σ_i (1 cond + k_i uncond + 2 CFG rows) + edit T × 4
    ([uncond_src, uncond_tgt, cond_src, cond_tgt]). UNet calls: T + Σ_i (k_i + 2) + T. grad_evals: one backward
    pass per Adam step, Σ_i k_i, in the record and as a summary row."""
    from benchmark.runner import run

    steps = 2
    cfg = compose(
        ["method=p2p", "model=tiny", "dataset=synthetic", "dataset.limit=2", f"method.num_inference_steps={steps}"],
        tmp_path,
        model_cache,
    )
    summary = run(cfg, tmp_path / "run").summary
    iou = summary[(summary.method == "p2p") & (summary.metric == "iou") & (summary.edit_type == "all")]
    assert len(iou) == 1 and iou["n"].item() == 2 and 0 <= iou["mean"].item() <= 1
    grads = summary[(summary.method == "p2p") & (summary.metric == "grad_evals") & (summary.edit_type == "all")]
    assert grads["n"].item() == 2
    for rec in _records(tmp_path / "run"):
        assert rec["status"] == "ok", rec["error"]
        k = rec["extras"]["null_text_inner_steps"]
        assert len(k) == steps
        assert rec["nfe"] == steps + sum(3 + ki for ki in k) + 4 * steps
        assert rec["denoiser_calls"] == steps + sum(2 + ki for ki in k) + steps
        assert rec["grad_evals"] == sum(k)
        assert rec["extras"]["blend_resolution"] == 8 and rec["extras"]["edit"] in ("replace", "refine")


def test_missing_source_prompt_fails_one_line_and_run_goes_on(tmp_path, model_cache):
    """A sample without a source prompt is recorded as failed with one line naming file and field; the next
    sample still runs. NFE with CFG-7.5 DDIM inversion: 2T (inversion) + 4T (edit)."""
    from benchmark.datasets.folder import write_sample
    from benchmark.runner import run

    data = tmp_path / "data"
    bad, good = make_sample(0, 1), make_sample(0, 2)
    bad.source_prompt = ""
    lines = [json.dumps(write_sample(s, data)) for s in (bad, good)]
    (data / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    steps = 2
    cfg = compose(
        [
            "method=p2p",
            "dataset=folder",
            f"dataset.path={data}",
            f"method.num_inference_steps={steps}",
            "method.inversion=ddim",
            "method.inversion_guidance_scale=7.5",
        ],
        tmp_path,
        model_cache,
    )
    summary = run(cfg, tmp_path / "run").summary
    failed, ok = _records(tmp_path / "run")
    assert failed["status"] == "failed" and "\n" not in failed["error"]
    assert failed["error"] == f"{data / 'manifest.jsonl'}:1: field 'source_prompt': method 'p2p' needs a source prompt"
    assert ok["status"] == "ok" and ok["nfe"] == 2 * steps + 4 * steps and ok["denoiser_calls"] == 2 * steps
    assert "grad_evals" not in ok  # DDIM inversion: no backward pass
    assert summary[(summary.metric == "iou") & (summary.edit_type == "all")]["failures"].item() == 1
