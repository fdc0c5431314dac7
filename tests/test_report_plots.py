"""``emb report``'s plots and page: the IoU-vs-threshold curve from stored soft masks (values worked out by hand,
checked against torchmetrics, and equal to the run's own ``mask_iou`` at its threshold), the Pareto front, the files
a run's and a sweep's report write, and the plots logged to W&B.

How these were checked to fail: with ``> t`` replaced by ``>= t`` in ``soft_mask.iou_curve`` (the rule the report's
curve uses) the hand-worked curve failed at t=0.4 and 0.6 (soft values equal to the threshold; the torchmetrics
comparison alone did not notice: random values never equal a threshold); with the soft mask resized by bilinear
instead of the run's ``resample`` (nearest) the run-consistency test failed; with the Pareto rule's "strictly better
in one" dropped, two equal points removed each other and the front test failed; with a method's curves kept one per
job even when equal, the sweep-curve test saw two curves of m.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.functional.classification import binary_jaccard_index

from benchmark.datasets.synthetic import SyntheticDataset, write_dataset
from benchmark.plots import pareto_front
from benchmark.report_data import MaskProtocol, collect_masks, iou_at_thresholds
from benchmark.run_report import one_curve_per_setting, summary_curves, sweep_masks
from benchmark.rundir import RunFolder
from benchmark.runner import run
from tests.conftest import cli_main, compose, emb

# the run the report tests share: two mask-producing methods and the floor, a small metric set, three samples
METHODS = "methods=[identity,{gt_inpaint:{num_inference_steps:2}},{instdiffedit:{num_inference_steps:2}}]"
SOFT_IOU = "metrics.metrics=[{name:mask_iou,source:soft,threshold:0.5},{name:psnr,region:[whole,background]}]"
WITH_CURVE = (
    "metrics.metrics=[{name:mask_iou,source:soft,threshold:0.5},{name:psnr,region:[whole,background]},"
    "{name:soft_mask,num_thresholds:9}]"
)


def test_iou_curve_is_the_iou_of_the_soft_mask_above_each_threshold() -> None:
    """Worked by hand: GT = the bottom row; soft = 0.1 0.4 / 0.6 0.9. Above 0: all four pixels (IoU 2/4); above 0.4:
    the bottom row only (1; 0.4 itself is not above 0.4); above 0.6: one pixel of two (0.5); above 0.95: none (0)."""
    soft = np.array([[0.1, 0.4], [0.6, 0.9]], dtype=np.float32)
    gt = np.array([[False, False], [True, True]])
    values = iou_at_thresholds(soft, gt, np.array([0.0, 0.4, 0.6, 0.95]))
    np.testing.assert_allclose(values, [0.5, 1.0, 0.5, 0.0])
    # a soft mask at another size is resized to the GT's with the protocol's filter (nearest: each value doubles)
    big_gt = np.kron(gt, np.ones((2, 2), dtype=bool))
    np.testing.assert_allclose(iou_at_thresholds(soft, big_gt, np.array([0.0, 0.4, 0.6])), [0.5, 1.0, 0.5])
    # both masks empty: the protocol's empty_union
    empty = np.zeros((2, 2), dtype=bool)
    assert iou_at_thresholds(soft, empty, np.array([0.95]), MaskProtocol(empty_union=0.25))[0] == 0.25


def test_iou_curve_agrees_with_torchmetrics() -> None:
    rng = np.random.default_rng(0)
    thresholds = np.linspace(0.05, 0.95, 7)
    for _ in range(5):
        soft = rng.random((24, 24)).astype(np.float32)
        gt = rng.random((24, 24)) > 0.6
        ours = iou_at_thresholds(soft, gt, thresholds)
        # torchmetrics binarises with preds > threshold too
        theirs = [
            float(binary_jaccard_index(torch.from_numpy(soft), torch.from_numpy(gt).int(), threshold=float(t)))
            for t in thresholds
        ]
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_pareto_front_keeps_what_nothing_beats() -> None:
    cost = np.array([0.0, 4.0, 20.0, 52.0, 4.0, 30.0])
    quality = np.array([0.0, 1.0, 0.3, 0.0, 1.0, 1.0])
    # 1 and 4 are equal: neither beats the other; 5 is as good but costlier; 2 and 3 are beaten by 1
    assert pareto_front(cost, quality, higher_is_better=True).tolist() == [0, 1, 4]
    # lower is better: the cheapest of the zeros, then nothing cheaper is lower
    assert pareto_front(cost, quality, higher_is_better=False).tolist() == [0]


def test_a_sweeps_curves_are_one_per_method_when_its_jobs_agree() -> None:
    """A merged summary's soft_iou@T rows: method m has the same curve in both jobs (one curve, named m); method k
    differs (one curve per job, named by the swept value)."""
    rows = []
    for t, job_shift in (("0.3", 0.0), ("0.6", 0.1)):
        for method, shift in (("m", 0.0), ("k", job_shift)):
            for point, mean in ((0.25, 0.8), (0.5, 0.6), (0.75, 0.2)):
                rows.append({"x.threshold": t, "method": method, "edit_type": "all", "metric": f"soft_iou@{point:g}",
                             "mean": mean - shift, "std": 0.1, "ci95": 0.05, "n": 4, "failures": 0})  # fmt: skip
    summary = pd.DataFrame(rows)
    curves = one_curve_per_setting(summary_curves(summary, ("x.threshold", "method")))
    assert [c.label for c in curves] == ["k [x.threshold=0.3]", "k [x.threshold=0.6]", "m"]
    np.testing.assert_allclose(curves[1].mean, [0.7, 0.5, 0.1])
    np.testing.assert_allclose(curves[2].thresholds, [0.25, 0.5, 0.75])
    assert curves[2].n == 4


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    run_dir = tmp / "run"
    run(compose([METHODS, WITH_CURVE, "dataset.limit=3"], tmp, model_cache), run_dir)
    return run_dir


def test_curve_at_the_runs_threshold_is_the_runs_iou(report_run: Path) -> None:
    """The report's curve and the run's own mask_iou (soft masks at 0.5) are the same numbers."""
    folder = RunFolder(report_run)
    data = collect_masks(folder, folder.load_config())
    summary = pd.read_csv(folder.summary_path)
    iou = summary[(summary["edit_type"] == "all") & (summary["metric"] == "iou")].set_index("method")["mean"]
    curves = {c.label: c for c in data.curves}
    assert set(curves) == {"identity", "gt_inpaint", "instdiffedit"}
    for method, curve in curves.items():
        at_half = curve.mean[np.flatnonzero(np.isclose(curve.thresholds, 0.5))[0]]
        assert at_half == pytest.approx(iou[method], abs=1e-9), method
        assert curve.n == 3
    np.testing.assert_allclose(curves["gt_inpaint"].mean, 1.0)  # the oracle's soft mask is the GT
    # the run's own soft_mask curve (soft_iou@T of its summary, what the page draws) is the same curve
    scored = {c.label: c for c in one_curve_per_setting(summary_curves(summary, ("method",)))}
    assert set(scored) == set(curves)
    for method, curve in curves.items():
        np.testing.assert_allclose(scored[method].thresholds, curve.thresholds)
        np.testing.assert_allclose(scored[method].mean, curve.mean, atol=1e-9)
        np.testing.assert_allclose(scored[method].ci95, curve.ci95, atol=1e-9, equal_nan=True)


def test_report_of_a_run_writes_its_plots_and_page(report_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main("report", str(report_run)) == 0
    out = capsys.readouterr().out
    assert "names no `published` table" in out and "report.html" in out
    plots = report_run / "plots"
    names = sorted(p.stem for p in plots.glob("*.png"))
    assert sorted(p.stem for p in plots.glob("*.svg")) == names
    quality = ["f1", "iou", "precision", "psnr_background", "psnr_whole", "recall"]
    quality += ["soft_iou_best", "soft_iou_mean", "soft_mask_ap"]  # soft_iou@T: the curve, not a plot each
    assert names == sorted(
        ["iou_vs_threshold"]
        + [f"cost-{i:02d}_{m}" for i, m in enumerate(quality)]
        # soft_iou_best is one value per method (its mean curve's best point): no per-edit-type bars
        + [f"edit-types-{i:02d}_{m}" for i, m in enumerate(quality) if m != "soft_iou_best"]
        + [f"samples-{i:02d}_{m}" for i, m in enumerate(["gt_inpaint", "identity", "instdiffedit"])]
    )
    page = (report_run / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(names)
    assert all(f'href="plots/{name}.svg"' in page for name in names)
    assert "<script" not in page and "Published vs ours" not in page
    assert "from the soft_mask metric&#x27;s soft_iou@T values of the summary" in page


def test_report_with_a_published_table_puts_it_on_the_page(report_run: Path, tmp_path: Path) -> None:
    paper = tmp_path / "paper.yaml"
    source = "Table 1 of <b>a paper</b> & co"
    paper.write_text(json.dumps({"title": "t", "source": source, "metrics": {"iou": {}}, "results": {"x": {"iou": 1}}}))
    assert cli_main("report", str(report_run), "--published", str(paper), "--rename", "x=gt_inpaint") == 0
    page = (report_run / "report.html").read_text()
    assert "Published vs ours" in page and "Table 1 of &lt;b&gt;a paper&lt;/b&gt; &amp; co" in page
    assert (report_run / "report.md").exists() and (report_run / "report.csv").exists()


def test_report_of_a_sweep_merges_its_jobs_and_plots_against_the_swept_value(tmp_path: Path) -> None:
    """A post-hoc threshold sweep: both jobs share the soft masks (one curve per method), the page has the merged
    table and IoU against the swept threshold."""
    env = {"EMB_CACHE_DIR": str(tmp_path / "cache"), "EMB_MODEL_CACHE": str(tmp_path / "models")}
    sweep = tmp_path / "sweep"
    emb(
        "run", "-m", "model=tiny", "dataset=synthetic", "dataset.limit=2", "metrics=default",
        "methods=[{gt_inpaint:{num_inference_steps:2}}]",
        "metrics.metrics=[{name:mask_iou,source:soft,threshold:0.5}]", "metrics.metrics.0.threshold=0.3,1.0",
        "objective=iou", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env,
    )  # fmt: skip
    out = emb("report", str(sweep), cwd=tmp_path, env=env)
    assert f"report: {sweep / 'report.html'}" in out.stdout
    names = sorted(p.stem for p in (sweep / "plots").glob("*.png"))
    assert "swept-0-01_iou_metrics.metrics.0.threshold" in names and "iou_vs_threshold" in names
    page = (sweep / "report.html").read_text()
    assert "Against the swept settings" in page and "metrics.metrics.0.threshold" in page
    assert "Best iou (maximize): 1 in job 0 (" in page  # sweep.json's best job
    # the merged table: one row per threshold
    rows = re.findall(r"<tr><td class=\"text\">([\d.]+)</td><td class=\"text\">gt_inpaint</td>(.*?)</tr>", page)
    assert [r[0] for r in rows[:2]] == ["0.3", "1.0"]
    curves = collect_masks(RunFolder(sweep / "0"), RunFolder(sweep / "0").load_config()).curves
    assert len(curves) == 1  # and the sweep's page draws it once, not once per job
    keys = ("metrics.metrics.0.threshold", "method")
    assert [c.label for c in sweep_masks([sweep / "0", sweep / "1"], keys).curves] == ["gt_inpaint"]


def test_a_run_whose_dataset_is_gone_still_gets_its_page(tmp_path: Path, model_cache: Path, caplog) -> None:
    """The tables and cost plots need only the run folder: a moved dataset costs the sample grid, in one line."""
    root = tmp_path / "ds"
    write_dataset(SyntheticDataset(num_samples=2, seed=1), root)
    overrides = ["dataset=folder", f"dataset.path={root}", "methods=[identity]", SOFT_IOU]
    run(compose(overrides, tmp_path, model_cache), tmp_path / "run")
    shutil.rmtree(root)
    assert cli_main("report", str(tmp_path / "run")) == 0
    assert [r.getMessage() for r in caplog.records if "no mask plots or sample grid" in r.getMessage()] == [
        f"{tmp_path / 'run'}: no mask plots or sample grid ({root}/manifest.jsonl: dataset manifest not found "
        f"(dataset.path='{root}'))"
    ]
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Quality vs cost" in page and "Sample edits" not in page


def test_wandb_run_gets_the_plots_as_images(tmp_path: Path, model_cache: Path) -> None:
    from tests.test_wandb_logger import offline_run

    cfg = compose(
        ["methods=[{gt_inpaint:{num_inference_steps:2}}]", SOFT_IOU, "dataset.limit=2", "logger=wandb"],
        tmp_path,
        model_cache,
    )
    run(cfg, tmp_path / "run")
    folder, info = offline_run(tmp_path / "run" / "wandb")
    logged = {key: path for step in info["history"].values() for key, path in step.items() if key.startswith("plots/")}
    written = sorted(p.stem for p in (tmp_path / "run" / "plots").glob("*.png"))
    assert sorted(k.removeprefix("plots/") for k in logged) == written and "iou_vs_threshold" in written
    assert all((folder / "files" / path).read_bytes()[:4] == b"\x89PNG" for path in logged.values())
    assert not list((tmp_path / "run" / "plots").glob("*.svg"))  # W&B takes the PNGs only
