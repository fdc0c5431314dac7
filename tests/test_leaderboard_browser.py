"""The board's static site in a real browser: Debian's headless Chromium driven by selenium through the system's
chromedriver (Selenium Manager never runs: the driver's path is given). The page loads from a file with no console
error, sorting by a column reorders the rows, a description holding ``<script>`` shows as text and runs nothing,
and a screenshot is kept as a test artifact (printed, and copied to outputs/test-artifacts/).

How this was checked to fail: with ``esc()`` of the entry page's description removed, the script test failed (the
page's Content-Security-Policy blocked the injected script, and the browser log showed it); with the sort handler
bound to another event than a click, the order check failed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.leaderboard.build import build_board
from benchmark.leaderboard.score import score_submission
from benchmark.leaderboard.validate import opened_submission
from tests.browser_fixtures import BROWSER_MARKS, console_errors, keep_artifact
from tests.browser_fixtures import browser as browser  # noqa: F401 (the fixture, by its name)
from tests.leaderboard_fixtures import dataset_submission, write_board

HOSTILE_DESCRIPTION = (
    "<script>window.__pwned = 1</script>\n"
    '<img src="x" onerror="window.__pwned = 2"> and </script><!-- a comment that never closes'
)

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A board of three real re-scored entries (copy of the source, the correct edit, a partial correct edit)."""
    root = tmp_path_factory.mktemp("site")
    board = write_board(root / "board")
    for kind, name, skip in (
        ("copy", "copy source", ()),
        ("correct", "correct edit", ()),
        ("correct", "partial edit", ("syn0-00002",)),
    ):
        path = dataset_submission(root / f"{name}.zip", kind, name, HOSTILE_DESCRIPTION, skip=skip)
        with opened_submission(path) as sub:
            score_submission(sub, board)
    build_board(board)
    return board


def method_order(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#board tbody td.method")]


def header(driver, label: str):
    from selenium.webdriver.common.by import By

    return next(th for th in driver.find_elements(By.CSS_SELECTOR, "#board thead th") if th.text.startswith(label))


def test_board_page_loads_sorts_and_is_kept_as_a_screenshot(site: Path, browser, tmp_path: Path) -> None:
    browser.get((site / "site" / "index.html").as_uri())
    assert browser.title == "Synthetic test board"
    assert console_errors(browser) == []
    ranked = [e["method"]["name"] for e in json.loads((site / "leaderboard.json").read_text())["entries"]]
    assert method_order(browser) == ranked  # as built: by rank
    header(browser, "method").click()
    assert method_order(browser) == sorted(ranked)  # text: A to Z first
    header(browser, "method").click()
    assert method_order(browser) == sorted(ranked, reverse=True)
    header(browser, "iou").click()  # higher is better: best first; copy source has IoU 0
    assert method_order(browser)[-1] == "copy source"
    header(browser, "failed samples").click()  # lower is better: fewest first
    assert method_order(browser)[-1] == "partial edit"
    assert console_errors(browser) == []
    header(browser, "#").click()  # back to the ranking, scrolled to the table's start, for the screenshot
    browser.execute_script("document.querySelector('.scroll').scrollLeft = 0")
    assert method_order(browser) == ranked
    shot = tmp_path / "leaderboard-board.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    keep_artifact(shot)


def test_script_in_a_description_shows_as_text_and_never_runs(site: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    page = next((site / "site" / "entries").glob("copy-source-*.html"))
    browser.get(page.as_uri())
    assert console_errors(browser) == []
    description = browser.find_element(By.CSS_SELECTOR, "p.description").text
    assert description == HOSTILE_DESCRIPTION
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.execute_script("return document.scripts.length") == 0  # the entry page has no script at all
    images = browser.find_elements(By.CSS_SELECTOR, ".grid img")
    assert len(images) == 2 * 3  # two grid samples: source + GT, edited, edited + mask
    assert all(browser.execute_script("return arguments[0].naturalWidth > 0", img) for img in images)
    browser.find_element(By.LINK_TEXT, "← Synthetic test board").click()
    assert browser.execute_script("return window.__pwned === undefined")
    assert console_errors(browser) == []
