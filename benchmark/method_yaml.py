"""``conf/method/NAME.yaml`` generated from a method adapter's settings class (``benchmark.adapter``, "Settings").

    python -m benchmark.method_yaml sdedit            # print the YAML of one method
    python -m benchmark.method_yaml --write           # rewrite every built-in method's YAML
    python -m benchmark.method_yaml --check           # exit 1 naming the YAMLs that are not current
    python -m benchmark.method_yaml my_method --plugins my_method.py > conf/method/my_method.yaml   # a plugin's

The file holds ``name:`` (Hydra's ``method.name`` selects the adapter), ``base_model:`` when the adapter names one,
then every setting with its default, each under a comment: what it does and where the value comes from. The
adapter's docstring heads the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from benchmark.adapter import MethodAdapter, MethodSettings
from benchmark.provenance import PROJECT_ROOT
from benchmark.registry import METHODS, UnknownNameError

METHOD_CONF = PROJECT_ROOT / "conf" / "method"
WIDTH = 118  # comment text per line: the project's 120 columns less "# "


def field_doc(cls: type[MethodSettings], name: str) -> str:
    """A field's doc; a field redeclared only to change its default takes the doc of the class that declared it."""
    for klass in cls.__mro__:
        own = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if own is not None and own.metadata.get("doc"):
            return own.metadata["doc"]
    raise ValueError(f"{cls.__name__}.{name}: no doc (write it with setting(default, source, doc))")


def field_source(cls: type[MethodSettings], name: str) -> str:
    own = {f.name: f for f in dataclasses.fields(cls)}[name]
    if "source" not in own.metadata:
        raise ValueError(f"{cls.__name__}.{name}: no source (write it with setting(default, source, doc))")
    return str(own.metadata["source"])


def comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for para in text.splitlines() for line in (textwrap.wrap(para, WIDTH) or [""])]


def value_yaml(key: str, value: Any) -> list[str]:
    # a list or dict of scalars on one line: scheduler_config: {timestep_spacing: linspace, steps_offset: 0}
    flow = None if isinstance(value, list | dict) else False
    return yaml.safe_dump({key: value}, default_flow_style=flow, sort_keys=False, width=1000).splitlines()


def render(adapter: type[MethodAdapter]) -> str:
    """The YAML of ``adapter``'s defaults."""
    doc = inspect.getdoc(adapter)  # a subclass without one takes its parent adapter's
    if not doc or doc == inspect.getdoc(MethodAdapter):
        raise ValueError(f"{adapter.__module__}.{adapter.__qualname__}: no docstring (it heads the method's YAML)")
    where = shown(Path(inspect.getsourcefile(adapter) or "?").resolve())
    lines = comment(doc)
    lines += comment(
        f"Generated from {where} ({adapter.settings_class.__name__}) by `python -m benchmark.method_yaml`: change the "
        f"settings there. [source] says where each default comes from (ours: the papers leave it open)."
    )
    lines += value_yaml("name", adapter.name)
    if adapter.base_model:
        lines += [f"{value_yaml('base_model', adapter.base_model)[0]}   # the model these defaults are for"]
    settings = adapter.settings_class()
    for f in dataclasses.fields(settings):
        cls = adapter.settings_class
        lines += comment(f"[{field_source(cls, f.name)}] {field_doc(cls, f.name)}")
        lines += value_yaml(f.name, getattr(settings, f.name))
    return "\n".join(lines) + "\n"


def shown(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def builtin_methods() -> dict[str, type[MethodAdapter]]:
    """The registered adapters of this checkout's ``methods`` package (a plugin keeps its YAML itself)."""
    return {name: cls for name in METHODS.names() if (cls := METHODS.get(name)).__module__.startswith("methods.")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.method_yaml", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="methods (default with --write/--check: every built-in one)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write conf/method/NAME.yaml")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed YAML is not the generated one")
    parser.add_argument("--plugins", nargs="+", default=[], help="modules or .py files registering methods")
    args = parser.parse_args(argv)
    if args.plugins:
        from benchmark.plugins import PluginError, load_plugins

        try:
            load_plugins(args.plugins, key="--plugins")
        except PluginError as err:
            parser.error(str(err))
    known = builtin_methods()
    names = args.names or (sorted(known) if args.write or args.check else [])
    if not names:
        parser.error("name a method, or pass --write or --check")
    stale = []
    for name in names:
        try:
            text = render(known.get(name) or METHODS.get(name))
        except (UnknownNameError, ValueError) as err:
            parser.error(str(err))
        path = METHOD_CONF / f"{name}.yaml"
        if args.write:
            path.write_text(text)
        elif args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(shown(path)))
        else:
            sys.stdout.write(text)
    if stale:
        print(f"not generated from the settings: {', '.join(stale)} (python -m benchmark.method_yaml --write)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
