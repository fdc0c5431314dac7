"""The method adapter protocol: what every editing method implements and declares."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf

from benchmark import __version__
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample, MissingInputError, error_line

log = logging.getLogger("emb")


@dataclass
class EditContext:
    """Per-sample run state handed to a method: the seed and the device-bound generator made from it."""

    seed: int
    device: torch.device

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)


def init_params(local_vars: dict[str, Any]) -> dict[str, Any]:
    """An adapter's constructor arguments from its ``locals()``, for ``MethodAdapter.params`` (stamped into every
    result): ``super().__init__(models, **init_params(locals()))`` as the constructor's first statement."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "models", "__class__")}


class MethodAdapter:
    """Base of all adapters: one file in ``methods/`` plus ``conf/method/NAME.yaml`` (README, "Adding a method").

    - ``@METHODS.register("NAME")`` on the class; ``NAME`` is its ``name`` (rows, sample folders, cache entries) and
      the YAML's ``name:``. The registry sets ``name`` from it; a class that states another name is an error.
    - ``__init__(self, models=None, <one keyword per YAML key, default = the official value>)`` and then
      ``super().__init__(models, **init_params(locals()))``: no ``**kwargs``, so a misspelt YAML key is one error
      line. ``base_model`` and ``description`` are YAML-only (the runner reads them).
    - ``edit(sample, ctx)`` returns an ``EditOutput`` (image and/or binary mask, soft mask); take randomness from
      ``ctx.generator()`` so a sample's result depends only on the run seed and the sample id. An exception fails
      that one sample (recorded with its first line); the run goes on.
    - The flags below say what it needs (checked per sample by ``check_inputs``, and ``needs_model`` puts the
      model's digest in the cache key). ``produces_image`` / ``produces_mask`` document what ``edit`` returns.
    - Its cached samples are recomputed when its config, its module, its base classes' modules or the shared
      ``methods.*`` modules they use change; list any other module its result depends on in ``code_modules``.
      ``input_fingerprint`` covers files it reads besides the sample.
    """

    name: ClassVar[str] = "base"
    needs_model: ClassVar[bool] = True
    needs_gt_mask: ClassVar[bool] = False
    needs_source_prompt: ClassVar[bool] = False
    needs_instruction: ClassVar[bool] = False
    produces_image: ClassVar[bool] = True
    produces_mask: ClassVar[bool] = False
    # pipelines the method loads from the model bundle; the runner counts their denoiser calls
    pipelines: ClassVar[tuple[str, ...]] = ()
    # modules outside ``methods.*`` whose code changes this method's results (hashed into its cache entries)
    code_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, models: Any = None, **params: Any) -> None:
        self.models = models
        self.params = params
        if params.get("scheduler"):
            # a misspelt sampler is one line when the method is built, not a failure in every sample
            from benchmark.models import scheduler_class

            scheduler_class(params["scheduler"], f"{self.name}.scheduler")

    def check_inputs(self, sample: EditSample) -> None:
        """Fail the sample with one line when it lacks an input this method needs."""
        where = sample.meta.get("source", sample.id)
        if self.needs_gt_mask and (sample.mask is None or not sample.mask.any()):
            raise MissingInputError(f"{where}: field 'mask': method '{self.name}' needs a non-empty GT mask")
        if self.needs_source_prompt and not sample.source_prompt:
            raise MissingInputError(f"{where}: field 'source_prompt': method '{self.name}' needs a source prompt")
        if self.needs_instruction and not sample.instruction:
            raise MissingInputError(f"{where}: field 'instruction': method '{self.name}' needs an edit instruction")

    def skip_reason(self) -> str | None:
        """Why this method cannot run with the configured model (checked before any sample), or None."""
        if not self.needs_model:
            return None
        for kind in self.pipelines:
            key = "text2img" if kind in ("img2img", "diffedit") else kind
            if not self.models.cfg.get(key):
                return (
                    f"model '{self.models.name}' has no {key} weights (model.{key} is empty); pick a model "
                    f"that has them or set model.{key}=HUB_ID_OR_FOLDER"
                )
        return None

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        raise NotImplementedError

    def input_fingerprint(self, sample: EditSample) -> str | None:
        """Hash of inputs the method reads besides the sample (e.g. mask files of another run); it enters the
        sample cache key, so a changed input is never served a stale result. None: nothing extra."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def build_method(mcfg: DictConfig, models: Any) -> MethodAdapter:
    params = OmegaConf.to_container(mcfg, resolve=True)
    cls = METHODS.get(params.pop("name"))
    params.pop("description", None)
    base_model = params.pop("base_model", None)  # the model the method's defaults are for (documentation)
    if base_model and models is not None and models.name != base_model:
        # a test or demonstration model (``runs_every_method: true`` in its config) runs every method by design:
        # said in the log, not warned about
        say = log.info if models.cfg.get("runs_every_method", False) else log.warning
        say("method %s: its defaults are for model=%s, running on model=%s", mcfg.name, base_model, models.name)
    try:
        return cls(models=models, **params)
    except TypeError as err:  # an unknown or misspelt key in the method's config
        raise ValueError(f"method '{mcfg.name}': {err}") from err
    except ValueError as err:  # a value the adapter cannot take (float('abc')): name the method unless it did
        if str(err).startswith((f"{mcfg.name}.", "method.", f"method '{mcfg.name}'")):
            raise
        raise ValueError(f"method '{mcfg.name}': {error_line(err)} (check its config values)") from err


def code_version(method: MethodAdapter) -> str:
    """Package version plus a hash of the adapter's source, the shared ``methods.*`` modules it uses (found by
    itself), its base classes' modules, and any other module it declares in ``code_modules`` (e.g. a helper package
    outside ``methods/``): a change in any of them recomputes its cached samples."""
    h = hashlib.sha256()
    roots = {type(method).__module__}  # the adapter's own module, wherever it lives
    roots |= {klass.__module__ for klass in type(method).__mro__ if klass.__module__.startswith("methods.")}
    for extra in getattr(method, "code_modules", ()):
        importlib.import_module(extra)  # declared: must exist (an ImportError names it)
        roots.add(extra)
    modules = sorted({name for root in roots for name in _method_modules(root)} | roots)
    for name in modules:
        try:
            h.update(inspect.getsource(sys.modules[name]).encode())
        except (OSError, TypeError):
            h.update(name.encode())
    return f"{__version__}+{h.hexdigest()[:12]}"


# modules whose code shapes a method's results: the shared method pieces and the harness's attention processors
METHOD_CODE_PREFIXES = ("methods.", "benchmark.attention")


def _method_modules(root: str) -> list[str]:
    """``root``, the shared ``methods.*`` modules it uses (transitively) and ``benchmark.adapter``."""
    seen = {MethodAdapter.__module__}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in sys.modules:
            continue
        seen.add(name)
        for value in vars(sys.modules[name]).values():
            dep = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(dep, str) and dep.startswith(METHOD_CODE_PREFIXES) and dep not in seen:
                todo.append(dep)
    return sorted(seen)
