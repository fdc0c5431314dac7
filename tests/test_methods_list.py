"""The ``methods:`` list is resolved by Hydra's composition: a plugin's method YAML on ``hydra.searchpath`` works in
``methods=[...]`` as in ``method=NAME``; a name no config folder has is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from benchmark.datasets.synthetic import make_sample
from benchmark.runner import method_configs
from tests.conftest import compose, emb

# a method kept outside the checkout (README, "Outside this checkout"): it blurs the GT region
PLUGIN = """
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from benchmark.adapter import EditContext, MethodAdapter, MethodSettings, setting
from benchmark.registry import METHODS
from benchmark.types import EditOutput, EditSample


@dataclass(frozen=True)
class BlurSettings(MethodSettings):
    sigma: float = setting(4.0, "ours", "Gaussian blur radius in pixels")


@METHODS.register("blur_list_plugin")
class BlurRegion(MethodAdapter):
    settings_class = BlurSettings
    needs_model = False
    needs_gt_mask = True
    produces_mask = True

    def edit(self, sample: EditSample, ctx: EditContext) -> EditOutput:
        blurred = np.asarray(sample.image.filter(ImageFilter.GaussianBlur(self.settings.sigma)))
        image = np.where(sample.mask[..., None], blurred, np.asarray(sample.image))
        return EditOutput(image=Image.fromarray(image), soft_mask=sample.mask.astype(np.float32), mask=sample.mask)
"""


def test_a_plugin_method_on_the_searchpath_runs_in_the_methods_list(tmp_path: Path) -> None:
    """The plugin's YAML (sigma 2.0; its Python default is 4.0) lives only in a folder on hydra.searchpath: the run
    holds both methods, and the plugin's edits are blurred with the YAML's sigma (worked out here with PIL)."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "conf" / "method").mkdir(parents=True)
    (elsewhere / "blur_list_plugin.py").write_text(PLUGIN)
    (elsewhere / "conf" / "method" / "blur_list_plugin.yaml").write_text("name: blur_list_plugin\nsigma: 2.0\n")
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    run_dir = tmp_path / "run"
    emb(
        "run", "dataset=synthetic", "metrics=default", "dataset.limit=2", "model=tiny",
        "plugins=[elsewhere/blur_list_plugin.py]", f"hydra.searchpath=[file://{elsewhere / 'conf'}]",
        "methods=[identity,blur_list_plugin]", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env,
    )  # fmt: skip
    summary = pd.read_csv(run_dir / "summary.csv").query("edit_type == 'all' and metric == 'iou'")
    assert summary.set_index("method")["mean"].to_dict() == {"blur_list_plugin": 1.0, "identity": 0.0}
    for i in range(2):
        sample = make_sample(0, i, 64)
        blurred = np.asarray(sample.image.filter(ImageFilter.GaussianBlur(2.0)))
        expected = np.where(sample.mask[..., None], blurred, np.asarray(sample.image))
        edited = np.asarray(Image.open(run_dir / "samples" / "blur_list_plugin" / sample.id / "edited.png"))
        assert np.array_equal(edited, expected), sample.id
    generation = json.loads((run_dir / "results.json").read_text())["generation"]
    assert [(g["method"], g["computed"]) for g in generation] == [("identity", 2), ("blur_list_plugin", 2)]


def test_a_method_no_config_folder_has_is_one_line(tmp_path: Path) -> None:
    cfg = compose(["methods=[identity,no_such_method]"], tmp_path)
    with pytest.raises(ValueError) as err:
        method_configs(cfg)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("methods: unknown method 'no_such_method' (no method/no_such_method.yaml in conf/); known: ")
    assert "gt_inpaint, identity" in line
