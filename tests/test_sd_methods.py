"""The Stable-Diffusion editing methods end to end on the tiny model: the real `emb run -m` multirun, NFE equal to
each algorithm's count, composable mask sources, and one-line failures for missing inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.runner import run
from benchmark.store import load_records
from tests.conftest import ROOT, compose, emb

MASK_METHODS = ["instdiffedit", "diffedit", "blended_latent"]
IMAGE_ONLY = ["sdedit", "instructpix2pix"]
# p2p is another module's; it joins the multirun when its config exists
SWEEP = [
    m
    for m in ["instdiffedit", "diffedit", "p2p", "sdedit", "instructpix2pix", "blended_latent"]
    if (ROOT / "conf" / "method" / f"{m}.yaml").exists()
]
N = 4  # denoising steps given to every method (method.num_inference_steps=4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny UNets run fastest on one thread (with 2 threads on shared cores, thread sync dominates: ~10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def expected_nfe(method: str, cfg: dict) -> tuple[int, int]:
    """(denoiser calls, evaluations) per image: the formula of the method's adapter checks (tests/test_adapters.py)
    on the settings of a run's config."""
    from benchmark.adapter import CONFIG_ONLY_KEYS, build_settings
    from benchmark.registry import METHODS
    from tests.test_adapters import checks_of

    values = {k: v for k, v in cfg.items() if k not in CONFIG_ONLY_KEYS}
    return checks_of(method).expected_nfe(build_settings(METHODS.get(method).settings_class, values, method))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    emb(
        "run",
        "-m",
        f"method={','.join(SWEEP)}",
        "model=tiny",
        "dataset=synthetic",
        "metrics=default",
        "dataset.limit=2",
        f"++method.num_inference_steps={N}",
        f"hydra.sweep.dir={tmp / 'sweep'}",
        cwd=ROOT,
        env={"EMB_CACHE_DIR": str(tmp / "cache"), "EMB_MODEL_CACHE": str(model_cache), "OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    return tmp / "sweep"


def job_dirs(sweep: Path) -> dict[str, Path]:
    out = {}
    for cfg_path in sweep.glob("*/.hydra/config.yaml"):
        import yaml

        cfg = yaml.safe_load(cfg_path.read_text())
        out[cfg["method"]["name"]] = cfg_path.parent.parent
    return out


def test_multirun_succeeds_and_summary_has_iou_for_mask_methods(sweep: Path) -> None:
    merged = pd.read_csv(sweep / "summary.csv")
    rows = merged[merged["edit_type"] == "all"]
    assert set(rows["method"]) == set(SWEEP)
    assert (rows.groupby("method")["failures"].max() == 0).all()
    iou = rows[rows["metric"] == "iou"].set_index("method")["mean"]
    for m in MASK_METHODS:
        assert m in iou.index and 0.0 <= iou[m] <= 1.0
    for m in IMAGE_ONLY:
        assert m not in iou.index
    assert (rows[rows["metric"] == "nfe"]["mean"] > 0).all()


def test_nfe_equals_each_algorithm_count(sweep: Path) -> None:
    import yaml

    jobs = job_dirs(sweep)
    for method in [m for m in SWEEP if m != "p2p"]:
        cfg = yaml.safe_load((jobs[method] / ".hydra" / "config.yaml").read_text())["method"]
        calls, evals = expected_nfe(method, cfg)
        recs = [r for r in load_records(jobs[method]) if r["method"] == method]
        assert len(recs) == 2 and all(r["status"] == "ok" for r in recs), recs
        for r in recs:
            assert (r["denoiser_calls"], r["nfe"]) == (calls, evals), (method, r)
        for r in recs:  # every mask method stores its soft mask for post-hoc thresholds
            folder = jobs[method] / r["artifacts"]
            assert (folder / "soft_mask.npz").exists() == (method in MASK_METHODS)
            assert (folder / "edited.png").exists()


def test_instdiffedit_mask_only_mode(tmp_path: Path, model_cache: Path) -> None:
    cfg = compose(
        ["method=instdiffedit", "method.mask_only=true", f"method.num_inference_steps={N}", "dataset.limit=1"],
        tmp_path,
        model_cache,
    )
    run(cfg, tmp_path / "run")
    (rec,) = load_records(tmp_path / "run")
    assert rec["status"] == "ok" and not rec["has_image"] and rec["has_mask"]
    from omegaconf import OmegaConf

    assert (rec["denoiser_calls"], rec["nfe"]) == expected_nfe("instdiffedit", OmegaConf.to_container(cfg.method))
    folder = tmp_path / "run" / rec["artifacts"]
    assert not (folder / "edited.png").exists()
    soft = np.load(folder / "soft_mask.npz")["soft_mask"]
    binary = np.asarray(Image.open(folder / "mask.png")) > 127
    assert soft.shape == binary.shape == (8, 8)  # latent side of the 64 px tiny model
    assert np.array_equal(soft > cfg.method.mask_threshold, binary)
    assert rec["extras"]["attention_side"] == 8 and rec["extras"]["index_word"] in rec["extras"]["words"]


def test_diffedit_repo_baseline_nfe(tmp_path: Path, model_cache: Path) -> None:
    from omegaconf import OmegaConf

    cfg = compose(
        ["method=diffedit_repo", "method.num_draws=2", f"method.num_inference_steps={N}", "dataset.limit=1"],
        tmp_path,
        model_cache,
    )
    run(cfg, tmp_path / "run")
    (rec,) = load_records(tmp_path / "run")
    assert rec["status"] == "ok" and rec["has_image"] and rec["has_mask"]
    assert (rec["denoiser_calls"], rec["nfe"]) == expected_nfe("diffedit_repo", OmegaConf.to_container(cfg.method))
    soft = np.load(tmp_path / "run" / rec["artifacts"] / "soft_mask.npz")["soft_mask"]
    binary = np.asarray(Image.open(tmp_path / "run" / rec["artifacts"] / "mask.png")) > 127
    assert np.array_equal(soft > cfg.method.mask_threshold, binary)


def test_blended_latent_with_instdiffedit_masks(tmp_path: Path, model_cache: Path) -> None:
    """Mask sources compose: BLD driven by another run's InstDiffEdit masks (binary, then re-binarised soft)."""
    cfg = compose(
        ["method=instdiffedit", "method.mask_only=true", "method.num_inference_steps=2", "dataset.limit=2"],
        tmp_path,
        model_cache,
    )
    run(cfg, tmp_path / "masks")
    source = {r["sample_id"]: tmp_path / "masks" / r["artifacts"] for r in load_records(tmp_path / "masks")}
    common = [
        "method=blended_latent",
        "method.mask_source=method",
        f"method.mask_run_dir={tmp_path / 'masks'}",
        "method.mask_method=instdiffedit",
        f"method.num_inference_steps={N}",
        "dataset.limit=2",
    ]
    run(compose(common, tmp_path, model_cache), tmp_path / "bld")
    for rec in load_records(tmp_path / "bld"):
        assert rec["status"] == "ok", rec
        ours = np.asarray(Image.open(tmp_path / "bld" / rec["artifacts"] / "mask.png"))
        theirs = np.asarray(Image.open(source[rec["sample_id"]] / "mask.png"))
        assert np.array_equal(ours, theirs)
    run(compose([*common, "method.mask_threshold=0.9"], tmp_path, model_cache), tmp_path / "bld_soft")
    for rec in load_records(tmp_path / "bld_soft"):
        ours = np.asarray(Image.open(tmp_path / "bld_soft" / rec["artifacts"] / "mask.png")) > 127
        soft = np.load(source[rec["sample_id"]] / "soft_mask.npz")["soft_mask"]
        assert np.array_equal(ours, soft > 0.9)


def test_mask_files_missing_one_fails_that_sample_and_changes_are_not_served_from_cache(
    tmp_path: Path, model_cache: Path
) -> None:
    from benchmark.datasets.synthetic import make_sample

    masks = tmp_path / "masks"
    masks.mkdir()
    sample = make_sample(seed=0, index=0)
    Image.fromarray(sample.mask.astype(np.uint8) * 255).save(masks / f"{sample.id}.png")  # sample 1 has none
    overrides = [
        "method=gt_inpaint",
        "method.mask_source=file",
        f"method.mask_dir={masks}",
        "method.num_inference_steps=2",
        "dataset.limit=2",
    ]
    run(compose(overrides, tmp_path, model_cache), tmp_path / "a")
    recs = {r["sample_id"]: r for r in load_records(tmp_path / "a")}
    assert recs[sample.id]["status"] == "ok"
    (failed,) = [r for r in recs.values() if r["status"] == "failed"]
    assert failed["error"] == (
        f"{masks / (failed['sample_id'] + '.png')}: field 'mask (mask_source=file)': file not found"
    )
    # a changed mask file gives a new cache key: recomputed, not reused
    Image.fromarray(np.zeros_like(sample.mask, dtype=np.uint8)).save(masks / f"{sample.id}.png")
    run(compose(overrides, tmp_path, model_cache), tmp_path / "b")
    rec_b = {r["sample_id"]: r for r in load_records(tmp_path / "b")}[sample.id]
    assert rec_b["key"] != recs[sample.id]["key"]
    assert not (np.asarray(Image.open(tmp_path / "b" / rec_b["artifacts"] / "mask.png")) > 0).any()


def test_missing_instruction_fails_that_sample_with_one_line(tmp_path: Path, model_cache: Path) -> None:
    from benchmark.datasets.synthetic import SyntheticDataset, write_dataset

    data = tmp_path / "data"
    write_dataset(SyntheticDataset(num_samples=2), data)
    lines = (data / "manifest.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["instruction"] = None
    (data / "manifest.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    cfg = compose(
        ["method=instructpix2pix", "dataset=folder", f"dataset.path={data}", "method.num_inference_steps=2"],
        tmp_path,
        model_cache,
    )
    summary = run(cfg, tmp_path / "run").summary
    recs = {r["sample_id"]: r for r in load_records(tmp_path / "run")}
    bad = recs[first["id"]]
    assert bad["status"] == "failed"
    assert bad["error"] == (
        f"{data / 'manifest.jsonl'}:1: field 'instruction': method 'instructpix2pix' needs an edit instruction"
    )
    assert [r["status"] for sid, r in recs.items() if sid != first["id"]] == ["ok"]
    assert int(summary[summary["edit_type"] == "all"]["failures"].max()) == 1


def scheduler_methods() -> list[str]:
    from benchmark.registry import METHODS
    from methods.sd_settings import SchedulerSettings

    return [name for name in METHODS.names() if issubclass(METHODS.get(name).settings_class, SchedulerSettings)]


def test_the_methods_whose_official_code_picks_a_sampler_have_the_shared_scheduler_settings() -> None:
    assert scheduler_methods() == [
        "blended_latent",
        "diffedit",
        "diffedit_repo",
        "instdiffedit",
        "instdiffedit_toy",
        "instructpix2pix",
        "sdedit",
    ]


@pytest.mark.parametrize("method", scheduler_methods())
def test_unknown_scheduler_is_one_line_when_the_method_is_built(method: str, tmp_path: Path, model_cache: Path) -> None:
    from benchmark.adapter import build_method

    cfg = compose([f"method={method}", "method.scheduler=DDIMSchedular"], tmp_path, model_cache)
    with pytest.raises(ValueError, match=f"^method '{method}': scheduler='DDIMSchedular': not a diffusers scheduler"):
        build_method(cfg.method, None)


@pytest.mark.parametrize("method", sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")))
def test_unknown_method_param_is_one_line(method: str, tmp_path: Path, model_cache: Path) -> None:
    """Every adapter rejects a misspelt key of its config (none swallows unknown keywords)."""
    from benchmark.adapter import build_method

    cfg = compose([f"method={method}", "+method.treshold=0.3"], tmp_path, model_cache)
    with pytest.raises(ValueError, match=f"^method '{method}': unknown setting 'treshold' \\([^\n]*\\)$"):
        build_method(cfg.method, None)


@pytest.mark.parametrize(("model", "level"), [("tiny", "INFO"), ("toyworld", "INFO"), ("sd15", "WARNING")])
def test_other_base_model_is_a_warning_except_on_test_and_demo_models(
    model: str, level: str, tmp_path: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A method run on a model its defaults are not for is warned about, unless the model's config says it is a
    test/demonstration model (``runs_every_method``); nothing is loaded to decide."""
    from benchmark.adapter import build_method
    from benchmark.models import ModelBundle

    cfg = compose(["method=sdedit", f"model={model}"], tmp_path, model_cache)
    with caplog.at_level("INFO", logger="emb"):
        build_method(cfg.method, ModelBundle(cfg.model))
    (record,) = [r for r in caplog.records if "its defaults are for model=sd14" in r.getMessage()]
    assert record.levelname == level
    assert record.getMessage() == f"method sdedit: its defaults are for model=sd14, running on model={model}"
