"""DiT4Edit (Feng et al., AAAI 2025; arXiv 2411.03286) on PixArt-alpha: real-image editing with DPM-Solver++
inversion, unified attention control and patch merging.

The paper's repository holds no code, so this is the project's implementation from the paper (REFERENCE.md): every
value the paper does not state is a setting marked ``ours``. The input is inverted clean → noisy with the source
prompt (``methods.pixart_common``: DPM-Solver++ order 2, the backward-Euler estimate of the unknown model output);
then the source and target prompts are denoised from the inverted noise in one batch while
``methods.dit_attention`` rebuilds the target's cross-attention from the source's (Prompt-to-Prompt's replace /
refine / reweight, reusing its token alignment), lets the target's self-attention read the source's keys and values
(mutual self-attention, early steps and deep blocks), merges similar tokens inside every self-attention, and
LocalBlend keeps the target's latents only where the edit words attend. LocalBlend's mask is the method's mask.

The source branch is never changed by the control, so it is the plain invert → regenerate reconstruction:
``inversion_psnr`` (per sample) is its PSNR against the input at the working resolution, next to ``vae_psnr``,
the VAE's own round trip (the ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark.adapter import EditContext, MethodAdapter, setting
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample, MissingInputError, SampleError
from methods.dit_attention import DiTAttentionState, install_dit_attention
from methods.image_ops import resize_image
from methods.p2p import EDITS, PromptToPrompt
from methods.p2p_control import LocalBlend, P2PController
from methods.p2p_tokens import WORD_RULES, cross_replace_schedule
from methods.pixart_common import MAX_TOKENS, dpm_invert, dpm_sample, encode_text, token_grid, tokenizer_at
from methods.sd_common import decode_latents, encode_image, model_resolution
from methods.sd_settings import NegativePromptSettings, SDSettings


@dataclass(frozen=True)
class DiT4EditSettings(NegativePromptSettings, SDSettings):
    """The paper's setup (PixArt-alpha, DPM-Solver++ inversion, unified attention control, patch merging) with the
    values secondary sources give (30 steps, CFG 4.5, merge ratio 0.8) and ours for the rest."""

    num_inference_steps: int = setting(
        30, "ours", "DPM-Solver++ steps of the inversion and of the edit (secondary sources; the paper gives none)"
    )
    guidance_scale: float = setting(
        4.5, "ours", "CFG of the target branch (PixArt-alpha's own default; secondary sources); 1: no guidance"
    )
    negative_prompt: str = setting("", "ours", "text of the unconditional guidance branch ('': empty prompt)")
    max_sequence_length: int = setting(
        MAX_TOKENS, "diffusers", "T5 tokens the transformer attends to (PixArtAlphaPipeline's max_sequence_length)"
    )
    inversion_guidance_scale: float = setting(1.0, "ours", "CFG of the inversion (1: the source prompt alone)")
    source_guidance_scale: float = setting(
        1.0,
        "ours",
        "CFG of the source branch (its uncond row is still computed: the target's reads it); 1 regenerates the "
        "inversion faithfully (toy DiT: 30 dB against 14 at 4.5), and the background comes from this branch",
    )
    edit: str = setting(
        "auto",
        "ours",
        "cross-attention edit: auto (word swap with the same token count → replace, otherwise refine), replace or "
        "refine (Prompt-to-Prompt's edits)",
    )
    cross_replace_steps: Any = setting(
        0.8, "ours", "fraction f (steps [0, f)), [start, end], or per word {default_: 0.8, tiger: 0.4} (P2P's value)"
    )
    equalizer_words: Any = setting(
        None, "ours", "AttentionReweight: null (off), edit (the sample's target edit words) or [words]"
    )
    equalizer_value: float = setting(2.0, "ours", "reweighting factor of equalizer_words")
    word_rule: str = setting(
        "official",
        "official code",
        "how blend and equalizer words find their tokens, as in p2p: official (split on single spaces, every exact "
        "occurrence) or trimmed (punctuation trimmed, lower-cased, first contiguous occurrence; ours)",
    )
    mutual_self_end: float = setting(
        0.5,
        "ours",
        "fraction of the steps (from the first) in which the target's self-attention reads the source's keys and "
        "values (the paper: only before a step threshold); 0: off",
    )
    mutual_self_start_layer: int | None = setting(
        None,
        "ours",
        "first transformer block (0-based) with mutual self-attention; null: half the depth (14 of PixArt's 28; "
        "deep blocks carry layout, the paper's motivation)",
    )
    local_blend: bool = setting(
        True,
        "ours",
        "LocalBlend on, with the sample's edit_words (or the words only one prompt has) as blend words: its mask is "
        "the method's mask",
    )
    blend_threshold: float = setting(0.3, "ours", "LocalBlend threshold of the normalised word maps (P2P's value)")
    start_blend: float = setting(0.2, "ours", "fraction of the steps before LocalBlend starts (P2P's null-text value)")
    blend_pool: int = setting(
        3,
        "ours",
        "LocalBlend's max-pool size on the token grid (P2P's 3 on SD's 16x16 maps; PixArt-512's grid is 32x32); odd",
    )
    merge_ratio: float = setting(
        0.8,
        "ours",
        "patch merging: fraction of the non-destination tokens (3 of each 2x2 cell) merged into their most similar "
        "destination inside every self-attention (secondary sources: 0.8); 0: no merging, exact",
    )
    merge_window: int = setting(2, "ours", "destination tokens: the top-left one of each window x window token cell")

    def check(self) -> None:
        super().check()
        if self.edit not in EDITS:
            raise ValueError(f"edit='{self.edit}': use one of {', '.join(EDITS)}")
        if self.word_rule not in WORD_RULES:
            raise ValueError(f"word_rule='{self.word_rule}': use one of {', '.join(WORD_RULES)}")
        if not 0.0 <= self.merge_ratio <= 1.0:
            raise ValueError(f"merge_ratio={self.merge_ratio}: must be in [0, 1]")
        if self.merge_window < 1:
            raise ValueError(f"merge_window={self.merge_window}: must be at least 1")
        if not 0.0 <= self.mutual_self_end <= 1.0:
            raise ValueError(f"mutual_self_end={self.mutual_self_end}: must be in [0, 1]")
        if self.blend_pool < 1 or self.blend_pool % 2 == 0:
            raise ValueError(f"blend_pool={self.blend_pool}: must be an odd size of at least 1")
        if not 0.0 <= self.start_blend <= 1.0:
            raise ValueError(f"start_blend={self.start_blend}: must be in [0, 1]")


@dataclass
class DiTEditResult:
    """The final [source, target] latents of one edit, its LocalBlend (None when off) and the run's facts."""

    latents: torch.Tensor
    blend: LocalBlend | None
    extras: dict[str, Any]


@METHODS.register("dit4edit")
class DiT4Edit(MethodAdapter):
    """DiT4Edit (Feng et al., AAAI 2025) on PixArt-alpha (run with model=pixart-alpha-512 or pixart-alpha-1024):
    DPM-Solver++ inversion, Prompt-to-Prompt cross-attention control with mutual self-attention, patch merging in
    self-attention, LocalBlend mask. The paper's repository has no code: values it does not state are ours."""

    settings_class = DiT4EditSettings
    settings: DiT4EditSettings
    base_model = "pixart-alpha-512"
    needs_source_prompt = True
    produces_mask = True
    pipelines = ("dit",)

    # Prompt-to-Prompt's planning, shared as is: the cross-attention edit of a prompt pair (reads ``edit_kind`` and
    # the settings ``equalizer_words`` / ``equalizer_value``) and the blend words' token weights
    plan_edit = PromptToPrompt.plan_edit
    equalizer_words = PromptToPrompt.equalizer_words
    blend_weights = PromptToPrompt.blend_weights
    _where = PromptToPrompt._where

    @property
    def edit_kind(self) -> str:
        return self.settings.edit

    def check_inputs(self, sample: EditSample) -> None:
        super().check_inputs(sample)
        if not sample.target_prompt:
            where = sample.meta.get("source", sample.id)
            raise MissingInputError(f"{where}: field 'target_prompt': method '{self.name}' needs a target prompt")

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.models.pipeline("dit")
        res = model_resolution(self.settings.resolution, self.models)
        image = resize_image(sample.image, (res, res))
        result = self.edit_latents(sample, image)
        source, target = decode_latents(pipe, result.latents, float32_pixels=True)
        result.extras["inversion_psnr"] = psnr(source, image)
        soft_mask = mask = None
        if result.blend is not None:
            soft, hard = result.blend.mask(tuple(result.latents.shape[-2:]))
            soft_mask = soft.float().cpu().numpy().astype(np.float32)
            mask = hard.cpu().numpy().astype(bool)
        return EditOutput(image=resize_image(target, sample.size), soft_mask=soft_mask, mask=mask, extras=result.extras)

    def edit_latents(self, sample: EditSample, image: Image.Image) -> DiTEditResult:
        """Invert ``image`` (at the working resolution) and edit it."""
        s = self.settings
        pipe = self.models.pipeline("dit")
        transformer = pipe.transformer
        tokenizer = tokenizer_at(pipe, s.max_sequence_length)
        source, target = sample.source_prompt, sample.target_prompt
        steps = s.num_inference_steps
        try:
            cross = self.plan_edit(source, target, tokenizer, sample.edit_words[1])
            schedule = cross_replace_schedule(s.cross_replace_steps, target, steps, tokenizer)
        except ValueError as err:
            raise SampleError(f"{self._where(sample)}: {err}") from err
        blend_weights, blend_words = self.blend_weights(sample, tokenizer) if s.local_blend else (None, None)

        z0 = encode_image(pipe, image, "mean", memory_format=torch.contiguous_format)
        latent_hw = (int(z0.shape[-2]), int(z0.shape[-1]))
        image_hw = (image.height, image.width)
        grid = token_grid(transformer, latent_hw)
        cond = encode_text(pipe, [source, target], s.max_sequence_length)
        uncond = encode_text(pipe, [s.negative_prompt], s.max_sequence_length)
        z0_image = decode_latents(pipe, z0, float32_pixels=True)[0]
        extras: dict[str, Any] = {
            "edit": cross.kind + ("+reweight" if cross.equalizer is not None else ""),
            "vae_psnr": psnr(z0_image, image),
        }

        state = DiTAttentionState(grid, s.merge_ratio, s.merge_window)
        with install_dit_attention(transformer, state):
            z_T = dpm_invert(
                pipe, z0, cond.rows([0]), steps, image_hw, s.inversion_guidance_scale, uncond, state.set_step
            )

        blend = None
        if blend_weights is not None:
            blend = LocalBlend(blend_weights, grid, s.blend_threshold, int(s.start_blend * steps), s.blend_pool)
            extras["blend_words"] = list(blend_words)
        # P2P's controller for the cross-attention only (its self-attention replacement off: steps [0, 0))
        controller = P2PController(cross.to(z0.device), schedule.to(z0.device), (0, 0), 0, blend)
        depth = len(transformer.transformer_blocks)
        start_layer = depth // 2 if s.mutual_self_start_layer is None else int(s.mutual_self_start_layer)
        guidance = torch.tensor([s.source_guidance_scale, s.guidance_scale])
        guided = bool((guidance != 1.0).any())
        state.pairs = [(0, 1), (2, 3)] if guided else [(0, 1)]  # rows: [uncond src, uncond tgt, cond src, cond tgt]
        state.mutual_end_step = int(round(s.mutual_self_end * steps))
        state.mutual_start_layer = start_layer
        extras.update(mutual_self_steps=state.mutual_end_step, mutual_self_start_layer=start_layer)

        def before_step(i: int, t: torch.Tensor) -> None:
            state.set_step(i)
            controller.set_step(i)

        latents = z_T.expand(2, *z_T.shape[1:]).clone()
        with install_dit_attention(transformer, state, controller):
            latents = dpm_sample(pipe, latents, cond, steps, image_hw, guidance, uncond, before_step, blend)
        extras["merged_tokens"] = state.merged_tokens
        return DiTEditResult(latents, blend, extras)


def psnr(image: Image.Image, reference: Image.Image) -> float:
    """PSNR (dB, data range 1) of two RGB images of the same size (torchmetrics)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = (torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0) for im in (image, reference))
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))
