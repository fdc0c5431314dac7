"""Methods, metrics and dataset loaders that live outside this checkout (``plugins:`` in the config).

An entry is a Python module name (installed, or on ``PYTHONPATH``) or the path of a ``.py`` file; importing it runs
its ``@METHODS.register`` / ``@METRICS.register`` / ``@DATASETS.register`` decorators, exactly as the registries'
discovery imports the modules of ``methods/``. Its YAML (``method/NAME.yaml``) goes in a config folder added with
Hydra's ``hydra.searchpath=[file:///ABS/PATH/conf]``. A file is imported under the module name
``emb_plugins.<stem>`` so that its source is found for the cache key (``adapter.code_version``) like any module's.

``compose_config`` is the one way the project's config is composed outside ``emb run``'s own composition (the
``methods:`` list, ``emb score metrics=NAME``, ``emb data``): Hydra's, with such config folders on its search path.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from benchmark.provenance import CONF_DIR
from benchmark.types import error_line

if TYPE_CHECKING:
    from omegaconf import DictConfig

FILE_PACKAGE = "emb_plugins"  # the namespace plugin files are imported under


class PluginError(ValueError):
    """A ``plugins:`` entry that cannot be imported: one line naming the entry."""


def _import_file(path: Path) -> ModuleType:
    name = f"{FILE_PACKAGE}.{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(loaded.__file__ or "").resolve() == path.resolve():
            return loaded  # a multirun's next job: registered already
        raise ImportError(f"another plugin file named {path.stem}.py is loaded already ({loaded.__file__})")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python file: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a fixed file can be imported again in this process
        raise
    return module


def plugin_entries(entries: Any, key: str = "plugins") -> list[str]:
    """``plugins`` as a list of strings: a single name or path (``plugins=mymod``) is a list of one."""
    if entries is None:
        return []
    if isinstance(entries, str):
        return [entries] if entries else []
    if isinstance(entries, Iterable) and not isinstance(entries, Mapping):
        return [str(e) for e in entries]
    raise PluginError(f"{key}: a list of module names or .py files, not {entries!r}")


def _is_file(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def absolute_entries(entries: Any, key: str = "plugins") -> list[str]:
    """The entries with file paths made absolute (from the current folder): what a run stores in its config, so
    that ``emb score`` from another folder imports the same files."""
    return [str(Path(e).expanduser().resolve()) if _is_file(e) else e for e in plugin_entries(entries, key)]


def load_plugins(entries: Any, key: str = "plugins") -> list[str]:
    """Import every entry (module name or ``.py`` path, relative paths from the current folder); returns the
    imported modules' names. The first entry that fails raises ``PluginError`` naming it and why."""
    names = []
    for i, entry in enumerate(plugin_entries(entries, key)):
        try:
            if _is_file(entry):
                path = Path(entry).expanduser()
                if not path.is_file():
                    raise FileNotFoundError(f"no such file (relative paths start at {Path.cwd()})")
                module = _import_file(path)
            else:
                module = importlib.import_module(entry)
        except Exception as err:  # noqa: BLE001 — whatever the plugin raises, the user gets one line naming it
            raise PluginError(f"{key}[{i}]='{entry}': cannot import it: {error_line(err)}") from err
        names.append(module.__name__)
    return names


def config_folder_urls(folders: Iterable[str | Path]) -> list[str]:
    """Config folders as Hydra search path entries (``file:///abs/path``)."""
    return ["file://" + str(Path(f).expanduser().resolve()) for f in folders]


def searchpath_override(entries: Iterable[str]) -> list[str]:
    """Hydra's ``hydra.searchpath=[...]`` override for search path entries (``file:///abs/conf``, ``pkg://...``);
    empty for none. Each entry is quoted: a path with spaces or '=' would break the override grammar."""
    quoted = ",".join("'" + str(e).replace("'", "\\'") + "'" for e in entries)
    return [f"hydra.searchpath=[{quoted}]"] if quoted else []


def compose_config(overrides: list[str]) -> DictConfig:
    """The project's config (``conf/config.yaml``) composed by Hydra with ``overrides``, which may include a
    ``searchpath_override``. Inside a running Hydra app (``emb run``, each job of a multirun) the app's own Hydra
    composes it; elsewhere one is set up on ``conf/`` for this call."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
