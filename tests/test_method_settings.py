"""One source for each method setting: the adapter's settings dataclass. The committed YAML is generated from it,
``Adapter()`` in Python is the method ``emb run method=NAME`` runs, and a bad key or value is one line."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from benchmark import method_yaml
from benchmark.adapter import CONFIG_ONLY_KEYS, SOURCES, MethodSettings, build_settings
from benchmark.method_yaml import builtin_methods, field_doc, field_source, render
from methods.sd_settings import SDSettings
from tests.conftest import ROOT, compose

BUILTIN = sorted(builtin_methods())


def test_every_yaml_of_conf_method_is_a_builtin_method() -> None:
    assert sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")) == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_the_committed_yaml_is_the_generated_one(name: str) -> None:
    """Regenerate with ``python -m benchmark.method_yaml --write`` after changing a settings class."""
    assert (ROOT / "conf" / "method" / f"{name}.yaml").read_text() == render(builtin_methods()[name])


@pytest.mark.parametrize("name", BUILTIN)
def test_python_defaults_are_the_method_emb_run_composes(name: str) -> None:
    """The settings ``build_method`` makes from ``compose(["method=NAME"])`` equal the adapter built in Python with
    no arguments, key for key, and ``describe()`` stamps every one of them."""
    cls = builtin_methods()[name]
    composed = dict(compose([f"method={name}"]).method)
    values = {k: v for k, v in composed.items() if k not in CONFIG_ONLY_KEYS}
    from_config = build_settings(cls.settings_class, values, name)
    in_python = cls(None).settings
    assert from_config == in_python == cls.settings_class()
    assert set(values) == {f.name for f in dataclasses.fields(cls.settings_class)}
    assert cls(None).describe() == {"name": name, **dataclasses.asdict(in_python)}
    assert composed["name"] == name and composed.get("base_model") == cls.base_model


@pytest.mark.parametrize("name", BUILTIN)
def test_every_setting_says_where_its_default_comes_from_and_what_it_does(name: str) -> None:
    cls = builtin_methods()[name].settings_class
    for f in dataclasses.fields(cls):
        assert field_source(cls, f.name) in SOURCES
        assert len(field_doc(cls, f.name)) > 10


SD_PIPELINES = {"text2img", "img2img", "inpaint", "instruct_pix2pix", "diffedit"}


def test_the_stable_diffusion_settings_live_in_one_place() -> None:
    """Every adapter running an SD pipeline extends ``SDSettings``; no adapter module redeclares the shared keys
    except to change a default (the only such overrides: InstructPix2Pix's 100 steps; DiT4Edit's 30 steps and CFG
    4.5 on PixArt-alpha)."""
    overrides = {
        "instructpix2pix": {"num_inference_steps": 100},
        "dit4edit": {"num_inference_steps": 30, "guidance_scale": 4.5},
    }
    shared = {f.name for f in dataclasses.fields(SDSettings)}
    for name, adapter in builtin_methods().items():
        if not adapter.needs_model or not set(adapter.pipelines) & SD_PIPELINES:
            continue  # no Stable Diffusion pipeline (e.g. blended_diffusion's pixel model)
        assert issubclass(adapter.settings_class, SDSettings), name
        redeclared = {}
        for klass in adapter.settings_class.__mro__:
            if dataclasses.is_dataclass(klass) and klass.__module__ != "methods.sd_settings":
                own = shared & set(klass.__dict__.get("__annotations__", {}))
                redeclared |= {key: getattr(klass(), key) for key in own}
        assert redeclared == overrides.get(name, {}), name


def test_the_registered_name_is_written_once() -> None:
    """No built-in adapter states ``name = ...``: ``@METHODS.register("NAME")`` is its name (the YAML's is
    generated)."""
    for name, adapter in builtin_methods().items():
        assert adapter.name == name
        assert not re.search(r"^\s+name\s*(:[^=]*)?=", inspect.getsource(adapter), re.M), name


def test_a_misspelt_key_or_a_wrong_type_is_one_line_in_python_too() -> None:
    from methods.sdedit import SDEdit

    misspelt = r"^method 'sdedit': unknown setting 'strenght' \(did you mean 'strength'\?\)$"
    with pytest.raises(ValueError, match=misspelt):
        SDEdit(None, strenght=0.6)
    with pytest.raises(ValueError, match=r"^method 'sdedit': num_inference_steps='many': expected int$"):
        SDEdit(None, num_inference_steps="many")
    with pytest.raises(ValueError, match=r"^method 'identity': unknown setting 'sigma' \(it has no settings\)$"):
        builtin_methods()["identity"](None, sigma=1.0)
    assert SDEdit(None, num_inference_steps="8", strength=1).settings.num_inference_steps == 8  # converted by type


def test_values_are_assigned_not_merged() -> None:
    """``scheduler_config={}`` means no overrides, not the official keys plus nothing."""
    from methods.sdedit import SDEdit

    assert SDEdit(None).settings.scheduler_config == {"timestep_spacing": "linspace", "steps_offset": 0}
    assert SDEdit(None, scheduler_config={}).settings.scheduler_config == {}


def test_settings_and_overrides_combine_and_stay_frozen() -> None:
    from methods.sdedit import SDEdit, SDEditSettings

    base = SDEditSettings(strength=0.7)
    method = SDEdit(None, base, num_inference_steps=10)
    assert (method.settings.strength, method.settings.num_inference_steps) == (0.7, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.settings.strength = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError, match="settings must be SDEditSettings"):
        SDEdit(None, MethodSettings())


def test_the_generator_prints_writes_and_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert method_yaml.main(["sdedit"]) == 0
    assert capsys.readouterr().out == (ROOT / "conf" / "method" / "sdedit.yaml").read_text()
    monkeypatch.setattr(method_yaml, "METHOD_CONF", tmp_path)
    assert method_yaml.main(["--write"]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.yaml")) == BUILTIN
    assert method_yaml.main(["--check"]) == 0
    (tmp_path / "sdedit.yaml").write_text((tmp_path / "sdedit.yaml").read_text().replace("0.5", "0.6"))
    assert method_yaml.main(["--check"]) == 1
    assert "sdedit.yaml" in capsys.readouterr().out


def test_a_setting_without_source_or_doc_cannot_be_rendered() -> None:
    from benchmark.adapter import MethodAdapter, setting

    @dataclasses.dataclass(frozen=True)
    class Undocumented(MethodSettings):
        plain: float = 1.0

    class Plugin(MethodAdapter):
        """A plugin."""

        settings_class = Undocumented

    with pytest.raises(ValueError, match=r"Undocumented\.plain: no source"):
        render(Plugin)
    with pytest.raises(ValueError, match="setting source 'blog'"):
        setting(1.0, "blog", "a doc")  # type: ignore[arg-type]


def test_a_plugins_yaml_is_generated_from_its_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The README's one-file method outside the checkout: its YAML printed from its settings class."""
    from tests.test_extending import BLUR_REGION

    plugin = tmp_path / "blur_region_yaml_plugin.py"
    plugin.write_text(BLUR_REGION.replace("blur_region_plugin", "blur_region_yaml").replace("changed_fraction_", "cf_"))
    assert method_yaml.main(["blur_region_yaml", "--plugins", str(plugin)]) == 0
    text = capsys.readouterr().out
    assert "name: blur_region_yaml\n# [ours] Gaussian blur radius in pixels\nsigma: 4.0\n" in text
