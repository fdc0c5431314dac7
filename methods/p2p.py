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
from typing import Any

import numpy as np
import torch

from benchmark.adapter import EditContext, MethodAdapter, init_params
from benchmark.attention import install_controller
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample, MissingInputError, SampleError
from methods.ddim_inversion import ddim_invert, ddim_sample, decode_latents, encode_image, text_embeddings
from methods.image_ops import resize_image
from methods.null_text_inversion import null_text_inversion as run_null_text
from methods.p2p_control import CrossEdit, LocalBlend, P2PController, attention_layers, pick_self_limit
from methods.p2p_tokens import (
    choose_edit,
    cross_replace_schedule,
    differing_words,
    equalizer,
    find_phrase,
    max_length,
    refinement_mapper,
    replacement_mapper,
)
from methods.sd_common import pick_side

log = logging.getLogger(__name__)

EDITS = ("auto", "replace", "refine")
INVERSIONS = ("null_text", "ddim")


def _fraction_pair(spec: Any, field: str) -> tuple[float, float]:
    if isinstance(spec, int | float):
        return 0.0, float(spec)
    if isinstance(spec, Sequence) and len(spec) == 2:
        return float(spec[0]), float(spec[1])
    raise ValueError(f"method.{field}={spec!r}: expected a fraction or [start, end]")


@METHODS.register("p2p")
class PromptToPrompt(MethodAdapter):
    name = "p2p"
    needs_source_prompt = True
    produces_mask = True
    pipelines = ("text2img",)

    def __init__(
        self,
        models: Any = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        inversion: str = "null_text",
        inversion_guidance_scale: float = 1.0,
        null_text_inner_steps: int = 10,
        null_text_epsilon: float = 1e-5,
        null_text_lr: float = 1e-2,
        edit: str = "auto",
        cross_replace_steps: Any = 0.8,
        self_replace_steps: Any = 0.4,
        equalizer_words: Any = None,
        equalizer_value: float = 2.0,
        local_blend: bool = True,
        blend_threshold: float = 0.3,
        start_blend: float | None = None,
        attention_resolution: int | None = None,
        self_replace_resolution: int | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__(models, **init_params(locals()))
        if inversion not in INVERSIONS:
            raise ValueError(f"method.inversion='{inversion}': use one of {', '.join(INVERSIONS)}")
        if edit not in EDITS:
            raise ValueError(f"method.edit='{edit}': use one of {', '.join(EDITS)}")
        self.steps = int(num_inference_steps)
        self.guidance = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.inversion = inversion
        self.inversion_guidance = float(inversion_guidance_scale)
        self.inner_steps = int(null_text_inner_steps)
        self.epsilon = float(null_text_epsilon)
        self.lr = float(null_text_lr)
        self.edit_kind = edit
        self.cross_replace_steps = cross_replace_steps
        self.self_steps = _fraction_pair(self_replace_steps, "self_replace_steps")
        self.equalizer_words = equalizer_words
        self.equalizer_value = float(equalizer_value)
        self.local_blend = bool(local_blend)
        self.blend_threshold = float(blend_threshold)
        self.start_blend = float(start_blend) if start_blend is not None else (0.2 if inversion == "null_text" else 0.0)
        self.attention_resolution = attention_resolution
        self.self_replace_resolution = self_replace_resolution
        self.resolution = resolution
        if models is not None:
            if inversion == "null_text" and models.dtype != torch.float32:
                raise ValueError(
                    f"method.inversion=null_text needs model.dtype=float32 (its Adam optimisation through the UNet "
                    f"fails in {str(models.dtype).replace('torch.', '')}); set model.dtype=float32 or "
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

    def plan_edit(self, source: str, target: str, tokenizer: Any, target_words: str = "") -> CrossEdit:
        """The cross-attention edit for a prompt pair (``target_words``: the sample's target edit words, used
        when ``equalizer_words: edit``)."""
        kind = choose_edit(source, target, tokenizer) if self.edit_kind == "auto" else self.edit_kind
        if kind == "replace":
            edit = CrossEdit("replace", replacement_mapper(source, target, tokenizer))
        else:
            mapper, alphas = refinement_mapper(source, target, tokenizer)
            edit = CrossEdit("refine", mapper, alphas)
        words = self.equalizer_words
        if words == "edit":
            words = [target_words] if target_words else []
        elif isinstance(words, str):
            words = [words]
        if words:
            edit.equalizer = equalizer(target, list(words), self.equalizer_value, tokenizer)
        return edit

    def blend_weights(self, sample: EditSample, tokenizer: Any) -> tuple[torch.Tensor, tuple[str, str]]:
        """(2, L) token weights of the blend words in the source and target prompts."""
        src_words, tgt_words = sample.edit_words if any(sample.edit_words) else ("", "")
        if not (src_words or tgt_words):
            src_words, tgt_words = differing_words(sample.source_prompt, sample.target_prompt)
        weights = torch.zeros(2, max_length(tokenizer))
        for row, (prompt, phrase, field) in enumerate(
            ((sample.source_prompt, src_words, "source_prompt"), (sample.target_prompt, tgt_words, "target_prompt"))
        ):
            if not phrase:
                continue
            idx = find_phrase(prompt, phrase, tokenizer)
            if not idx:
                raise SampleError(
                    f"{self._where(sample)}: field 'edit_words': blend words '{phrase}' are not in the {field} "
                    f"'{prompt}'"
                )
            weights[row, idx] = 1.0
        if not weights.any():
            raise SampleError(
                f"{self._where(sample)}: field 'edit_words': no blend words (empty, and the prompts do not differ)"
            )
        return weights, (src_words, tgt_words)

    # ------------------------------------------------------------------ edit

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        pipe = self.models.pipeline("text2img")
        latents, blend, extras = self.edit_latents(sample)
        image = decode_latents(pipe, latents[1:])[0]
        soft_mask = mask = None
        if blend is not None:
            soft, hard = blend.mask(tuple(latents.shape[-2:]))
            soft_mask = soft.float().cpu().numpy().astype(np.float32)
            mask = hard.cpu().numpy().astype(bool)
        return EditOutput(image=resize_image(image, sample.size), soft_mask=soft_mask, mask=mask, extras=extras)

    def edit_latents(self, sample: EditSample) -> tuple[torch.Tensor, LocalBlend | None, dict[str, Any]]:
        """Invert and edit: the final [source, target] latents, the LocalBlend (None when off) and run facts."""
        pipe = self.models.pipeline("text2img")
        tokenizer = pipe.tokenizer
        source, target = sample.source_prompt, sample.target_prompt
        try:
            cross = self.plan_edit(source, target, tokenizer, sample.edit_words[1])
            schedule = cross_replace_schedule(self.cross_replace_steps, target, self.steps, tokenizer)
        except ValueError as err:
            raise SampleError(f"{self._where(sample)}: {err}") from err
        blend_weights, blend_words = self.blend_weights(sample, tokenizer) if self.local_blend else (None, None)

        res = int(self.resolution or self.models.cfg.get("resolution", 512))
        z0 = encode_image(pipe, resize_image(sample.image, (res, res)))
        cond = text_embeddings(pipe, [source, target])
        uncond = text_embeddings(pipe, [self.negative_prompt])
        extras: dict[str, Any] = {
            "edit": cross.kind + ("+reweight" if cross.equalizer is not None else ""),
            "inversion": self.inversion,
        }

        trajectory = ddim_invert(pipe, z0, cond[:1], self.steps, self.inversion_guidance, uncond)
        uncond_steps: torch.Tensor | list[torch.Tensor] = uncond
        if self.inversion == "null_text":
            result = run_null_text(
                pipe, trajectory, cond[:1], uncond, self.guidance, self.inner_steps, self.epsilon, self.lr
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
            side = pick_side(blend_sides, latent_hw[0], self.attention_resolution, "method.attention_resolution")
            hw = next((h, w) for is_cross, h, w in layers.values() if is_cross and h == side)
            blend = LocalBlend(blend_weights, hw, self.blend_threshold, int(self.start_blend * self.steps))
            extras.update(blend_resolution=side, blend_words=list(blend_words))
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
                self.guidance,
                uncond_steps,
                before_step=controller.set_step,
                after_step=blend,
            )
        return latents, blend, extras
