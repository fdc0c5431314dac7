"""Paper-table experiments compose, and reports put a run's numbers beside the published ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.reports import PUBLISHED_DIR, load_published, write_report
from benchmark.runner import method_configs, run
from tests.conftest import compose, emb


@pytest.mark.parametrize("name", ["instdiffedit_editing_mask", "pie_bench_p2p"])
def test_experiment_configs_compose_with_their_published_table(name: str, tmp_path: Path) -> None:
    cfg = compose([f"experiment={name}", "dataset.root=/data/x"], tmp_path)
    published = load_published(cfg.published)
    assert published["dataset"] == cfg.dataset.name
    names = [m.name for m in method_configs(cfg)]
    aliases = set(published.get("aliases", {}))
    assert set(published["results"]) - aliases <= set(names) | {"diffedit_repo"}
    assert set(published["results"]) & set(names)


def test_every_published_table_is_well_formed() -> None:
    for path in PUBLISHED_DIR.glob("*.yaml"):
        data = load_published(str(path))
        for method, values in data["results"].items():
            assert set(values) <= set(data["metrics"]), f"{path}: {method} names an undeclared metric"


def test_report_scales_our_means_to_the_paper_units(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    run(
        compose(["method=gt_inpaint", "dataset.limit=3", "method.num_inference_steps=2"], tmp_path, model_cache),
        run_dir,
    )
    table = tmp_path / "paper.yaml"
    table.write_text(
        yaml.safe_dump(
            {
                "title": "a test paper",
                "source": "made up for the test",
                "dataset": "synthetic",
                "metrics": {"iou": {"scale": 100, "unit": "%"}, "nfe": {"scale": 1}},
                "results": {"oracle": {"iou": 90.0, "nfe": 10}},
            }
        )
    )
    text = write_report(run_dir, str(table), rename={"oracle": "gt_inpaint"})
    report = pd.read_csv(run_dir / "report.csv").set_index("metric")
    assert report.loc["iou", "ours"] == 100.0 and report.loc["iou", "difference"] == 10.0
    assert report.loc["nfe", "ours"] == 4 and report.loc["nfe", "n"] == 3
    assert report.loc["iou", "better"] == "↑" and report.loc["nfe", "better"] == "↓"  # the run's higher_is_better
    assert "a test paper" in text and (run_dir / "report.md").exists()
    out = emb("report", str(run_dir), "--published", str(table), "--rename", "oracle=gt_inpaint", cwd=tmp_path)
    assert "made up for the test" in out.stdout
    plain = emb("report", str(run_dir), cwd=tmp_path)  # no published table: the page and plots only
    assert "names no `published` table" in plain.stdout and (run_dir / "report.html").exists()


@pytest.mark.parametrize("inversion", ["null_text", "ddim"])
def test_pie_bench_p2p_rows_use_pnpinversions_settings(inversion: str, tmp_path: Path) -> None:
    """Both P2P rows of PIE-Bench's table: self-attention replaced up to 32x32 queries and LocalBlend from 20% of
    the steps, as PnPInversion ran them (the method's own defaults follow the P2P notebook: 16x16, and 0 for ddim)."""
    from methods.p2p import PromptToPrompt

    cfg = compose(["experiment=pie_bench_p2p", "dataset.root=/data/x", f"method.inversion={inversion}"], tmp_path)
    settings = {k: v for k, v in cfg.method.items() if k not in ("name", "base_model")}
    p2p = PromptToPrompt(None, **settings)
    assert (p2p.self_replace_resolution, p2p.start_blend) == (32, 0.2)
    assert (p2p.cross_replace_steps, p2p.self_steps, p2p.edit_kind) == (0.4, (0.0, 0.6), "refine")
    assert cfg.seed == 1234
