"""Presets and scoring in the harness: the pie_bench preset against PIE-Bench's per-image formulas, a full run with
every metric family, re-scoring with `emb score` (no method called, FID statistics reused), missing weights,
speedup rows and table scales."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from benchmark.metrics import build_metrics, prepare_metrics
from benchmark.metrics.base import ScoreContext
from benchmark.metrics.random_weights import TINY_CLIP
from tests.conftest import ROOT, compose, emb
from tests.metric_fixtures import TINY_VIT, Weights, one_thread, photo_items, weights_for_session

sys.path.insert(0, str(ROOT / "bench"))
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # see metric_fixtures.one_thread


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    return weights_for_session(tmp_path_factory)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def tiny_networks(cfg_metrics, weights) -> None:
    """Point a preset's networks at the session's random-weight files (tiny CLIP and ViT configs)."""
    with open_dict(cfg_metrics):
        for spec in cfg_metrics.metrics:
            if spec.name == "lpips":
                spec.backbone_weights = str(weights.lpips_backbone(spec.get("net", "alex")))
            elif spec.name == "clip_score":
                spec.model, spec.pretrained, spec.model_config = TINY_CLIP, str(weights.clip), str(weights.clip_config)
            elif spec.name == "structure_distance":
                spec.weights, spec.model_kwargs, spec.layer = str(weights.vit_tiny), TINY_VIT, 1
            elif spec.name == "fid":
                spec.weights = str(weights.inception)


def test_pie_bench_preset_reproduces_pie_bench_formulas(weights, monkeypatch):
    import open_clip
    import timm
    from pie_bench_reference import PIE_BENCH_METRICS, PieBenchCalculator, evaluate_pair

    from benchmark.metrics.networks import load_state_dict_file

    cfg = compose(["metrics=pie_bench"]).metrics
    tiny_networks(cfg, weights)
    metrics, skipped = prepare_metrics(build_metrics(cfg), ScoreContext())
    assert not skipped
    items = photo_items(3, size=(128, 128))
    rows = [{} for _ in items]
    for m in metrics:
        for row, values in zip(rows, m.update(items), strict=True):
            row.update(values)

    monkeypatch.setenv("TORCH_HOME", str(weights.torch_home("squeeze")))
    open_clip.add_model_config(str(weights.clip_config))
    clip_model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP, pretrained=str(weights.clip))
    vit = timm.create_model("vit_base_patch8_224", num_classes=0, **TINY_VIT).eval()
    vit.load_state_dict(load_state_dict_file(weights.vit_tiny))
    calc = PieBenchCalculator(
        clip=(clip_model.eval(), preprocess, open_clip.get_tokenizer(TINY_CLIP)), vit=vit, vit_layer=1
    )
    names = PIE_BENCH_METRICS + ["psnr", "lpips_edit_part"]  # plus two of evaluate.py's optional metrics
    for item, row in zip(items, rows, strict=True):
        s = item.sample
        expected = evaluate_pair(calc, names, s.image, item.output.image, s.mask, s.source_prompt, s.target_prompt)
        for name, value in expected.items():
            if name in ("psnr_whole", "lpips_edit"):
                continue  # not in the preset (its table has background preservation only)
            assert name in row, name
            # SSIM in float32 carries ~1e-6 absolute cancellation error (see the SSIM parity test): 1e-5 absolute
            abs_tol = 1e-5 if name.startswith("ssim") else 1e-6
            assert math.isclose(row[name], value, rel_tol=1e-5, abs_tol=abs_tol), (name, row[name], value)
        assert 20 < row["clip_score_whole"] < 80  # the scale is 100·max(cos, 0)
    # the border rule matters: without it the background values differ
    plain = build_metrics({"metrics": [{"name": "mse", "region": "background", "mode": "multiply"}]})[0]
    assert plain.update(items[:1])[0]["mse_background"] != rows[0]["mse_background"]


def all_families_preset(weights, tmp: Path, **extra) -> Path:
    """A metrics preset with every family on the session's tiny networks, as a YAML file (``--metrics-file``)."""
    cfg = OmegaConf.create(
        {
            "batch_size": 2,  # 3 samples → several batches per method: networks must still load once
            "device": "cpu",
            "reference_method": "gt_inpaint",
            "table_scales": {"lpips_background": 1000},
            "metrics": [
                {"name": "mask_iou"},
                {"name": "psnr", "region": ["whole", "background", "edit"]},
                {"name": "ssim", "region": ["background"]},
                {"name": "mse", "region": ["edit"], "mode": "multiply"},
                {"name": "lpips", "region": ["whole", "background"], "net": "alex"},
                {"name": "psnr", "region": ["whole"], "reference": "target"},
                {"name": "clip_score", "region": ["whole", "edit"]},
                {"name": "structure_distance", "region": ["whole"]},
                {"name": "fid", "kid_subset_size": 2, "kid_subsets": 5},
            ],
            **extra,
        }
    )
    tiny_networks(cfg, weights)
    path = tmp / "all_families.yaml"
    OmegaConf.save(cfg, path)
    return path


def test_run_scores_every_family_and_emb_score_rescores_without_methods(
    tmp_path,
    model_cache,
    weights,
    monkeypatch,
):
    from benchmark.metrics.networks import clear_networks, loaded_networks
    from benchmark.runner import run

    preset = all_families_preset(weights, tmp_path)
    run_dir = tmp_path / "run"
    clear_networks()
    # the second run (both methods, into the same folder: its tables hold its own records) reuses identity's edits
    for methods in ("[identity]", "[identity,{gt_inpaint:{num_inference_steps:2}}]"):
        cfg = compose([f"methods={methods}", "dataset.limit=3"], tmp_path, model_cache)
        with open_dict(cfg):
            cfg.metrics = OmegaConf.load(preset)
        run(cfg, run_dir)
    # every network loaded once per process, although 2 methods × 2 batches were scored, twice
    kinds = [k[0] for k in loaded_networks()]
    assert sorted(kinds) == ["inception", "lpips", "open_clip", "vit"]

    long = pd.read_parquet(run_dir / "samples.parquet")
    metrics = set(long["metric"])
    for name in (
        "iou", "f1", "psnr_background", "psnr_edit", "psnr_whole", "ssim_background", "mse_edit", "lpips_whole",
        "lpips_background", "psnr_whole_vs_target", "clip_score_whole", "clip_score_edit", "clip_prompt_truncated",
        "structure_distance_whole", "time_s", "nfe",
    ):  # fmt: skip
        assert name in metrics, name
    ident = long[(long["method"] == "identity") & (long["metric"] == "lpips_background")]["value"]
    assert (ident == 0).all()  # the identity edit preserves the background exactly
    summary = pd.read_csv(run_dir / "summary.csv")
    per_method = summary[summary["edit_type"] == "all"].set_index(["method", "metric"])["mean"]
    assert per_method[("gt_inpaint", "fid")] > 0 and not math.isnan(per_method[("gt_inpaint", "kid_mean")])
    assert per_method[("identity", "fid")] == pytest.approx(0, abs=1e-2)  # the same images as the real set
    assert per_method[("gt_inpaint", "speedup_nfe")] == 1.0
    ratio = per_method[("gt_inpaint", "time_s")] / per_method[("identity", "time_s")]
    assert per_method[("identity", "speedup_time")] == pytest.approx(ratio)
    assert "lpips_background ×1000" in (run_dir / "summary.md").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["higher_is_better"]["lpips_background"] is False and results["skipped_metrics"] == []

    # re-score with another metric set through the real CLI: no method runs (records untouched), new rows and
    # summary, and the FID statistics of the dataset selection come from the cache the run wrote
    records_before = (run_dir / "records.jsonl").read_bytes()
    rescore = OmegaConf.create(
        {
            "batch_size": 4,
            "device": "cpu",
            "metrics": [{"name": "mse", "region": ["whole", "background"]}, {"name": "fid", "kid": False}],
        }
    )
    tiny_networks(rescore, weights)
    OmegaConf.save(rescore, tmp_path / "rescore.yaml")
    proc = emb("score", str(run_dir), "--metrics-file", str(tmp_path / "rescore.yaml"), cwd=ROOT, env=ONE_THREAD)
    assert "reusing cached FID statistics" in proc.stdout
    assert "reusing cached FID statistics" in (run_dir / "score.log").read_text()
    assert (run_dir / "records.jsonl").read_bytes() == records_before
    long2 = pd.read_parquet(run_dir / "samples.parquet")
    assert {"mse_whole", "mse_background"} <= set(long2["metric"]) and "lpips_whole" not in set(long2["metric"])
    summary2 = pd.read_csv(run_dir / "summary.csv")
    assert set(summary2[summary2["metric"] == "fid"]["method"]) == {"identity", "gt_inpaint"}
    assert json.loads((run_dir / "results.json").read_text())["rescored_with"]["metrics"][0]["name"] == "mse"

    # in-process: a method called during scoring would fail loudly
    from benchmark import cli
    from benchmark.adapter import MethodAdapter

    def forbidden(*args, **kwargs):
        raise AssertionError("scoring called a method")

    monkeypatch.setattr(MethodAdapter, "edit", forbidden)
    for cls in MethodAdapter.__subclasses__():
        monkeypatch.setattr(cls, "edit", forbidden)
    assert cli.main(["score", str(run_dir), "--metrics-file", str(tmp_path / "rescore.yaml")]) == 0


def test_missing_weights_one_line_before_any_generation(tmp_path, model_cache):
    from benchmark.models import MissingWeightsError
    from benchmark.runner import run

    cfg = compose(["method=identity", "dataset.limit=2"], tmp_path, model_cache)
    with open_dict(cfg):
        cfg.metrics = OmegaConf.create(
            {"metrics": [{"name": "lpips", "backbone_weights": str(tmp_path / "nowhere" / "alexnet.pth")}]}
        )
    with pytest.raises(MissingWeightsError) as err:
        run(cfg, tmp_path / "run")
    line = str(err.value)
    assert "\n" not in line and "nowhere/alexnet.pth" in line and "download.pytorch.org" in line
    assert not (tmp_path / "run" / "records.jsonl").exists()  # nothing was generated


def test_optional_metrics_skip_with_a_line_and_emb_score_error(tmp_path, model_cache):
    from benchmark.runner import run

    cfg = compose(["method=identity", "dataset.limit=2"], tmp_path, model_cache)
    run(cfg, tmp_path / "run")  # the default preset: network metrics optional, no weights on this machine
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    skipped = " ".join(results["skipped_metrics"])
    assert "metric fid skipped" in skipped and "weights-inception-2015-12-05" in skipped
    # a required metric with missing weights: one error line, exit code 2, the run's files untouched
    preset = tmp_path / "clip.yaml"
    OmegaConf.save(OmegaConf.create({"metrics": [{"name": "clip_score", "pretrained": "openai"}]}), preset)
    proc = emb("score", str(tmp_path / "run"), "--metrics-file", str(preset), cwd=ROOT, check=False, env=ONE_THREAD)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "ViT-L-14-quickgelu/openai" in err[0] and "huggingface.co" in err[0]


def test_speedup_is_ratio_of_summary_means_and_table_reference():
    from benchmark.metrics.speed import add_speedup

    summary = pd.DataFrame(
        [
            {"method": m, "edit_type": t, "metric": k, "mean": v, "std": 0.0, "ci95": 0.0, "n": 4, "failures": 0}
            for m, t, k, v in [
                ("ours", "all", "time_s", 2.0),
                ("ours", "all", "nfe", 25),
                ("ours", "a", "time_s", 1.0),
                ("ref", "all", "time_s", 10.0),
                ("ref", "all", "nfe", 100),
                ("ref", "a", "time_s", 4.0),
            ]
        ]  # fmt: skip
    )
    out = add_speedup(summary, "ref").set_index(["method", "edit_type", "metric"])["mean"]
    assert out[("ours", "all", "speedup_time")] == 5.0 and out[("ours", "all", "speedup_nfe")] == 4.0
    assert out[("ours", "a", "speedup_time")] == 4.0 and out[("ref", "all", "speedup_time")] == 1.0
    assert add_speedup(summary, "absent").equals(summary)
    # merged runs: the reference lives in another run
    merged = summary.assign(run=["r1"] * 3 + ["r2"] * 3)
    out = add_speedup(merged, "ref", by=("run", "method")).set_index(["run", "method", "edit_type", "metric"])
    assert out.loc[("r1", "ours", "all", "speedup_time"), "mean"] == 5.0


def test_clip_refuses_openai_weights_without_quickgelu():
    from benchmark.metrics.clip_score import resolve_pretrained

    with pytest.raises(ValueError, match="ViT-L-14-quickgelu"):
        resolve_pretrained("ViT-L-14", "openai")
    assert torch.get_num_threads() == 1  # the module's one-thread fixture is active


def test_emb_score_overrides_change_the_runs_own_metric_set(tmp_path, model_cache):
    """A run made by `emb run` (with Hydra's .hydra/ folder) re-scored from another shell: no EMB_CACHE_DIR needed
    (the run's resolved config is in results.json), `metrics.*` overrides change the run's own preset (here a
    post-hoc mask threshold on the stored soft masks), any other override is one error line."""
    import os

    run_dir = tmp_path / "run"
    env = {**ONE_THREAD, "EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(model_cache)}
    world = ["model=tiny", "dataset=synthetic", "metrics=default", "dataset.limit=2", "method=gt_inpaint"]
    emb("run", *world, "method.num_inference_steps=2", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    assert (run_dir / ".hydra" / "config.yaml").exists()
    generated = json.loads((run_dir / "results.json").read_text())
    run_metrics = generated["metrics_config"]["metrics"]
    bare = {k: v for k, v in os.environ.items() if k not in ("EMB_CACHE_DIR", "EMB_MODEL_CACHE")}
    bare.update(ONE_THREAD)

    def score(*overrides: str, check: bool = True):
        import subprocess

        return subprocess.run(
            [sys.executable, "-m", "benchmark.cli", "score", str(run_dir), *overrides],
            cwd=tmp_path,
            env=bare,
            capture_output=True,
            text=True,
            check=check,
        )

    score("metrics.metrics.0.source=soft", "metrics.metrics.0.threshold=0.3")
    rescored = json.loads((run_dir / "results.json").read_text())["rescored_with"]["metrics"]
    assert [m["name"] for m in rescored] == [m["name"] for m in run_metrics]  # the run's preset, not the default
    assert rescored[0] | {"source": "binary", "threshold": 0.5} == run_metrics[0]
    assert (rescored[0]["source"], rescored[0]["threshold"]) == ("soft", 0.3)
    # in place: the run's earlier tables are kept, and its generation record is carried over
    rewritten = json.loads((run_dir / "results.json").read_text())
    assert json.loads((run_dir / "scores.previous-1" / "results.json").read_text()) == generated
    assert {k: rewritten[k] for k in ("generation", "model")} == {k: generated[k] for k in ("generation", "model")}
    assert rewritten["generation_provenance"] == generated["provenance"]
    # back to the run's own metric set: the threshold-0.3 tables are kept too; the same set again copies nothing
    score()
    score()
    assert sorted(p.name for p in run_dir.glob("scores.previous-*")) == ["scores.previous-1", "scores.previous-2"]
    # a threshold sweep beside the run: each re-score in its own folder, the run untouched, merged by `emb table`
    before = (run_dir / "results.json").read_bytes()
    for t in ("0.3", "0.7"):
        score("--out", str(run_dir / f"t{t}"), "metrics.metrics.0.source=soft", f"metrics.metrics.0.threshold={t}")
    assert (run_dir / "results.json").read_bytes() == before
    assert (run_dir / "t0.3" / "score.log").exists() and (run_dir / "t0.7" / "summary.csv").exists()
    table = emb("table", str(run_dir / "t0.3"), str(run_dir / "t0.7"), "--out", str(tmp_path / "m.csv"), cwd=tmp_path)
    header = [cell.strip() for cell in table.stdout.splitlines()[0].split("|")[1:3]]
    assert header == ["metrics.metrics.0.threshold", "method"]  # named key columns, not a tuple index
    merged = pd.read_csv(tmp_path / "m.csv").query("metric == 'iou' and edit_type == 'all'")
    assert sorted(merged["metrics.metrics.0.threshold"]) == [0.3, 0.7] and set(merged["method"]) == {"gt_inpaint"}
    bad = score("dataset.limit=1", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: emb score: only metrics overrides change a re-score; not dataset.limit=1"
    )
    garbled = score("metrics.batch_size=[", check=False)
    assert garbled.returncode == 2 and garbled.stderr.strip().splitlines()[-1].startswith("error: emb score: ")
    # a run stopped before its tables (no results.json): Hydra's saved config, ${hydra:...} from the run's own
    (run_dir / "results.json").unlink()
    score()
    assert (run_dir / "results.json").exists()


def test_every_preset_builds_and_a_misspelt_metric_key_is_one_line():
    """The metric classes pass **params up to their base; build_metrics must still refuse a key none of them takes."""
    from benchmark.registry import METRICS

    for preset in sorted((ROOT / "conf" / "metrics").glob("*.yaml")):
        assert build_metrics(OmegaConf.load(preset)), preset
    for name in METRICS.names():
        with pytest.raises(ValueError, match=f"^metric '{name}': unknown key\\(s\\) treshold; known: "):
            build_metrics({"metrics": [{"name": name, "treshold": 0.3}]})


def test_a_metric_listed_twice_with_missing_weights_is_one_line(tmp_path, monkeypatch, caplog):
    """The default preset lists LPIPS twice (background and whole): its missing weights are said once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no LPIPS backbone there
    cfg = compose(["metrics=default"]).metrics
    assert sum(1 for m in cfg.metrics if m.name == "lpips") == 2
    with caplog.at_level("WARNING", logger="emb"):
        ready, skipped = prepare_metrics(build_metrics(cfg), ScoreContext())
    assert len([line for line in skipped if line.startswith("metric lpips skipped")]) == 1
    assert len([r for r in caplog.records if r.getMessage().startswith("metric lpips skipped")]) == 1
    assert all(m.name != "lpips" for m in ready)
