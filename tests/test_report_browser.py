"""``emb report``'s page in a real browser (headless Chromium, the leaderboard's fixture): a small run's page opens
from a file with no console error, every image on it loads, and a screenshot is kept as a test artifact; a sample
prompt holding ``<script>`` shows as text and runs nothing.

How this was checked to fail: with ``esc()`` of the sample texts removed, the prompt test failed (the cell held no
such text, the page had a script element, and the browser logged the Content-Security-Policy refusing it); with the
PNG data URI's first bytes cut (``data[8:]``), the images had naturalWidth 0 (cutting its last 40 characters did
not fail: Chromium draws a PNG without its end); with the page's style block changed after its hash was computed,
the console showed the refused style.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.datasets.synthetic import SyntheticDataset, write_dataset
from benchmark.runner import run
from tests.browser_fixtures import BROWSER_MARKS, console_errors, keep_artifact
from tests.browser_fixtures import browser as browser  # noqa: F401 (the fixture, by its name)
from tests.conftest import cli_main, compose

pytestmark = BROWSER_MARKS

METHODS = "methods=[identity,{gt_inpaint:{num_inference_steps:2}},{instdiffedit:{num_inference_steps:2}}]"
METRICS = "metrics.metrics=[{name:mask_iou,source:soft,threshold:0.5},{name:psnr,region:[whole,background]}]"
HOSTILE_PROMPT = '<script>window.__pwned = 1</script> a <img src="x" onerror="window.__pwned = 2"> red </td> circle'


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    """``emb report`` on a small run: the floor and two mask-producing methods on three synthetic samples."""
    tmp = tmp_path_factory.mktemp("report-page")
    run(compose([METHODS, METRICS, "dataset.limit=3"], tmp, model_cache), tmp / "run")
    assert cli_main("report", str(tmp / "run")) == 0
    return tmp / "run" / "report.html"


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    """A report on a folder dataset whose first sample's source prompt is markup."""
    tmp = tmp_path_factory.mktemp("hostile-report")
    root = tmp / "ds"
    write_dataset(SyntheticDataset(num_samples=2, seed=3), root)
    lines = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    lines[0]["source_prompt"] = HOSTILE_PROMPT
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    overrides = ["dataset=folder", f"dataset.path={root}", "methods=[identity]", METRICS]
    run(compose(overrides, tmp, model_cache), tmp / "run")
    assert cli_main("report", str(tmp / "run")) == 0
    return tmp / "run" / "report.html"


def test_report_page_loads_every_image_and_is_kept_as_a_screenshot(report_page: Path, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(report_page.as_uri())
    assert browser.title == "emb report: run"
    assert console_errors(browser) == []
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    pngs = list((report_page.parent / "plots").glob("*.png"))
    assert len(images) == len(pngs) == 1 + 2 * 6 + 3  # IoU curve; cost and edit-type plots of 6 metrics; 3 grids
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images
    )
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2")]
    assert headings == ["Summary (mean ± 95% CI)", "Mask IoU vs threshold", "Quality vs cost", "Per edit type",
                        "Sample edits"]  # fmt: skip
    summary = browser.find_elements(By.CSS_SELECTOR, "table")[0]
    methods = [td.text for td in summary.find_elements(By.CSS_SELECTOR, "tbody td.text")]
    assert methods == ["gt_inpaint", "identity", "instdiffedit"]
    shot = tmp_path / "report-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    keep_artifact(shot)
    browser.execute_script("document.querySelectorAll('h2')[2].scrollIntoView()")  # the plots
    assert browser.save_screenshot(str(shot.with_name("report-plots.png")))
    keep_artifact(shot.with_name("report-plots.png"))
    # the SVG beside the page opens from the page's link
    browser.find_element(By.LINK_TEXT, "SVG").click()
    assert browser.current_url.endswith("/plots/iou_vs_threshold.svg") and console_errors(browser) == []


def test_a_prompt_holding_script_shows_as_text_and_never_runs(hostile_page: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(hostile_page.as_uri())
    assert console_errors(browser) == []
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.text")]
    assert HOSTILE_PROMPT in cells
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.execute_script("return document.scripts.length") == 0
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth > 0", i) for i in images)
