"""Prompt-to-Prompt (Hertz et al., 2022; google/prompt-to-prompt) on real images, with its LocalBlend mask.

The input is inverted (null-text inversion, or plain DDIM inversion) with the source prompt; then the source and
target prompts are denoised from the inverted noise in one batch while ``methods.p2p_control.P2PController``
rebuilds the target's cross-attention from the source's (word swap → AttentionReplace, added/changed phrase →
AttentionRefine, optional AttentionReweight on top), replaces its self-attention at low resolutions early on,
and LocalBlend keeps the target's latents only where the blend words attend. The LocalBlend mask of the last
step is the method's mask (latent resolution; the soft map is the max of the two normalised word maps).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.adapter import EditContext, MethodAdapter, setting
from benchmark.attention import install_controller
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample, MissingInputError, SampleError
from methods.ddim_inversion import ddim_invert, ddim_sample, inversion_latent, text_embeddings
from methods.image_framing import Framing, p2p_framing
from methods.null_text_inversion import null_text_inversion as run_null_text
from methods.p2p_control import CrossEdit, LocalBlend, P2PController, attention_layers, pick_self_limit
from methods.p2p_tokens import (
    WORD_RULES,
    choose_edit,
    cross_replace_schedule,
    differing_words,
    equalizer,
    find_words,
    max_length,
    refinement_mapper,
    replacement_mapper,
)
from methods.sd_common import decode_latents, pick_side
from methods.sd_settings import NegativePromptSettings, SDSettings

log = logging.getLogger(__name__)

EDITS = ("auto", "replace", "refine")
INVERSIONS = ("null_text", "ddim")


def _fraction_pair(spec: Any, field: str) -> tuple[float, float]:
    if isinstance(spec, int | float):
        return 0.0, float(spec)
    if isinstance(spec, Sequence) and len(spec) == 2:
        return float(spec[0]), float(spec[1])
    raise ValueError(f"{field}={spec!r}: expected a fraction or [start, end]")


@dataclass(frozen=True)
class P2PSettings(NegativePromptSettings, SDSettings):
    """The official notebooks (google/prompt-to-prompt): 50 DDIM steps, CFG 7.5, cross 0.8, self 0.4, LocalBlend
    threshold 0.3; null-text inversion as in its null-text notebook."""

    inversion: str = setting(
        "null_text",
        "official code",
        "real-image inversion: null_text (the official real-image route; float32 only) or ddim (cheaper, worse "
        "background)",
    )
    inversion_guidance_scale: float = setting(1.0, "official code", "CFG of the DDIM inversion itself")
    null_text_inner_steps: int = setting(
        10, "official code", "Adam steps per sampling step; lr = null_text_lr·(1 − i/100)"
    )
    null_text_epsilon: float = setting(1.0e-5, "official code", "early stop when loss < epsilon + i·2e-5")
    null_text_lr: float = setting(1.0e-2, "official code", "Adam learning rate of the null-text optimisation")
    edit: str = setting(
        "auto",
        "ours",
        "cross-attention edit: auto (word swap with the same token count → replace, otherwise refine), replace or "
        "refine (the notebooks pick per example)",
    )
    cross_replace_steps: Any = setting(
        0.8, "official code", "fraction f (steps [0, f)), [start, end], or per word {default_: 0.8, tiger: 0.4}"
    )
    self_replace_steps: Any = setting(
        0.4, "official code", "fraction or [start, end] of the steps where low-resolution self-attention is copied"
    )
    equalizer_words: Any = setting(
        None,
        "ours",
        "AttentionReweight: null (off), edit (the sample's target edit words) or [words] (a word index as an int)",
    )
    word_rule: str = setting(
        "official",
        "official code",
        "how blend, equalizer and per-word cross_replace_steps words find their tokens: official (split on single "
        "spaces, every exact occurrence: 'cat' is not 'cat.'; a phrase = its words; not found = no tokens) or "
        "trimmed (punctuation trimmed, lower-cased, first contiguous occurrence; ours)",
    )
    crop_offsets: list[int] = setting(
        [0, 0, 0, 0],
        "official code",
        "load_512's (left, right, top, bottom) pixels trimmed before the centre square crop",
    )
    equalizer_value: float = setting(2.0, "official code", "reweighting factor (PnPInversion's PIE-Bench run: 2)")
    local_blend: bool = setting(
        True,
        "ours",
        "LocalBlend on, with the sample's edit_words (or the words only one prompt has) as blend words: its mask is "
        "the method's mask",
    )
    blend_threshold: float = setting(0.3, "official code", "LocalBlend threshold of the normalised word maps")
    start_blend: float | None = setting(
        None,
        "official code",
        "fraction of steps before blending starts; null: 0.2 with null_text (the null-text notebook), 0 with ddim",
    )
    attention_resolution: int | None = setting(
        None,
        "ours",
        "query side of the cross-attention layers LocalBlend reads; null: latent side / 4 if layers work there "
        "(16x16 at SD 512 px: down_blocks.2 + up_blocks.1, the five layers of the official code), otherwise the "
        "down/up side nearest 16, ties to the smaller (the toy world: 16; the tiny model: 8); never the mid block",
    )
    self_replace_resolution: int | None = setting(
        None,
        "ours",
        "self-attention is replaced only for query sides up to this; null: latent side / 4 (16² queries at SD, as "
        "the P2P notebook) if some layer is that small, otherwise the smallest self-attention side (tiny model: "
        "4). The null-text notebook and PnPInversion use 32",
    )

    def check(self) -> None:
        super().check()
        if self.inversion not in INVERSIONS:
            raise ValueError(f"inversion='{self.inversion}': use one of {', '.join(INVERSIONS)}")
        if self.edit not in EDITS:
            raise ValueError(f"edit='{self.edit}': use one of {', '.join(EDITS)}")
        if self.word_rule not in WORD_RULES:
            raise ValueError(f"word_rule='{self.word_rule}': use one of {', '.join(WORD_RULES)}")
        if len(self.crop_offsets) != 4 or any(int(v) < 0 for v in self.crop_offsets):
            raise ValueError(f"crop_offsets={list(self.crop_offsets)}: expected [left, right, top, bottom] >= 0")
        _fraction_pair(self.self_replace_steps, "self_replace_steps")


@METHODS.register("p2p")
class PromptToPrompt(MethodAdapter):
    """Prompt-to-Prompt (Hertz et al., 2022; google/prompt-to-prompt) on real images. The input is inverted with the
    source prompt (null-text inversion, or plain DDIM inversion), then source and target prompts are denoised in
    one batch while the target's attention is rebuilt from the source's. The LocalBlend mask is the method's mask.
    Defaults = the official notebooks: base model SD 1.4 (run with model=sd14), 50 DDIM steps, CFG 7.5, cross 0.8,
    self 0.4, LocalBlend threshold 0.3. Word lookup (get_word_inds), the word-swap mapper, the refinement alignment and
    the image crop (load_512, mapped back to the sample) follow the official code: docs/methods.md.
    PIE-Bench variant (cure-lab/PnPInversion run_editing_p2p.py): method.edit=refine method.cross_replace_steps=0.4
      method.self_replace_steps=0.6 method.equalizer_words=edit method.equalizer_value=2 method.start_blend=0.2
      method.self_replace_resolution=32 seed=1234; rows "DDIM+P2P" (method.inversion=ddim) and
      "Null-text+P2P" (method.inversion=null_text). Blend words there = PIE's blended_word = our edit_words."""

    settings_class = P2PSettings
    settings: P2PSettings
    base_model = "sd14"  # the official model; another model only logs a warning
    needs_source_prompt = True
    produces_mask = True
    pipelines = ("text2img",)

    def __init__(self, models: Any = None, settings: P2PSettings | None = None, **overrides: Any) -> None:
        super().__init__(models, settings, **overrides)
        s = self.settings
        self.steps = s.num_inference_steps
        self.edit_kind = s.edit
        self.cross_replace_steps = s.cross_replace_steps
        self.self_steps = _fraction_pair(s.self_replace_steps, "self_replace_steps")
        self.start_blend = s.start_blend if s.start_blend is not None else (0.2 if s.inversion == "null_text" else 0.0)
        self.self_replace_resolution = s.self_replace_resolution
        if models is not None and s.inversion == "null_text" and models.dtype != torch.float32:
            raise ValueError(
                f"method '{self.name}': inversion=null_text needs model.dtype=float32 (its Adam optimisation through "
                f"the UNet fails in {str(models.dtype).replace('torch.', '')}); set model.dtype=float32 or "
                f"method.inversion=ddim"
            )

    # ------------------------------------------------------------------ inputs

    def check_inputs(self, sample: EditSample) -> None:
        super().check_inputs(sample)
        if not sample.target_prompt:
            where = sample.meta.get("source", sample.id)
            raise MissingInputError(f"{where}: field 'target_prompt': method '{self.name}' needs a target prompt")

    def _where(self, sample: EditSample) -> str:
        return str(sample.meta.get("source", sample.id))

    def equalizer_words(self, target_words: str) -> list[str | int]:
        """The words AttentionReweight scales (``target_words``: the sample's target edit words)."""
        words = self.settings.equalizer_words
        if words == "edit":
            return [target_words] if target_words else []
        if isinstance(words, str | int):
            return [words]
        return list(words or [])

    def plan_edit(self, source: str, target: str, tokenizer: Any, target_words: str = "") -> CrossEdit:
        """The cross-attention edit for a prompt pair (``target_words``: the sample's target edit words, used
        when ``equalizer_words: edit``)."""
        kind = choose_edit(source, target, tokenizer) if self.edit_kind == "auto" else self.edit_kind
        if kind == "replace":
            edit = CrossEdit("replace", replacement_mapper(source, target, tokenizer))
        else:
            mapper, alphas = refinement_mapper(source, target, tokenizer)
            edit = CrossEdit("refine", mapper, alphas)
        words = self.equalizer_words(target_words)
        if words:
            rule = self.settings.word_rule
            edit.equalizer = equalizer(target, words, self.settings.equalizer_value, tokenizer, rule)
        return edit

    def blend_weights(self, sample: EditSample, tokenizer: Any) -> tuple[torch.Tensor, tuple[str, str]]:
        """(2, L) token weights of the blend words in the source and target prompts. Words the word rule does not
        find give no tokens: with none on either side LocalBlend keeps the source everywhere (official)."""
        rule = self.settings.word_rule
        src_words, tgt_words = sample.edit_words if any(sample.edit_words) else ("", "")
        if not (src_words or tgt_words):
            src_words, tgt_words = differing_words(sample.source_prompt, sample.target_prompt, rule)
        if not (src_words or tgt_words):
            raise SampleError(
                f"{self._where(sample)}: field 'edit_words': no blend words (empty, and the prompts do not differ)"
            )
        weights = torch.zeros(2, max_length(tokenizer))
        for row, (prompt, phrase) in enumerate(((sample.source_prompt, src_words), (sample.target_prompt, tgt_words))):
            idx = find_words(prompt, phrase, tokenizer, rule) if phrase else []
            weights[row, idx] = 1.0
            if phrase and not idx:
                log.warning(
                    "%s: blend words '%s' have no tokens in '%s' by the %s word rule: none from that prompt",
                    self._where(sample),
                    phrase,
                    prompt,
                    rule,
                )
        return weights, (src_words, tgt_words)

    # ------------------------------------------------------------------ edit

    def framing(self, sample: EditSample) -> Framing:
        """What the model sees: the official ``load_512`` crop of the sample at the working resolution."""
        s = self.settings
        res = int(s.resolution or self.models.cfg.get("resolution", 512))
        return p2p_framing(sample.size, res, tuple(s.crop_offsets))

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.models.pipeline("text2img")
        frame = self.framing(sample)
        latents, blend, extras = self.edit_latents(sample, frame)
        image = decode_latents(pipe, latents[1:], float32_pixels=True)[0]
        soft_mask = mask = None
        if blend is not None:
            soft, hard = blend.mask(tuple(latents.shape[-2:]))
            soft_mask = soft.float().cpu().numpy().astype(np.float32)
            mask = hard.cpu().numpy().astype(bool)
            if not frame.whole:  # masks in the sample's frame, empty outside the crop
                soft_mask, mask = frame.mask_back(soft_mask), frame.mask_back(mask)
        if not frame.whole:
            extras["model_box"] = list(frame.paste_box())
        return EditOutput(image=frame.image_back(image, sample.image), soft_mask=soft_mask, mask=mask, extras=extras)

    def edit_latents(
        self, sample: EditSample, frame: Framing | None = None
    ) -> tuple[torch.Tensor, LocalBlend | None, dict[str, Any]]:
        """Invert and edit: the final [source, target] latents, the LocalBlend (None when off) and run facts."""
        pipe = self.models.pipeline("text2img")
        tokenizer = pipe.tokenizer
        source, target = sample.source_prompt, sample.target_prompt
        s = self.settings
        try:
            cross = self.plan_edit(source, target, tokenizer, sample.edit_words[1])
            schedule = cross_replace_schedule(self.cross_replace_steps, target, self.steps, tokenizer, s.word_rule)
        except ValueError as err:
            raise SampleError(f"{self._where(sample)}: {err}") from err
        blend_weights, blend_words = self.blend_weights(sample, tokenizer) if s.local_blend else (None, None)

        frame = frame or self.framing(sample)
        z0 = inversion_latent(pipe, frame.model_input(sample.image))
        cond = text_embeddings(pipe, [source, target])
        uncond = text_embeddings(pipe, [s.negative_prompt])
        extras: dict[str, Any] = {
            "edit": cross.kind + ("+reweight" if cross.equalizer is not None else ""),
            "inversion": s.inversion,
        }
        if cross.equalizer is not None:
            extras["equalizer_tokens"] = int((cross.equalizer != 1).sum())

        trajectory = ddim_invert(pipe, z0, cond[:1], self.steps, s.inversion_guidance_scale, uncond)
        uncond_steps: torch.Tensor | list[torch.Tensor] = uncond
        if s.inversion == "null_text":
            result = run_null_text(
                pipe,
                trajectory,
                cond[:1],
                uncond,
                s.guidance_scale,
                s.null_text_inner_steps,
                s.null_text_epsilon,
                s.null_text_lr,
            )
            uncond_steps = result.embeddings
            extras["null_text_inner_steps"] = result.inner_steps

        latent_hw = (int(z0.shape[-2]), int(z0.shape[-1]))
        layers = attention_layers(pipe.unet, latent_hw)
        # LocalBlend reads the down and up blocks, as the official code (the mid block is SD's 8×8 level)
        blend_sides = {h for name, (is_cross, h, _) in layers.items() if is_cross and not name.startswith("mid_block")}
        self_sides = {h for is_cross, h, _ in layers.values() if not is_cross}
        self_side = pick_self_limit(self_sides, latent_hw[0], self.self_replace_resolution)
        blend = None
        if blend_weights is not None:
            side = pick_side(blend_sides, latent_hw[0], s.attention_resolution, "method.attention_resolution")
            hw = next((h, w) for is_cross, h, w in layers.values() if is_cross and h == side)
            blend = LocalBlend(blend_weights, hw, s.blend_threshold, int(self.start_blend * self.steps))
            extras.update(
                blend_resolution=side,
                blend_words=list(blend_words),
                blend_tokens=[int(n) for n in blend_weights.sum(-1).tolist()],
            )
        extras["self_replace_resolution"] = self_side
        self_steps = (int(self.steps * self.self_steps[0]), int(self.steps * self.self_steps[1]))
        controller = P2PController(
            cross.to(z0.device), schedule.to(z0.device), self_steps, self_side * self_side, blend
        )

        latents = trajectory.z_T.expand(2, *trajectory.z_T.shape[1:]).clone()
        with install_controller(pipe.unet, controller):
            latents = ddim_sample(
                pipe,
                latents,
                cond,
                self.steps,
                s.guidance_scale,
                uncond_steps,
                before_step=controller.set_step,
                after_step=blend,
            )
        return latents, blend, extras
