"""The toy world: a tiny text-to-image model family trained by this project on the synthetic shapes world.

Everything here uses the standard classes (diffusers ``AutoencoderKL`` / ``UNet2DConditionModel`` / SD pipelines,
transformers ``CLIPTextModel`` + the real CLIP BPE tokenizer, an ``open_clip`` CLIP), so every Stable-Diffusion
method adapter and the CLIP-based metrics run on it unchanged. ``emb toyworld train`` trains it on CPU;
``emb toyworld evidence`` measures that the world is learned. The shipped weights live in ``data/toyworld/``.
"""

from __future__ import annotations

from benchmark.provenance import PROJECT_ROOT

SHIPPED_DIR = PROJECT_ROOT / "data" / "toyworld"
# folder names inside a toy-world model directory (shipped or freshly trained)
TEXT2IMG = "text2img"
INPAINT = "inpaint"
CLIP = "clip"
