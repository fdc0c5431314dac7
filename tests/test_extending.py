"""What a new method or metric relies on: its registered name, its cache invalidation, and one-line errors for
the mistakes an author makes (a name that drifts, a method listed twice, a bad value, a metric that raises or
collides with another)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmark.adapter import MethodAdapter, build_method, code_version
from benchmark.metrics import Metric
from benchmark.registry import METHODS, Registry
from benchmark.runner import check_one_producer, metric_update, run
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
    with pytest.raises(ValueError, match=r"^method 'sdedit': guidance_scale='abc': expected float$"):
        build_method(cfg.method, None)
    cfg = compose(["method=sdedit", "method.strength=1.5"], tmp_path, model_cache)
    with pytest.raises(ValueError, match=r"^method 'sdedit': strength=1.5: must be in \(0, 1\]$"):
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
    source = (
        "from benchmark.adapter import MethodAdapter\n\nclass Plugin(MethodAdapter):\n    name = 'plugin'\n    K = {}\n"
    )
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

    with pytest.raises(ValueError, match=r"^method 'dilated_inpaint_errors': mask_dir: required with mask_source=file"):
        Dilated(None, mask_source="file")  # file needs mask_dir


BLUR_REGION = """
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from benchmark.metrics.base import Metric
from benchmark.registry import METHODS, METRICS
from benchmark.types import EditOutput, EditSample
from benchmark.adapter import EditContext, MethodAdapter, MethodSettings, setting


@dataclass(frozen=True)
class BlurRegionSettings(MethodSettings):
    sigma: float = setting(4.0, "ours", "Gaussian blur radius in pixels")


@METHODS.register("blur_region_plugin")
class BlurRegion(MethodAdapter):
    '''Blur the GT region: a plumbing example.'''

    settings_class = BlurRegionSettings
    needs_model = False
    needs_gt_mask = True
    produces_mask = True

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        blurred = np.asarray(sample.image.filter(ImageFilter.GaussianBlur(self.settings.sigma)))
        image = np.where(sample.mask[..., None], blurred, np.asarray(sample.image))
        return EditOutput(image=Image.fromarray(image), soft_mask=sample.mask.astype(np.float32), mask=sample.mask)


@METRICS.register("changed_fraction_plugin")
class ChangedFraction(Metric):
    needs_image = True
    higher_is_better = {"changed_fraction": False}

    def update(self, items):
        return [
            {"changed_fraction": float(np.mean(np.any(np.asarray(it.output.image) != np.asarray(it.sample.image), -1)))}
            for it in items
        ]
"""


def test_a_method_and_a_metric_outside_the_checkout_run_and_rescore_as_plugins(tmp_path: Path) -> None:
    """The README's recipe: a method (and a metric) file and its YAML in another folder, `plugins=[FILE]` (relative)
    plus Hydra's searchpath; the run stores the file's absolute path, so `emb score` from another folder imports it
    again and can score with its metric; a plugin that cannot be imported is one line."""
    import pandas as pd

    from tests.conftest import emb

    plugin = tmp_path / "elsewhere" / "blur_region_plugin.py"
    (tmp_path / "elsewhere" / "conf" / "method").mkdir(parents=True)
    plugin.write_text(BLUR_REGION)
    (tmp_path / "elsewhere" / "conf" / "method" / "blur_region_plugin.yaml").write_text(
        "name: blur_region_plugin\nsigma: 2.0\n"
    )
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    common = ["dataset=synthetic", "metrics=default", "dataset.limit=2", "model=tiny"]
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'elsewhere' / 'conf'}]"
    run_dir = tmp_path / "run"
    emb(
        "run", *common, "plugins=[elsewhere/blur_region_plugin.py]", searchpath, "method=blur_region_plugin",
        f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env,
    )  # fmt: skip
    summary = pd.read_csv(run_dir / "summary.csv").query("edit_type == 'all'").set_index("metric")
    assert summary.loc["iou", "mean"] == 1.0 and (summary["method"] == "blur_region_plugin").all()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["plugins"] == [str(plugin)]

    metrics_file = tmp_path / "changed.yaml"
    metrics_file.write_text("batch_size: 4\nmetrics:\n  - name: changed_fraction_plugin\n")
    (tmp_path / "other").mkdir()
    emb("score", str(run_dir), "--out", str(tmp_path / "rescored"), "--metrics-file", str(metrics_file),
        cwd=tmp_path / "other", env=env)  # fmt: skip
    rescored = pd.read_csv(tmp_path / "rescored" / "summary.csv").query("edit_type == 'all'").set_index("metric")
    assert 0 < rescored.loc["changed_fraction", "mean"] < 1  # the blurred GT region of each sample
    bad = emb("score", str(run_dir), "--out", str(tmp_path / "r2"), "--plugins", "nope_plugin", cwd=tmp_path, env=env,
              check=False)  # fmt: skip
    assert bad.returncode == 2 and "error: --plugins[0]='nope_plugin': cannot import it" in bad.stderr
    assert not (tmp_path / "r2").exists()  # checked before anything is written

    missing = emb("run", *common, "plugins=no_such_plugin_module", "method=identity", cwd=tmp_path, env=env,
                  check=False)  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    (line,) = [ln for ln in missing.stderr.splitlines() if ln.startswith("error:")]
    assert line == "error: plugins[0]='no_such_plugin_module': cannot import it: No module named " + repr(
        "no_such_plugin_module"
    )


def test_a_plugin_that_failed_halfway_says_why_again(tmp_path: Path) -> None:
    """A multirun's next job imports a failing plugin anew: it must fail for the same reason, not because its first
    half registered a name already; a built-in name taken by a plugin names both modules."""
    from benchmark.plugins import PluginError, load_plugins
    from benchmark.registry import METRICS

    half = tmp_path / "half_metric_plugin.py"
    half.write_text(
        "from benchmark.metrics.base import Metric\nfrom benchmark.registry import METRICS\n\n"
        "@METRICS.register('half_metric_plugin')\nclass Half(Metric):\n    pass\n\n"
        "raise RuntimeError('second part broken')\n"
    )
    for _ in range(2):
        with pytest.raises(PluginError, match=r"cannot import it: second part broken$"):
            load_plugins([str(half)])
    clash = tmp_path / "clash_plugin.py"
    clash.write_text(
        "from benchmark.metrics.base import Metric\nfrom benchmark.registry import METRICS\n\n"
        "@METRICS.register('psnr')\nclass MyPsnr(Metric):\n    pass\n"
    )
    METRICS.discover()
    with pytest.raises(PluginError, match=r"'psnr' registered twice: by benchmark\.metrics\..*\.\w+ and by "
                       r"emb_plugins\.clash_plugin\.MyPsnr$"):  # fmt: skip
        load_plugins(str(clash))  # a single entry given as a string is a list of one
    with pytest.raises(PluginError, match=r"^plugins: a list of module names or \.py files, not \{"):
        load_plugins({"a": 1})


def test_emb_data_check_and_convert_take_a_plugin_dataset_loader(tmp_path: Path) -> None:
    """A dataset loader kept outside the checkout: `--plugins FILE` registers it and `--searchpath DIR` finds its
    dataset/NAME.yaml, for `emb data check` and `emb data convert` as for `emb run plugins=...`."""
    from tests.conftest import cli_main

    plugin = tmp_path / "loader plugin" / "shapes_plugin.py"
    (tmp_path / "loader plugin" / "conf" / "dataset").mkdir(parents=True)
    plugin.write_text(
        "from benchmark.datasets.synthetic import SyntheticDataset\nfrom benchmark.registry import DATASETS\n\n"
        "@DATASETS.register('shapes_plugin')\nclass Shapes(SyntheticDataset):\n    name = 'shapes_plugin'\n"
    )
    (tmp_path / "loader plugin" / "conf" / "dataset" / "shapes_plugin.yaml").write_text(
        "name: shapes_plugin\nnum_samples: 3\nsize: 64\nseed: 0\nlimit: null\nshard: null\n"
    )
    where = ["--plugins", str(plugin), "--searchpath", str(tmp_path / "loader plugin" / "conf")]
    assert cli_main("data", "check", "shapes_plugin", *where) == 0
    assert cli_main("data", "convert", "shapes_plugin", str(tmp_path / "out"), *where) == 0
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 3
    assert cli_main("data", "check", "shapes_plugin", "--plugins", str(tmp_path / "nope.py")) == 2
