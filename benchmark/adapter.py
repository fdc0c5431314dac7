"""The method adapter protocol: what every editing method implements and declares, and how its settings are given.

**Settings.** Each adapter declares its settings once, as a frozen dataclass derived from ``MethodSettings`` (its
``settings_class``): one field per setting, whose default is the official value, written with ``setting(default,
source, doc)`` so that the field also says where the value comes from (``paper``, ``official code``, ``diffusers``
where the method is defined by that library's pipeline, ``ours`` where they leave it open) and what it does. The
YAML users see, ``conf/method/NAME.yaml``, is generated from that class (``python -m benchmark.method_yaml``; a test
checks the committed files are current), so a value and its documentation are written in one place and
``NAME()`` in Python is the method ``emb run method=NAME`` runs. Generated rather than hand-written and tested:
a hand-written YAML would still write every value (and its comment) a second time, and a test can compare values
but not keep the comments true.

The dataclass doubles as the method's OmegaConf structured config: ``build_settings`` assigns a config's values onto
``OmegaConf.structured(settings_class)``, so OmegaConf converts command-line strings by the field's type (as Hydra
does for every other key) and a misspelt key or a value of the wrong type is one line naming the method and the key
when the method is built, before any sample runs. Why not the alternatives: a plain dataclass would need a
home-made type conversion of YAML and command-line values; a Hydra ConfigStore schema would be checked while
Hydra composes (one bad key fails a whole multirun's composition with Hydra's multi-line error, and a plugin's YAML
would have to name the schema in a defaults list); keyword arguments (the earlier design) wrote every setting three
times, and their defaults drifted from the YAML's. Values are assigned, not merged, so a config's
``scheduler_config: {}`` means no overrides rather than the defaults plus nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib
import inspect
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_args

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from benchmark import __version__
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample, MissingInputError, error_line

log = logging.getLogger("emb")

Source = Literal["paper", "official code", "diffusers", "ours"]
SOURCES: tuple[str, ...] = get_args(Source)


@dataclass
class EditContext:
    """Per-sample run state handed to a method: the seed and the device-bound generator made from it."""

    seed: int
    device: torch.device

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)


def setting(default: Any, source: Source, doc: str | None = None) -> Any:
    """A settings field: its default (the official value), where that value comes from and what the setting does
    (the generated YAML's comment). ``doc=None`` in a subclass that only changes a default keeps its base's doc."""
    if source not in SOURCES:
        raise ValueError(f"setting source '{source}': use one of {', '.join(SOURCES)}")
    metadata = {"source": source, "doc": doc}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class MethodSettings:
    """A method's settings (none here). Subclasses are frozen dataclasses whose fields are made with ``setting``."""

    def check(self) -> None:
        """Raise ``ValueError("KEY=VALUE: why")`` for a value its type allows but the method cannot take. Every
        override calls ``super().check()`` first, so the checks of shared settings (``methods.sd_settings``) run
        for every method that has them."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


S = TypeVar("S", bound=MethodSettings)


class SettingsError(ValueError):
    """A method's config cannot be taken: one line naming the method and the key."""


def build_settings(cls: type[S], values: Mapping[str, Any], method: str, base: S | None = None) -> S:
    """``cls``'s defaults (or ``base``) with ``values`` assigned, type-converted by OmegaConf and checked."""
    cfg = OmegaConf.structured(base if base is not None else cls)
    OmegaConf.set_readonly(cfg, False)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise SettingsError(f"method '{method}': unknown setting '{key}'{_did_you_mean(str(key), list(known))}")
        try:
            cfg[key] = value
        except ValidationError:
            raise SettingsError(f"method '{method}': {key}={value!r}: expected {known[key].type}") from None
    settings = OmegaConf.to_object(cfg)
    try:
        settings.check()
    except ValueError as err:
        raise SettingsError(f"method '{method}': {error_line(err)}") from err
    return settings


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (its settings: {', '.join(known)})" if known else " (it has no settings)"


class MethodAdapter:
    """Base of all adapters: one file in ``methods/`` plus ``conf/method/NAME.yaml`` generated from it (README,
    "Adding a method").

    - ``@METHODS.register("NAME")`` on the class is the one place its name is written: the registry sets ``name``
      (rows, sample folders, cache entries; the generated YAML's ``name:``). A subclass registered under another
      name gets that name.
    - ``settings_class``: a frozen ``MethodSettings`` dataclass, one ``setting(...)`` field per setting with the
      official default; the adapter reads ``self.settings``. ``MethodAdapter(models)`` runs with the defaults,
      ``MethodAdapter(models, strength=0.6)`` or ``MethodAdapter(models, settings)`` with others; ``build_method``
      builds the settings from the method's config. A subclass overriding ``__init__`` keeps the signature
      ``(models=None, settings=None, **overrides)`` and calls ``super().__init__`` first.
    - ``base_model``: the model config its defaults are for (the YAML's ``base_model:``; another model is a
      warning).
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
    settings_class: ClassVar[type[MethodSettings]] = MethodSettings
    base_model: ClassVar[str | None] = None
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

    def __init__(self, models: Any = None, settings: MethodSettings | None = None, **overrides: Any) -> None:
        if settings is not None and not isinstance(settings, self.settings_class):
            raise TypeError(f"method '{self.name}': settings must be {self.settings_class.__name__}")
        self.models = models
        self.settings = build_settings(self.settings_class, overrides, self.name, base=settings)

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
        """The method's name and every setting (stamped into results)."""
        return {"name": self.name, **self.settings.as_dict()}


# keys of a method's config that are not settings: which adapter, and documentation the runner reads
CONFIG_ONLY_KEYS = ("name", "base_model", "description")


def build_method(mcfg: DictConfig, models: Any) -> MethodAdapter:
    """The adapter ``mcfg.name`` with the settings of its config (``conf/method/NAME.yaml`` plus overrides)."""
    params = OmegaConf.to_container(mcfg, resolve=True)
    name = str(params["name"])
    cls = METHODS.get(name)
    base_model = params.get("base_model")  # the model the method's defaults are for (documentation)
    if base_model and models is not None and models.name != base_model:
        # a test or demonstration model (``runs_every_method: true`` in its config) runs every method by design:
        # said in the log, not warned about
        say = log.info if models.cfg.get("runs_every_method", False) else log.warning
        say("method %s: its defaults are for model=%s, running on model=%s", name, base_model, models.name)
    values = {k: v for k, v in params.items() if k not in CONFIG_ONLY_KEYS}
    settings = build_settings(cls.settings_class, values, name)
    try:
        return cls(models, settings)
    except ValueError as err:  # a setting this model cannot run (e.g. null-text inversion in float16)
        if str(err).startswith(f"method '{name}'"):
            raise
        raise ValueError(f"method '{name}': {error_line(err)}") from err


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
