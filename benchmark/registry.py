"""Name → factory registries for datasets, methods and metrics.

Modules register themselves with a decorator; ``discover`` imports every module of a package so that adding
a method (or loader, or metric) is one new file plus one YAML file, with no list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want a plain line
        return str(self.args[0])


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Register ``obj`` under ``name``: the one place a class's name is written. Its ``name`` attribute (which
        labels its rows, sample folders, cache entries and its generated YAML) is set from it when the class does not
        say one itself (a subclass would otherwise inherit its parent's and share its rows), and a class that says
        another is an error."""

        def deco(obj: T) -> T:
            old = self._items.get(name)
            if old is not None and old is not obj and _where(old) != _where(obj):
                raise ValueError(f"{self.kind} '{name}' registered twice: by {_where(old)} and by {_where(obj)}")
            # the same module and class again (a plugin file imported anew after it failed halfway) replaces it
            if isinstance(obj, type):
                own = obj.__dict__.get("name")
                if own is None:
                    obj.name = name  # type: ignore[attr-defined]
                elif own != name:
                    raise ValueError(
                        f"{obj.__module__}.{obj.__qualname__}: registered as {self.kind} '{name}' but its name is "
                        f"'{own}'; make them equal"
                    )
            self._items[name] = obj
            return obj

        return deco

    def discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)


DATASETS: Registry = Registry("dataset", "benchmark.datasets")
METHODS: Registry = Registry("method", "methods")
METRICS: Registry = Registry("metric", "benchmark.metrics")
