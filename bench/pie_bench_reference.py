"""PIE-Bench's evaluator, re-written per image from its published formulas (cure-lab/PnPInversion,
evaluation/matrics_calculator.py and evaluate.py), independent of the harness.

One call per image pair and metric, torchmetrics modules for PSNR, SSIM, MSE and LPIPS (SqueezeNet), masks
decoded with the border rule, images multiplied by (1 − mask) for the "unedit part" and by the mask for the "edit
part"; CLIP similarity as torchmetrics' CLIPScore defines it (100·max(cos, 0)) but from open_clip embeddings
(torchmetrics' CLIPScore does not run with transformers 5); structure distance as Splice's ``LossG`` computes it
(DINO keys of the last layer, cosine self-similarity, MSE). Used by the parity test of the ``pie_bench`` preset and
by ``score_throughput.py`` as the per-image baseline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image


def border_rule(mask: np.ndarray) -> np.ndarray:
    """PIE-Bench's mask_decode: the first and last rows and columns are set to 1 (annotation errors at the border)."""
    m = mask.astype(np.float64).copy()
    m[0, :] = m[-1, :] = 1
    m[:, 0] = m[:, -1] = 1
    return m


class PieBenchCalculator:
    """torchmetrics modules called once per image, as PIE-Bench's MetricsCalculator does."""

    def __init__(self, clip: tuple | None = None, vit: torch.nn.Module | None = None, vit_layer: int = 11) -> None:
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        from torchmetrics.regression import MeanSquaredError

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        # backbone from torchvision's cache ($TORCH_HOME), as torchmetrics loads it
        self.lpips = LearnedPerceptualImagePatchSimilarity(net_type="squeeze")
        self.mse = MeanSquaredError()
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.clip = clip  # (open_clip model, preprocess, tokenizer)
        self.vit, self.vit_layer = vit, vit_layer

    @staticmethod
    def _pair(img_pred: Image.Image, img_gt: Image.Image, mask_pred: Any, mask_gt: Any) -> tuple:
        pred = np.array(img_pred).astype(np.float32) / 255
        gt = np.array(img_gt).astype(np.float32) / 255
        assert pred.shape == gt.shape, "Image shapes should be the same."
        if mask_pred is not None:
            pred = pred * np.array(mask_pred).astype(np.float32)
        if mask_gt is not None:
            gt = gt * np.array(mask_gt).astype(np.float32)
        return (
            torch.tensor(pred).permute(2, 0, 1).unsqueeze(0),
            torch.tensor(gt).permute(2, 0, 1).unsqueeze(0),
        )

    def calculate_psnr(self, img_pred, img_gt, mask_pred=None, mask_gt=None) -> float:
        return self.psnr(*self._pair(img_pred, img_gt, mask_pred, mask_gt)).item()

    def calculate_lpips(self, img_pred, img_gt, mask_pred=None, mask_gt=None) -> float:
        pred, gt = self._pair(img_pred, img_gt, mask_pred, mask_gt)
        return self.lpips(pred * 2 - 1, gt * 2 - 1).item()

    def calculate_mse(self, img_pred, img_gt, mask_pred=None, mask_gt=None) -> float:
        pred, gt = self._pair(img_pred, img_gt, mask_pred, mask_gt)
        return self.mse(pred.contiguous(), gt.contiguous()).item()

    def calculate_ssim(self, img_pred, img_gt, mask_pred=None, mask_gt=None) -> float:
        return self.ssim(*self._pair(img_pred, img_gt, mask_pred, mask_gt)).item()

    def calculate_clip_similarity(self, img: Image.Image, txt: str, mask: Any = None) -> float:
        model, preprocess, tokenizer = self.clip
        arr = np.array(img)
        if mask is not None:
            arr = np.uint8(arr * np.array(mask))
        with torch.no_grad():
            a = model.encode_image(preprocess(Image.fromarray(arr))[None])[0]
            b = model.encode_text(tokenizer([txt]))[0]
        return 100 * max(float(a @ b / (a.norm() * b.norm())), 0.0)

    def _keys_self_sim(self, img: torch.Tensor) -> torch.Tensor:
        import torchvision.transforms as T

        transform = T.Compose([T.Resize(224, max_size=480), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        out: list[torch.Tensor] = []
        attn = self.vit.blocks[self.vit_layer].attn
        handle = attn.qkv.register_forward_hook(lambda m, i, o: out.append(o))
        with torch.no_grad():
            self.vit(transform(img)[None])
        handle.remove()
        qkv = out[0][0]
        t = qkv.shape[0]
        keys = qkv.reshape(t, 3, attn.num_heads, -1).permute(1, 2, 0, 3)[1]
        x = keys.transpose(0, 1).reshape(t, -1)[None, None]
        x = x[0]
        norm = x.norm(dim=2, keepdim=True)
        return (x @ x.permute(0, 2, 1)) / torch.clamp(norm @ norm.permute(0, 2, 1), min=1e-8)

    def calculate_structure_distance(self, img_pred, img_gt, mask_pred=None, mask_gt=None) -> float:
        pred = np.array(img_pred).astype(np.float32)  # 0-255, not divided (as in PIE-Bench)
        gt = np.array(img_gt).astype(np.float32)
        if mask_pred is not None:
            pred = pred * np.array(mask_pred).astype(np.float32)
        if mask_gt is not None:
            gt = gt * np.array(mask_gt).astype(np.float32)
        pred_t = torch.from_numpy(np.transpose(pred, (2, 0, 1)))
        gt_t = torch.from_numpy(np.transpose(gt, (2, 0, 1)))
        return float(torch.nn.functional.mse_loss(self._keys_self_sim(pred_t), self._keys_self_sim(gt_t)))


def evaluate_pair(
    calc: PieBenchCalculator,
    metrics: list[str],
    src_image: Image.Image,
    tgt_image: Image.Image,
    mask: np.ndarray,
    src_prompt: str,
    tgt_prompt: str,
) -> dict[str, float]:
    """PIE-Bench's calculate_metric for each metric name, with the harness's value names as keys."""
    m = border_rule(mask)[:, :, None].repeat(3, axis=2)
    src_prompt = src_prompt.replace("[", "").replace("]", "")
    tgt_prompt = tgt_prompt.replace("[", "").replace("]", "")
    fns = {
        "psnr": calc.calculate_psnr,
        "lpips": calc.calculate_lpips,
        "mse": calc.calculate_mse,
        "ssim": calc.calculate_ssim,
        "structure_distance": calc.calculate_structure_distance,
    }
    out: dict[str, float] = {}
    for metric in metrics:
        if metric == "clip_similarity_source_image":
            out["clip_score_source_whole"] = calc.calculate_clip_similarity(src_image, src_prompt)
        elif metric == "clip_similarity_target_image":
            out["clip_score_whole"] = calc.calculate_clip_similarity(tgt_image, tgt_prompt)
        elif metric == "clip_similarity_target_image_edit_part":
            out["clip_score_edit"] = (
                math.nan if m.sum() == 0 else calc.calculate_clip_similarity(tgt_image, tgt_prompt, m)
            )
        elif metric.endswith("_unedit_part"):
            base = metric.removesuffix("_unedit_part")
            empty = (1 - m).sum() == 0
            out[f"{base}_background"] = math.nan if empty else fns[base](src_image, tgt_image, 1 - m, 1 - m)
        elif metric.endswith("_edit_part"):
            base = metric.removesuffix("_edit_part")
            out[f"{base}_edit"] = math.nan if m.sum() == 0 else fns[base](src_image, tgt_image, m, m)
        else:
            out[f"{metric}_whole"] = fns[metric](src_image, tgt_image)
    return out


# evaluate.py's default list
PIE_BENCH_METRICS = [
    "structure_distance",
    "psnr_unedit_part",
    "lpips_unedit_part",
    "mse_unedit_part",
    "ssim_unedit_part",
    "clip_similarity_source_image",
    "clip_similarity_target_image",
    "clip_similarity_target_image_edit_part",
]
