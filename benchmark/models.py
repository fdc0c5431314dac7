"""Model loading: hub id or local folder through diffusers/transformers ``from_pretrained``.

The same path serves a user's hub id and the tests' tiny models: a ``builder`` (e.g. ``tiny``) writes a small
pipeline to a cache folder once, and from then on it is loaded back like any downloaded model.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def quiet_hub_progress() -> None:
    """Loading/saving progress bars of diffusers/transformers would drown the harness's own progress bar; a
    diffusers message that is wrong everywhere is dropped (every other warning stays)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    # "modules that should be kept in float32: []": diffusers warns at every .to(dtype) of a model even when the
    # list is empty (nothing to keep), e.g. each time a method derives a pipeline with its own scheduler
    modeling = dlog.get_logger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _EmptyFloat32ListFilter) for f in modeling.filters):
        modeling.addFilter(_EmptyFloat32ListFilter())


class _EmptyFloat32ListFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


PIPELINE_KINDS = ("text2img", "img2img", "inpaint", "instruct_pix2pix", "diffedit", "dit", "pixel")


def resolve_local_path(ident: str) -> str:
    """Project-relative model folders: a relative path that is not there from the working directory but is from the
    project root (e.g. the shipped ``data/toyworld/text2img``) resolves against the project root, so shipped models
    load from any directory. Anything else (hub ids ``org/name``, absolute or existing paths) is returned as is."""
    from benchmark.provenance import PROJECT_ROOT

    path = Path(ident).expanduser()
    if path.is_absolute() or path.exists():
        return ident
    candidate = PROJECT_ROOT / path
    return str(candidate) if candidate.exists() else ident


class MissingWeightsError(RuntimeError):
    """Weights are neither local nor downloadable; the message says which and how to provide them."""


def resolve_device(name: str = "auto", key: str = "model.device") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU. A device this machine lacks is one error line before
    anything runs (not a driver error in every sample)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{key}='{name}': not a torch device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ValueError(f"{key}='{name}': torch sees {count} CUDA device(s) here; use {key}=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{key}='{name}': MPS is not available here; use {key}=auto or cpu")
    return device


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name in (None, "auto"):
        # half precision only where it is fast and supported: on the CPU fp16 convs are slow or missing
        return torch.float16 if device.type == "cuda" else torch.float32
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"model.dtype='{name}': not a torch dtype (use float32, float16 or bfloat16)")
    return dt


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings measure the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def missing_weights_message(field: str, ident: str) -> str:
    local = Path(ident).expanduser()
    if local.is_absolute() or ident.startswith((".", "~")) or local.exists():
        return (
            f"{field}='{ident}': no model folder there (expected a diffusers/transformers folder with "
            f"model_index.json or config.json); point {field} at a folder made by save_pretrained"
        )
    return (
        f"{field}='{ident}': weights not found locally and the hub cannot be reached. Download them where "
        f"there is network (`hf download {ident} --local-dir DIR`) and set {field}=DIR, or set HF_HOME to a "
        f"cache that holds them"
    )


def pipeline_class(kind: str):
    import diffusers

    classes = {
        "text2img": diffusers.StableDiffusionPipeline,
        "img2img": diffusers.StableDiffusionImg2ImgPipeline,
        "inpaint": diffusers.StableDiffusionInpaintPipeline,
        "instruct_pix2pix": diffusers.StableDiffusionInstructPix2PixPipeline,
        "dit": diffusers.PixArtAlphaPipeline,  # the model config's `dit:` (PixArt-alpha layout)
        # an unconditional pixel-space UNet2DModel + DDPMScheduler (e.g. a converted guided-diffusion checkpoint)
        "pixel": diffusers.DDPMPipeline,
    }
    if kind == "diffedit":
        from diffusers import StableDiffusionDiffEditPipeline

        _quiet_deprecation_notice(StableDiffusionDiffEditPipeline.__name__)
        return StableDiffusionDiffEditPipeline
    if kind not in classes:
        raise ValueError(f"unknown pipeline kind '{kind}'; known: {', '.join(PIPELINE_KINDS)}")
    return classes[kind]


class _DropDeprecationNotice(logging.Filter):
    def __init__(self, class_name: str) -> None:
        super().__init__()
        self.text = f"The {class_name} has been deprecated"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.text)


def _quiet_deprecation_notice(class_name: str) -> None:
    """Diffusers logs "The X has been deprecated" every time a frozen pipeline is built (DiffEdit: once per
    ``from_pipe``, twice a run). It is a fact about diffusers' maintenance, not about the run; the README says it
    once, so the run's log does not repeat it."""
    target = logging.getLogger("diffusers.pipelines.pipeline_utils")
    if not any(isinstance(f, _DropDeprecationNotice) and class_name in f.text for f in target.filters):
        target.addFilter(_DropDeprecationNotice(class_name))


def from_pretrained(cls: Any, ident: str, field: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` with the one-line missing-weights error."""
    local = Path(ident).expanduser()
    if (local.is_absolute() or ident.startswith((".", "~"))) and not local.is_dir():
        # a path that is not there: without this the hub client rejects it as a malformed repo id
        raise MissingWeightsError(missing_weights_message(field, ident))
    try:
        return cls.from_pretrained(ident, **kwargs)
    except (OSError, ValueError) as err:
        from huggingface_hub.errors import HFValidationError

        text = str(err)
        if (
            isinstance(err, ValueError)
            and not isinstance(err, HFValidationError)  # not a folder and not a valid hub id
            and "not found" not in text.lower()
            and "does not appear" not in text
        ):
            raise
        raise MissingWeightsError(missing_weights_message(field, ident)) from err


class ModelBundle:
    """The model group's config made usable: loads each pipeline variant once, on demand."""

    def __init__(self, cfg: Any, cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.name: str = cfg.get("name", "model")
        self.device = resolve_device(cfg.get("device", "auto"))
        self.dtype = resolve_dtype(cfg.get("dtype", "auto"), self.device)
        self.cache_dir = Path(cache_dir or "outputs/models").expanduser()
        self._pipes: dict[str, Any] = {}
        quiet_hub_progress()
        # called with every newly loaded pipeline (the runner attaches its NFE counter here)
        self.on_load: list[Any] = []

    def ident(self, kind: str) -> str:
        """Where the weights of a pipeline variant come from (hub id or folder)."""
        key = {"img2img": "text2img", "diffedit": "text2img"}.get(kind, kind)
        ident = self.cfg.get(key)
        if not ident:
            raise MissingWeightsError(
                f"model.{key}: model '{self.name}' has no {key} weights configured; choose a model with one "
                f"(e.g. model=sd-inpainting) or set model.{key}=HUB_ID_OR_FOLDER"
            )
        builder = self.cfg.get("builder")
        if builder:
            ident = str(self._build(builder, key))
        return resolve_local_path(str(ident))

    def _build(self, builder: str, key: str) -> Path:
        from benchmark import tiny_models

        root = self.cache_dir / f"{builder}-{tiny_models.BUILD_VERSION}"
        return tiny_models.ensure_built(builder, root, key)

    def pipeline(self, kind: str) -> Any:
        if kind in self._pipes:
            return self._pipes[kind]
        ident = self.ident(kind)
        cls = pipeline_class(kind)
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if kind in ("text2img", "img2img", "inpaint", "diffedit"):
            kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        if self.cfg.get("revision"):
            kwargs["revision"] = self.cfg.revision
        if self.cfg.get("variant"):
            kwargs["variant"] = self.cfg.variant
        if kind in ("img2img", "diffedit") and "text2img" in self._pipes:
            # reuse the loaded weights instead of loading them twice
            extra = {}
            if kind == "diffedit":
                from diffusers import DDIMInverseScheduler

                extra["inverse_scheduler"] = DDIMInverseScheduler.from_config(self._pipes["text2img"].scheduler.config)
            pipe = cls.from_pipe(self._pipes["text2img"], **extra)
        else:
            field = f"model.{'text2img' if kind in ('img2img', 'diffedit') else kind}"
            try:
                pipe = from_pretrained(cls, ident, field, **kwargs)
            except MissingWeightsError as err:
                hint = self.cfg.get("weights_hint")  # how this model's weights are made (e.g. a converter)
                if not hint:
                    raise
                raise MissingWeightsError(f"{field}='{ident}': no model folder there; {hint}") from err
            if kind == "diffedit":
                pipe = self._with_inverse_scheduler(pipe)
            if kind == "dit":
                check_t5_tokenizer(pipe.tokenizer, field, ident)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        for hook in self.on_load:
            hook(pipe)
        self._pipes[kind] = pipe
        return pipe

    @staticmethod
    def _with_inverse_scheduler(pipe: Any) -> Any:
        from diffusers import DDIMInverseScheduler

        if getattr(pipe, "inverse_scheduler", None) is None:
            # a plain attribute would be dropped by save_pretrained; register it as a component
            pipe.register_modules(inverse_scheduler=DDIMInverseScheduler.from_config(pipe.scheduler.config))
        return pipe

    def describe(self) -> dict[str, Any]:
        """What the bundle loads, for provenance and for the sample cache's key. A local folder also gets the digest
        of its files, so retrained or re-shipped weights at the same path are not mistaken for the old ones."""
        out = {"name": self.name, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", "")}
        # the working resolution changes every output (methods without their own `resolution` use the model's)
        for k in ("revision", "variant", "resolution"):
            if self.cfg.get(k):
                out[k] = str(self.cfg.get(k))
        for k in ("text2img", "inpaint", "instruct_pix2pix", "dit", "pixel"):
            if self.cfg.get(k):
                out[k] = str(self.cfg.get(k))
                local = Path(self.ident(k))
                if local.is_dir():
                    out[f"{k}_sha256"] = folder_digest(local)
        return out


def folder_digest(folder: Path) -> str:
    """sha256 over a local model folder: every file's relative path and content digest (memoised per file)."""
    import hashlib

    from benchmark.metrics.networks import file_digest

    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()


def write_clip_tokenizer(out_dir: Path) -> Path:
    """A real CLIP BPE tokenizer made offline from the vocabulary open_clip ships (ids equal open_clip's)."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    from open_clip.tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return out_dir


def load_clip_tokenizer(path: str | Path, field: str = "tokenizer") -> Any:
    """Load a CLIP tokenizer and refuse the silent offline fallback that maps every word to one id."""
    from transformers import CLIPTokenizer

    tok = from_pretrained(CLIPTokenizer, str(path), field, model_max_length=77)
    if len(tok) < 1000:
        raise MissingWeightsError(
            f"{field}='{path}': tokenizer has only {len(tok)} tokens (an offline stub, not "
            f"the real vocabulary); point it at a folder with vocab.json and merges.txt"
        )
    return tok


# An offline ``T5Tokenizer.from_pretrained(hub id)`` returns a stub instead of raising: T5's 100 sentinels, its special
# tokens and "▁", nothing else, so every word becomes <unk>. A real vocabulary has at least its letters.
MIN_T5_PIECES = 26


def t5_word_pieces(tokenizer: Any) -> int:
    """Vocabulary entries that can spell text: neither special tokens, T5 sentinels (``<extra_id_N>``) nor "▁"."""
    special = set(tokenizer.all_special_tokens)
    return sum(
        1
        for piece in tokenizer.get_vocab()
        if piece not in special and piece != "\u2581" and not piece.startswith("<extra_id_")
    )


def check_t5_tokenizer(tokenizer: Any, field: str, ident: str) -> None:
    """Refuse the silent offline stub tokenizer that maps every word to one id (REFERENCE.md's trap)."""
    pieces = 0 if tokenizer is None else t5_word_pieces(tokenizer)
    if pieces < MIN_T5_PIECES:
        size = 0 if tokenizer is None else len(tokenizer)
        raise MissingWeightsError(
            f"{field}='{ident}': its tokenizer has {size} tokens but only {pieces} word pieces (an offline stub that "
            f"maps every word to <unk>); point {field} at a PixArt-alpha folder whose tokenizer/ holds the real "
            f"vocabulary"
        )


def scheduler_class(name: str, key: str = "scheduler") -> Any:
    """The diffusers scheduler class called ``name``; anything else is one error line naming ``key``."""
    import diffusers

    cls = getattr(diffusers, str(name), None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ValueError(
            f"{key}='{name}': not a diffusers scheduler class (e.g. DDIMScheduler, LMSDiscreteScheduler, PNDMScheduler)"
        )
    return cls
