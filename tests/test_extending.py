"""What a new method or metric relies on: its registered name, its cache invalidation, and one-line errors for
the mistakes an author makes (a name that drifts, a method listed twice, a bad value, a metric that raises or
collides with another)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmark.metrics import Metric
from benchmark.registry import METHODS, Registry
from benchmark.runner import build_method, check_one_producer, code_version, metric_update, run
from methods.base import MethodAdapter
from methods.gt_inpaint import GTInpaint
from tests.conftest import ROOT, compose


def test_the_registered_name_is_the_class_name() -> None:
    registry: Registry = Registry("method", "methods")

    @registry.register("plain")
    class Plain(MethodAdapter):  # states no name
        pass

    @registry.register("dilated_inpaint")
    class Dilated(GTInpaint):  # would inherit 'gt_inpaint' and share its rows
        pass

    assert (Plain.name, Dilated.name, GTInpaint.name) == ("plain", "dilated_inpaint", "gt_inpaint")
    with pytest.raises(ValueError, match=r"registered as method 'other' but its name is 'drifted'; make them equal$"):

        @registry.register("other")
        class Drifted(MethodAdapter):
            name = "drifted"


@pytest.mark.parametrize("yaml", sorted((ROOT / "conf" / "method").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_method_yaml_names_its_registered_method(yaml: Path) -> None:
    import yaml as pyyaml

    name = pyyaml.safe_load(yaml.read_text())["name"]
    assert name == yaml.stem and METHODS.get(name).name == name


def test_a_method_listed_twice_is_one_line(tmp_path: Path, model_cache: Path) -> None:
    cfg = compose(["methods=[identity,{identity:{}}]", "dataset.limit=1"], tmp_path, model_cache)
    with pytest.raises(ValueError, match=r"^methods: 'identity' listed twice; a run holds one configuration"):
        run(cfg, tmp_path / "run")


def test_a_bad_config_value_names_the_method(tmp_path: Path, model_cache: Path) -> None:
    cfg = compose(["method=sdedit", "method.guidance_scale=abc"], tmp_path, model_cache)
    with pytest.raises(ValueError, match=r"^method 'sdedit': could not convert string to float: 'abc' \(check its"):
        build_method(cfg.method, None)


def test_declared_code_modules_invalidate_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "blurlib_for_test.py"
    helper.write_text("SIGMA = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("blurlib_for_test")

    class UsesHelper(MethodAdapter):
        name = "uses_helper"
        code_modules = ("blurlib_for_test",)

    before = code_version(UsesHelper())
    helper.write_text("SIGMA = 2.0\n")
    importlib.reload(sys.modules["blurlib_for_test"])
    assert code_version(UsesHelper()) != before
    UsesHelper.code_modules = ("no_such_module_for_test",)
    with pytest.raises(ModuleNotFoundError, match="no_such_module_for_test"):
        code_version(UsesHelper())


class _Metric(Metric):
    name = "probe"

    def __init__(self, behaviour: str) -> None:
        super().__init__("whole")
        self.behaviour = behaviour

    def update(self, items: list[Any]) -> list[dict[str, float]]:
        if self.behaviour == "raise":
            raise ValueError("bad input")
        return [{"probe": 1.0}] * (len(items) - 1 if self.behaviour == "short" else len(items))


def test_a_failing_metric_is_one_line_naming_it_and_the_samples() -> None:
    batch = [SimpleNamespace(sample=SimpleNamespace(id=i)) for i in ("a", "b", "c")]
    assert metric_update(_Metric("ok"), batch, "identity") == [{"probe": 1.0}] * 3
    with pytest.raises(ValueError, match=r"^metric 'probe' on identity samples a..c: ValueError: bad input$"):
        metric_update(_Metric("raise"), batch, "identity")
    with pytest.raises(ValueError, match=r"^metric 'probe' on identity samples a..c: update returned 2 value sets"):
        metric_update(_Metric("short"), batch, "identity")


def test_two_metric_entries_with_one_value_name_are_one_line() -> None:
    metrics = [_Metric("ok"), _Metric("ok")]
    producers: dict[str, int] = {}
    check_one_producer("probe", 0, metrics, producers)
    check_one_producer("probe", 0, metrics, producers)  # the same entry, next sample: fine
    with pytest.raises(ValueError, match=r"^metrics: entries 0 \(probe\) and 1 \(probe\) both produce 'probe'; give"):
        check_one_producer("probe", 1, metrics, producers)


def test_a_whole_number_for_a_float_setting_is_the_same_cache_entry(tmp_path: Path, model_cache: Path) -> None:
    from benchmark.runner import method_config_hash

    hashes = {
        v: method_config_hash(compose(["method=sdedit", f"method.strength={v}"], tmp_path).method)
        for v in ("1", "1.0", "0.5")
    }
    assert hashes["1"] == hashes["1.0"] != hashes["0.5"]


def test_an_adapter_outside_methods_hashes_its_own_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = tmp_path / "plugin_method_for_test.py"
    source = "from methods.base import MethodAdapter\n\nclass Plugin(MethodAdapter):\n    name = 'plugin'\n    K = {}\n"
    plugin.write_text(source.format(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("plugin_method_for_test")
    before = code_version(module.Plugin())
    plugin.write_text(source.format(2))
    module = importlib.reload(module)
    assert code_version(module.Plugin()) != before


def test_a_subclass_names_itself_in_its_config_errors() -> None:
    registry: Registry = Registry("method", "methods")

    @registry.register("dilated_inpaint_errors")
    class Dilated(GTInpaint):
        pass

    with pytest.raises(ValueError, match=r"^dilated_inpaint_errors\."):
        Dilated(None, mask_source="file")  # file needs mask_dir
