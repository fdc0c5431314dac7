"""DiT4Edit on PixArt-alpha: token merging, the attention processors, DPM-Solver++ inversion, mutual
self-attention, the PixArt model configs and the command line, on the tiny PixArt (model=tiny_dit) built from config.

How each rule test was checked to fail when its rule is broken is said in its docstring.
"""

from __future__ import annotations

import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.models import MissingWeightsError, ModelBundle, check_t5_tokenizer
from benchmark.tiny_models import PIXART_SCHEDULER
from methods.dit_attention import DiTAttentionState, bipartite_matching, install_dit_attention
from methods.p2p_control import CrossEdit, LocalBlend, P2PController
from methods.pixart_common import TextCond, dpm_invert, dpm_sample, encode_text, predict_noise, token_grid
from tests.conftest import compose, emb

SIDE = 64  # conf/model/tiny_dit.yaml resolution: 8×8 latents, 4×4 tokens


@pytest.fixture(scope="module")
def dit_bundle(model_cache: Path) -> ModelBundle:
    return ModelBundle(compose(["model=tiny_dit"]).model, cache_dir=model_cache)


@pytest.fixture(scope="module")
def pipe(dit_bundle: ModelBundle):
    return dit_bundle.pipeline("dit")


def transformer_call(pipe, latents: torch.Tensor, prompts: list[str], t: int = 500) -> torch.Tensor:
    text = encode_text(pipe, prompts)
    return predict_noise(pipe.transformer, latents, torch.tensor(t), text, None, 1.0, (SIDE, SIDE))


def latents_of(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- token merging


def test_bipartite_merge_and_unmerge_match_values_worked_out_by_hand() -> None:
    """A 2×4 grid, window 2: destinations at positions 0 and 2, sources 1, 3, 4, 5, 6, 7. Cosine matches: 1 → 0
    and 3 → 2 (similarity 1), 5 → 0 and 6 → 2 (3/√10), 4 (0.71 to both), 7 → 2 (0). Ratio 0.5 merges r = 3 of
    the 6 sources, the most similar first, ties to the earlier source: 1, 3 and 5. Merged sequence: the kept
    sources in similarity order (6, 4, 7), then the destinations, each the mean of itself and its merged sources:
    (0 + 1 + 5)/3 and (2 + 3)/2. Unmerging copies each destination's value to its merged sources.
    Checked to fail: averaging without the destination itself (include_self=False) gives (1 + 5)/2 for the first
    destination; ranking by lowest similarity merges 7, 4 and 6 instead."""
    x = torch.tensor([[1, 0], [2, 0], [0, 1], [0, 3], [1, 1], [3, 1], [1, 3], [-1, 0]], dtype=torch.float32)[None]
    merge = bipartite_matching(x, (2, 4), 0.5, window=2)
    merged = merge.merge(x)
    expected = torch.tensor([[1, 3], [1, 1], [-1, 0], [2, 1 / 3], [0, 2]], dtype=torch.float32)[None]
    torch.testing.assert_close(merged, expected)
    back = merge.unmerge(merged)
    d0, d1 = [2, 1 / 3], [0, 2]
    expected_back = torch.tensor([d0, d0, d1, d1, [1, 1], d0, [1, 3], [-1, 0]], dtype=torch.float32)[None]
    torch.testing.assert_close(back, expected_back)
    # ratio 1 merges every source: only the 2 destinations remain
    assert bipartite_matching(x, (2, 4), 1.0).merge(x).shape == (1, 2, 2)


def test_merge_ratio_zero_is_the_unmerged_transformer_exactly(pipe) -> None:
    """merge_ratio 0 through the DiT processors equals diffusers' own transformer output bit for bit, and a ratio
    above 0 does change it. Checked to fail: counting r as int(ratio·n) + 1 merges one token at ratio 0."""
    z = latents_of(2)
    plain = transformer_call(pipe, z, ["a red circle", "a blue square"])
    state = DiTAttentionState(token_grid(pipe.transformer, (8, 8)), merge_ratio=0.0)
    with install_dit_attention(pipe.transformer, state):
        same = transformer_call(pipe, z, ["a red circle", "a blue square"])
    assert torch.equal(plain, same)
    state.merge_ratio = 0.8
    with install_dit_attention(pipe.transformer, state):
        merged = transformer_call(pipe, z, ["a red circle", "a blue square"])
    assert state.merged_tokens == int(0.8 * 12)  # 4×4 tokens: 4 destinations, 12 sources
    assert not torch.allclose(plain, merged)
    # the processors are removed afterwards
    assert torch.equal(transformer_call(pipe, z, ["a red circle", "a blue square"]), plain)


# ---------------------------------------------------------------- attention control


class CaptureAll:
    """A controller that reads every cross-attention call (explicit softmax) and changes nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def wants(self, call) -> bool:
        return True

    def __call__(self, probs: torch.Tensor, call) -> torch.Tensor:
        self.calls += 1
        return probs


def test_attention_control_without_an_active_control_leaves_the_output_unchanged(pipe) -> None:
    """Installed but inactive (no merging, mutual self-attention past its last step, a P2P controller whose
    cross-replace schedule is all zero): the output is diffusers' bit for bit. Forced through the explicit softmax
    on every cross-attention (capture only), it agrees to float rounding. Checked to fail: letting the inactive P2P
    controller edit anyway (its replace mapper a token shift) or making mutual self-attention active at step 0."""
    z = latents_of(4, seed=1)
    prompts = ["a red circle", "a red square", "a red circle", "a red square"]
    plain = transformer_call(pipe, z, prompts)
    grid = token_grid(pipe.transformer, (8, 8))
    state = DiTAttentionState(grid, pairs=[(0, 1), (2, 3)], mutual_end_step=0)
    schedule = torch.zeros(3, 120)
    shift = torch.roll(torch.eye(120), 1, dims=1)
    controller = P2PController(CrossEdit("replace", shift), schedule, (0, 0), 0, None)
    with install_dit_attention(pipe.transformer, state, controller):
        inactive = transformer_call(pipe, z, prompts)
    assert torch.equal(plain, inactive)
    capture = CaptureAll()
    with install_dit_attention(pipe.transformer, DiTAttentionState(grid), capture):
        explicit = transformer_call(pipe, z, prompts)
    assert capture.calls == len(pipe.transformer.transformer_blocks)
    torch.testing.assert_close(explicit, plain, rtol=1e-5, atol=1e-5)


def sample_pair(pipe, prompts: list[str], state: DiTAttentionState | None, steps: int = 4) -> torch.Tensor:
    z = latents_of(1, seed=2).expand(len(prompts), -1, -1, -1).clone()
    cond, uncond = encode_text(pipe, prompts), encode_text(pipe, [""])
    if state is None:
        return dpm_sample(pipe, z, cond, steps, (SIDE, SIDE), 4.5, uncond)
    with install_dit_attention(pipe.transformer, state):
        return dpm_sample(pipe, z, cond, steps, (SIDE, SIDE), 4.5, uncond, before_step=state.set_step)


def test_mutual_self_attention_with_the_source_prompt_reproduces_the_source_generation(pipe) -> None:
    """Target prompt = source prompt, mutual self-attention in every step and block (CFG rows [uncond source,
    uncond target, cond source, cond target]): the target equals the source generated alone. With another target
    prompt mutual self-attention does change the target. Checked to fail: pairing the rows crosswise
    ([(0, 3), (2, 1)], each target reading the other guidance branch's keys and values)."""
    grid = token_grid(pipe.transformer, (8, 8))
    alone = sample_pair(pipe, ["a red circle"], None)
    state = DiTAttentionState(grid, pairs=[(0, 1), (2, 3)], mutual_end_step=99, mutual_start_layer=0)
    both = sample_pair(pipe, ["a red circle", "a red circle"], state)
    torch.testing.assert_close(both[1:], alone, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both[:1], alone, rtol=1e-4, atol=1e-4)
    edited = sample_pair(pipe, ["a red circle", "a blue square"], state)
    free = sample_pair(pipe, ["a red circle", "a blue square"], None)
    assert not torch.allclose(edited[1], free[1], atol=1e-4)


# ---------------------------------------------------------------- inversion


class GaussianDenoiser(torch.nn.Module):
    """The exact ε-prediction for data ~ N(0, s²·I) under PixArt's noise schedule: ε(x, t) = σ_t·x / (ᾱ_t·s² + σ_t²).
    Its probability-flow ODE is known, so inversion followed by sampling must return the input up to the solver's
    discretisation error (shaped like PixArt's transformer: 4 channels, 512-px sample size)."""

    config = types.SimpleNamespace(out_channels=4, sample_size=64, patch_size=2)
    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, alphas_cumprod: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.alphas_cumprod = alphas_cumprod
        self.scale = scale

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, **_: object) -> tuple[torch.Tensor]:
        a = self.alphas_cumprod[timestep[0].long()]
        return ((1 - a).sqrt() * x / (a * self.scale**2 + 1 - a),)


def reconstruction_psnr(steps: int, inverse_order: int = 2) -> float:
    """PSNR (dB, relative to the signal) of invert → sample without edit on the Gaussian denoiser."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(**PIXART_SCHEDULER)
    scale = 0.7
    pipe = types.SimpleNamespace(transformer=GaussianDenoiser(scheduler.alphas_cumprod, scale), scheduler=scheduler)
    z0 = scale * latents_of(1, seed=3)
    text = TextCond(torch.zeros(1, 3, 2), torch.ones(1, 3))
    z_T = dpm_invert(pipe, z0, text, steps, (SIDE, SIDE), order=inverse_order)
    back = dpm_sample(pipe, z_T, text, steps, (SIDE, SIDE), 1.0)
    mse = (back - z0).pow(2).mean() / z0.pow(2).mean()
    return float(-10 * torch.log10(mse))


def test_dpm_solver_inversion_then_sampling_reconstructs_the_input() -> None:
    """On the exact Gaussian denoiser, invert → regenerate without edit gives back the latents within 30 dB
    (signal-relative; measured 31.8) at 30 steps, and gets better with more steps (40.5 at 50: the solver
    converges). The second-order term matters: a first-order inversion (the backward-difference term dropped) against
    the same second-order sampler reaches only 22.9 dB at 30 steps, so breaking the rule fails the first assert."""
    at30, at50 = reconstruction_psnr(30), reconstruction_psnr(50)
    assert at30 > 30.0 and at50 > at30 + 5.0
    assert reconstruction_psnr(30, inverse_order=1) < at30 - 5.0


def test_inversion_psnr_is_reported_per_sample(dit_bundle: ModelBundle) -> None:
    """The adapter's source branch is the unedited regeneration: its PSNR against the input and the VAE's own
    round-trip PSNR are per-sample facts; with control off they equal a plain invert → sample run."""
    from benchmark.adapter import EditContext
    from benchmark.datasets.synthetic import make_sample
    from methods.dit4edit import DiT4Edit

    sample = make_sample(seed=0, index=0, size=SIDE)
    out = DiT4Edit(dit_bundle, num_inference_steps=3).edit(sample, EditContext(seed=0, device=torch.device("cpu")))
    assert {"inversion_psnr", "vae_psnr", "edit", "merged_tokens"} <= set(out.extras)
    assert 0.0 < out.extras["inversion_psnr"] < 100.0 and out.extras["vae_psnr"] > 0.0


def test_invert_then_regenerate_reconstructs_the_input_on_the_toy_dit() -> None:
    """On the toy-world PixArt (model=toyworld_dit, data/toyworld/dit), the unedited source branch (DPM-Solver++
    inversion → regeneration at source_guidance_scale 1, 10 steps, no merging) reconstructs the first 3 toy-world
    inputs within 2 dB of the VAE's own round trip (measured: within 0.5 dB, at 26–32 dB). Checked to fail:
    regenerating the source at the edit's CFG (source_guidance_scale 4.5) drops it to 15–20 dB."""
    from benchmark.adapter import EditContext
    from benchmark.datasets.synthetic import make_sample
    from methods.dit4edit import DiT4Edit

    bundle = ModelBundle(compose(["model=toyworld_dit"]).model)
    method = DiT4Edit(bundle, num_inference_steps=10, merge_ratio=0.0)
    for index in range(3):
        out = method.edit(make_sample(seed=0, index=index, size=64), EditContext(seed=0, device=torch.device("cpu")))
        assert out.extras["inversion_psnr"] > out.extras["vae_psnr"] - 2.0, index
        assert out.extras["vae_psnr"] > 25.0


# ---------------------------------------------------------------- models and the command line


@pytest.mark.parametrize(
    ("model", "hub_id"),
    [
        ("pixart-alpha-512", "PixArt-alpha/PixArt-XL-2-512x512"),
        ("pixart-alpha-1024", "PixArt-alpha/PixArt-XL-2-1024-MS"),
    ],
)
def test_pixart_configs_fail_through_the_missing_weights_line(model: str, hub_id: str, tmp_path: Path) -> None:
    bundle = ModelBundle(compose([f"model={model}"]).model, cache_dir=tmp_path)
    with pytest.raises(MissingWeightsError) as err:
        bundle.pipeline("dit")
    line = str(err.value)
    assert "\n" not in line and f"model.dit='{hub_id}'" in line and "--local-dir" in line


def test_a_stub_t5_tokenizer_is_refused_in_one_line(pipe) -> None:
    """The stub an offline T5Tokenizer.from_pretrained(hub id) returns (104 tokens: sentinels, specials and "▁";
    every word → <unk>) is refused; the tiny model's real (Unigram) vocabulary passes and keeps known words whole.
    A size bar would not do: the toy world's real T5 vocabulary has 106 tokens."""
    from transformers import T5Tokenizer

    stub = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)], extra_ids=100)
    with pytest.raises(MissingWeightsError) as err:
        check_t5_tokenizer(stub, "model.dit", "PixArt-alpha/PixArt-XL-2-512x512")
    assert "\n" not in str(err.value) and "has 103 tokens but only 0 word pieces" in str(err.value)
    check_t5_tokenizer(pipe.tokenizer, "model.dit", "tiny")
    assert pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer("a red circle")["input_ids"]) == [
        "\u2581a",
        "\u2581red",
        "\u2581circle",
        "</s>",
    ]


def test_local_blend_reads_the_token_grid(pipe) -> None:
    """LocalBlend's query grid is the transformer's token grid (latents / patch size)."""
    grid = token_grid(pipe.transformer, (8, 8))
    assert grid == (4, 4) and LocalBlend(torch.zeros(2, 120), grid).query_len == 16


@pytest.mark.parametrize("model", ["tiny_dit", "toyworld_dit"])
def test_emb_run_dit4edit_offline(model: str, tmp_path: Path) -> None:
    """The issue's command on the tiny PixArt and on the toy-world one, at the method's defaults (30 steps)."""
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1"}
    emb(
        "run",
        "method=dit4edit",
        f"model={model}",
        "dataset=synthetic",
        "dataset.limit=2",
        cwd=tmp_path,
        env=env,
    )
    summary = pd.read_csv(next(tmp_path.rglob("summary.csv")))
    row = summary[(summary["method"] == "dit4edit") & (summary["edit_type"] == "all")].set_index("metric")
    assert {"iou", "psnr_background", "clip_score_whole", "nfe"} <= set(row.index)
    assert row.loc["nfe", "mean"] == 30 + 4 * 30  # inversion: 1 row per step; edit: 4 rows per step (30 steps)


def test_the_official_word_rule_finds_words_with_a_t5_tokenizer() -> None:
    """T5 has no start token: the words start at position 0 and the end token is dropped. Worked by hand on the
    tiny T5 tokenizer (one piece per known word): 'a green circle on a noisy background' → a 0, green 1, circle 2,
    on 3, a 4, noisy 5, background 6. Checked to fail with the CLIP-only rule (skip the first token, start at 1):
    that gave [] for the last word and shifted every position by one."""
    from benchmark.tiny_models import tiny_t5_tokenizer
    from methods.p2p_tokens import find_words

    tok = tiny_t5_tokenizer()
    prompt = "a green circle on a noisy background"
    assert find_words(prompt, "noisy background", tok, "official") == [5, 6]
    assert find_words(prompt, "green circle", tok, "official") == [1, 2]
    assert find_words(prompt, "a", tok, "official") == [0, 4]
