"""End-to-end checks of the harness on the real configs, a tiny real diffusion model and the synthetic dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli.run import ConsoleEvents
from benchmark.datasets.synthetic import SyntheticDataset, write_dataset
from benchmark.runner import FailFast, run
from benchmark.store import load_records
from tests.conftest import ROOT, compose, emb


def _summary_value(run_dir: Path, method: str, metric: str) -> float:
    s = pd.read_csv(run_dir / "summary.csv")
    row = s[(s["method"] == method) & (s["metric"] == metric) & (s["edit_type"] == "all")]
    assert len(row) == 1, f"{method}/{metric} not in summary"
    return float(row["mean"].iloc[0])


def test_default_methods_run_writes_tables_and_provenance(tmp_path: Path, model_cache: Path) -> None:
    cfg = compose(["dataset.limit=4"], tmp_path, model_cache)
    run_dir = tmp_path / "run"
    run(cfg, run_dir)
    for name in ("samples.parquet", "summary.csv", "results.json", "summary.md", "records.jsonl"):
        assert (run_dir / name).exists(), name
    assert _summary_value(run_dir, "gt_inpaint", "iou") == 1.0
    assert _summary_value(run_dir, "identity", "iou") == 0.0
    long = pd.read_parquet(run_dir / "samples.parquet")
    assert set(long.columns) >= {"method", "sample_id", "edit_type", "metric", "value"}
    assert long[long["metric"] == "iou"].groupby("method").size().to_dict() == {"gt_inpaint": 4, "identity": 4}
    results = json.loads((run_dir / "results.json").read_text())
    assert results["provenance"]["versions"]["torch"]
    assert "commit" in results["provenance"]["git"]
    assert (
        results["dataset"]["checksum"]
        == SyntheticDataset(
            **{k: v for k, v in cfg.dataset.items() if k in ("num_samples", "size", "seed", "edit_types")}
        ).checksum()
    )
    assert results["config"]["model"]["name"] == "tiny"
    # NFE is counted on the denoiser: classifier-free guidance evaluates 2 rows per call, 50 calls
    s = pd.read_csv(run_dir / "summary.csv").query("edit_type == 'all'").set_index(["method", "metric"])
    assert s.loc[("gt_inpaint", "nfe"), "mean"] == 2 * 50
    assert s.loc[("gt_inpaint", "denoiser_calls"), "mean"] == 50
    # per-edit-type rows exist and every artifact is on disk
    assert {"replace_shape", "change_colour", "change_background"} <= set(
        pd.read_csv(run_dir / "summary.csv")["edit_type"]
    )
    for rec in load_records(run_dir):
        assert (run_dir / rec["artifacts"] / "mask.png").exists()


def test_same_config_resumes_other_config_recomputes(tmp_path: Path, model_cache: Path, capsys) -> None:
    base = ["method=gt_inpaint", "dataset.limit=3", "method.num_inference_steps=2"]
    run(compose(base, tmp_path, model_cache), tmp_path / "a", events=ConsoleEvents())
    assert "3 computed, reused 0" in capsys.readouterr().out
    run(compose(base, tmp_path, model_cache), tmp_path / "b", events=ConsoleEvents())
    assert "0 computed, reused 3" in capsys.readouterr().out
    run(
        compose([*base[:-1], "method.num_inference_steps=3"], tmp_path, model_cache),
        tmp_path / "c",
        events=ConsoleEvents(),
    )
    assert "3 computed, reused 0" in capsys.readouterr().out
    run(compose([*base, "seed=1"], tmp_path, model_cache), tmp_path / "d", events=ConsoleEvents())
    assert "3 computed, reused 0" in capsys.readouterr().out
    # the reused run's numbers equal the original's
    a = pd.read_parquet(tmp_path / "a" / "samples.parquet").query("metric == 'iou'")["value"].tolist()
    b = pd.read_parquet(tmp_path / "b" / "samples.parquet").query("metric == 'iou'")["value"].tolist()
    assert a == b


def test_new_weights_in_the_same_folder_are_not_taken_from_the_cache(tmp_path: Path, model_cache: Path, capsys) -> None:
    """Retrained or re-shipped weights keep their folder (data/toyworld/...): the sample cache must key on the
    weights, not on the path."""
    import shutil

    from safetensors.torch import load_file, save_file

    from benchmark.models import ModelBundle

    base = ["method=gt_inpaint", "dataset.limit=2", "method.num_inference_steps=2"]
    cfg = compose(base, tmp_path, model_cache)
    folder = tmp_path / "inpaint_weights"
    shutil.copytree(ModelBundle(cfg.model, cache_dir=model_cache).ident("inpaint"), folder)
    own = [*base, "model.builder=null", f"model.inpaint={folder}"]
    run(compose(own, tmp_path, model_cache), tmp_path / "a", events=ConsoleEvents())
    assert "2 computed, reused 0" in capsys.readouterr().out
    run(compose(own, tmp_path, model_cache), tmp_path / "b", events=ConsoleEvents())
    assert "0 computed, reused 2" in capsys.readouterr().out
    (weights,) = (folder / "unet").glob("*.safetensors")
    state = load_file(str(weights))
    save_file({k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()}, str(weights))
    run(compose(own, tmp_path, model_cache), tmp_path / "c", events=ConsoleEvents())
    assert "2 computed, reused 0" in capsys.readouterr().out


def _bad_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write_dataset(SyntheticDataset(num_samples=4, seed=5), root)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    (root / rec["image"]).write_bytes(b"not a png")  # corrupt image in the 2nd sample
    # the 3rd sample's GT mask and the 4th's correct-result image at another size than their images (64x64)
    third, fourth = json.loads(lines[2]), json.loads(lines[3])
    Image.new("L", (32, 32), 255).save(root / third["mask"])
    Image.new("RGB", (48, 64)).save(root / fourth["target_image"])
    return root


def test_failing_sample_is_recorded_and_run_goes_on(tmp_path: Path, model_cache: Path) -> None:
    root = _bad_dataset(tmp_path)
    cfg = compose(["dataset=folder", f"dataset.path={root}", "method=identity"], tmp_path, model_cache)
    run(cfg, tmp_path / "run")
    recs = [r for r in load_records(tmp_path / "run")]
    assert [r["status"] for r in recs] == ["ok", "failed", "failed", "failed"]
    errors = [r["error"] for r in recs[1:]]
    assert "images/" in errors[0] and "field 'image': cannot decode" in errors[0]
    # a part of another size fails the sample with one line naming the file and field, instead of being scored
    assert (
        errors[1]
        == f"{root / 'masks' / recs[2]['sample_id']}.png: field 'mask': size 32x32 differs from image size 64x64"
    )
    assert errors[2].endswith("field 'target_image': size 48x64 differs from image size 64x64")
    assert all("\n" not in e for e in errors)
    s = pd.read_csv(tmp_path / "run" / "summary.csv").query("edit_type == 'all' and metric == 'iou'")
    assert int(s["failures"].iloc[0]) == 3 and int(s["n"].iloc[0]) == 1


def test_fail_fast_stops_but_keeps_finished_samples(tmp_path: Path, model_cache: Path) -> None:
    root = _bad_dataset(tmp_path)
    cfg = compose(
        ["dataset=folder", f"dataset.path={root}", "method=identity", "run.fail_fast=true"], tmp_path, model_cache
    )
    with pytest.raises(FailFast, match="field 'image'"):
        run(cfg, tmp_path / "run")
    statuses = [r["status"] for r in load_records(tmp_path / "run")]
    assert statuses == ["ok", "failed"]


def test_kill_minus_nine_then_rerun_resumes(tmp_path: Path) -> None:
    args = [
        "run",
        "method=gt_inpaint",
        "model=tiny",
        "dataset=synthetic",
        "metrics=default",
        "dataset.limit=12",
        "method.num_inference_steps=50",
    ]
    env = {**os.environ, "EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    records = None
    while time.time() < deadline:
        found = list((tmp_path / "outputs" / "runs").glob("*/records.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            records = found[0]
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert records is not None, "the first run never wrote 3 samples"
    done_before = len(load_records(records.parent))
    assert 3 <= done_before < 12, "the kill came too late to test resuming"
    out = emb(*args, cwd=tmp_path, env=env)
    reused = int(out.stdout.split("reused ")[1].split()[0])
    assert reused >= done_before
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    final = load_records(runs[-1])
    ids = [r["sample_id"] for r in final]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert all(r["status"] == "ok" for r in final)
    assert len((runs[-1] / "records.jsonl").read_text().splitlines()) == 12  # none twice


def test_ctrl_c_is_one_line_and_keeps_finished_samples(tmp_path: Path) -> None:
    args = ["run", "method=gt_inpaint", "model=tiny", "dataset=synthetic", "metrics=default", "dataset.limit=12"]
    env = {**os.environ, "EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal sends it, even where this test runs with SIGINT ignored (a background CI job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records = tmp_path / "run" / "records.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and len(records.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    done = len(load_records(tmp_path / "run"))
    assert 2 <= done < 12, "the interrupt came too late to test"
    assert err.strip().splitlines()[-1] == (
        f"interrupted: {done} finished sample(s) kept in {records}; rerun the same command to resume "
        f"(cached samples are reused), or `emb score {tmp_path / 'run'}` to tabulate what finished"
    )
    assert "Traceback" not in err


def test_multirun_writes_merged_summary_pooling_shards(tmp_path: Path) -> None:
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    emb(
        "run",
        "-m",
        "method=identity,gt_inpaint",
        "model=tiny",
        "dataset=synthetic",
        "metrics=default",
        "dataset.limit=4",
        "dataset.shard=0/2,1/2",
        cwd=tmp_path,
        env=env,
    )
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    assert len([p for p in sweeps[0].iterdir() if (p / "records.jsonl").exists()]) == 4
    merged = pd.read_csv(sweeps[0] / "summary.csv")
    assert set(merged["method"]) == {"identity", "gt_inpaint"}
    iou = merged.query("metric == 'iou' and edit_type == 'all'").set_index("method")
    assert iou.loc["gt_inpaint", "mean"] == 1.0 and iou.loc["identity", "mean"] == 0.0
    # the two shards of each method are pooled into one row of 4 samples
    assert iou["n"].tolist() == [4, 4]
    # `emb table` re-prints and merges the same runs
    table = emb("table", str(sweeps[0]), cwd=tmp_path, env=env).stdout
    assert "gt_inpaint" in table and "identity" in table and "| iou ↑" in table  # with the better direction


def test_unknown_method_and_missing_weights_are_one_line(tmp_path: Path) -> None:
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1"}
    bad = emb("run", "method=no_such_method", cwd=tmp_path, env=env, check=False)
    assert bad.returncode != 0 and "no_such_method" in bad.stderr
    missing = emb("run", "method=gt_inpaint", "model=sd15", "dataset.limit=2", cwd=tmp_path, env=env, check=False)
    assert missing.returncode == 2
    lines = [ln for ln in missing.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "model.inpaint='runwayml/stable-diffusion-inpainting'" in lines[0]
    assert "--local-dir" in lines[0]
    # a paper preset without its data: the dataset path is the first line, before the metrics' missing weights
    preset = emb("run", "experiment=instdiffedit_editing_mask", cwd=tmp_path, env=env, check=False)
    lines = [ln for ln in preset.stderr.splitlines() if ln.startswith("error:")]
    assert preset.returncode == 2 and lines == [
        "error: dataset.root: required, e.g. dataset.root=/path/to/data (see data/README.md)"
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", "seed='abc': expected a whole number"),
        ("run.num_threads=two", "run.num_threads='two': expected a whole number"),
        ("model.device=gpu", "model.device='gpu': not a torch device \\(use auto, cpu, cuda or cuda:N\\)$"),
        ("metrics.device=cuda:7", "metrics.device='cuda:7': torch sees .* CUDA device\\(s\\) here"),
    ],
)
def test_bad_run_settings_are_one_line_before_any_sample(
    override: str, message: str, tmp_path: Path, model_cache: Path
) -> None:
    cfg = compose(["method=gt_inpaint", "dataset.limit=2", override], tmp_path, model_cache)
    with pytest.raises(ValueError, match=f"^{message}"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "records.jsonl").exists()  # nothing was generated


def test_shards_cover_the_same_samples(tmp_path: Path, model_cache: Path) -> None:
    ids = []
    for shard in ("0/2", "1/2"):
        cfg = compose(["method=identity", "dataset.limit=6", f"dataset.shard={shard}"], tmp_path, model_cache)
        run(cfg, tmp_path / shard.replace("/", "of"))
        ids += [r["sample_id"] for r in load_records(tmp_path / shard.replace("/", "of"))]
    assert sorted(ids) == [f"syn0-{i:05d}" for i in range(6)]


def test_emb_data_synthetic_writes_own_format(tmp_path: Path) -> None:
    emb("data", "synthetic", str(tmp_path / "syn"), "--num-samples", "3", cwd=ROOT)
    lines = (tmp_path / "syn" / "manifest.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    assert len(lines) == 3 and set(rec) >= {
        "id",
        "image",
        "mask",
        "source_prompt",
        "target_prompt",
        "edit_words",
        "instruction",
        "edit_type",
    }
    mask = np.asarray(Image.open(tmp_path / "syn" / rec["mask"]))
    assert mask.shape == Image.open(tmp_path / "syn" / rec["image"]).size[::-1] and set(np.unique(mask)) <= {0, 255}
    ok = emb("data", "check", str(tmp_path / "syn"), cwd=ROOT)
    assert "3 samples ok, 0 broken" in ok.stdout


def test_methods_list_entries_can_change_a_methods_settings(tmp_path: Path) -> None:
    from omegaconf import OmegaConf, open_dict

    from benchmark.runner import method_configs
    from tests.conftest import CONF

    # the command-line form, through Hydra's grammar: the setting applies in this list only
    cfg = compose(["methods=[identity,{gt_inpaint:{num_inference_steps:2}}]"], tmp_path)
    steps = {m.name: m.get("num_inference_steps") for m in method_configs(cfg)}
    assert steps == {"identity": None, "gt_inpaint": 2}
    assert compose(["method=gt_inpaint"], tmp_path).method.num_inference_steps == 50
    # the default run's list (conf/config.yaml): P2P with 3 null-text steps, every other method as its file says
    with open_dict(cfg):
        cfg.methods = OmegaConf.load(CONF / "config.yaml").methods
    by_name = {m.name: m for m in method_configs(cfg)}
    assert by_name["p2p"].null_text_inner_steps == 3
    assert by_name["p2p"].num_inference_steps == OmegaConf.load(CONF / "method" / "p2p.yaml").num_inference_steps
    assert by_name["diffedit"] == OmegaConf.load(CONF / "method" / "diffedit.yaml")
    # a misspelt key is one error naming the method and the key, before any model loads
    with open_dict(cfg):
        cfg.methods = OmegaConf.create([{"p2p": {"null_text_iner_steps": 3}}])
    with pytest.raises(ValueError, match="p2p: unknown key.*null_text_iner_steps"):
        method_configs(cfg)


def test_cli_paths_that_are_not_there_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmark import cli

    nowhere = tmp_path / "nowhere"
    for argv in (["score", str(nowhere)], ["report", str(nowhere)], ["data", "check", str(nowhere)]):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        assert code == 2, argv
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {nowhere}: "), (argv, lines)


def test_method_settings_without_a_method_are_one_line(tmp_path: Path, model_cache: Path) -> None:
    """`+method.KEY=VALUE` beside a `methods:` list (no `method=NAME`): which method it is for is unsaid."""
    cfg = compose(["+method.mask_threshold=0.3", "methods=[identity]", "dataset.limit=1"], tmp_path, model_cache)
    with pytest.raises(ValueError, match=r"^method.mask_threshold: set with no method=NAME to apply it to; add "):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "records.jsonl").exists()
