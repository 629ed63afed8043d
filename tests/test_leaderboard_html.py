"""The leaderboard page (``persona-bench leaderboard --html``): self-contained, every markdown table
on it, and sortable in a real browser (headless Chromium driven by selenium; skipped where
Chromium, ChromeDriver or selenium is absent)."""
from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from persona_bench.app.cli import main
from persona_bench.leaderboard.html import ci_bar, ci_scales, sort_value


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    runs = tmp_path_factory.mktemp("html-runs")
    common = ["--data", "demo:600", "--max-eval-people", "40", "--out", str(runs)]
    assert main(["run", "--method", "cf", *common]) == 0  # with majority and letter-prior beside it
    for k in ("1", "10"):  # two unseen-K points: a plot
        assert main(["run", "--method", "cf", "--users", "unseen", "--k", k, *common, "--no-references"]) == 0
    assert main(["leaderboard", "--runs", str(runs), "--out", str(runs / "board" / "LEADERBOARD.md"), "--html"]) == 0
    return runs / "board" / "LEADERBOARD.html"


def test_the_page_is_self_contained_and_holds_every_table(page):
    text = page.read_text()
    markdown = (page.parent / "LEADERBOARD.md").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text) and "<link" not in text and "<script src" not in text
    assert text.count("data:image/png;base64,") == len(list(page.parent.glob("*.png"))) >= 1  # the plots, inline
    titles = re.findall(r"^### (.+)$", markdown, flags=re.M)
    assert titles and all(title.replace("&", "&amp;").replace("<", "&lt;").split("`")[0] in text for title in titles)
    assert text.count("<details>") == len(list(page.parent.parent.glob("*/results.json")))  # each run's configuration


def test_cells_sort_by_their_figure_and_draw_their_ci():
    assert sort_value("**62.3** [58.1, 66.0]") == "62.3" and sort_value("10,000") == "10000" and sort_value("cf") == "cf"
    assert sort_value("58.1 [52.0, 64.0]°") == "58.1" and sort_value("gpt-j-6b") == "gpt-j-6b" and sort_value("W26") == "w26"
    assert sort_value("**+1.2** [0.1, 2.3]") == "+1.2" and sort_value("-0.4") == "-0.4" and sort_value("**spm**") == "spm"
    assert sort_value("1,000 answers x 1 epoch") == "1000" and sort_value("t5-small") == "t5-small"
    bar = ci_bar("60.0 [50.0, 70.0]", (40.0, 80.0))
    assert 'left:25.0%;width:50.0%' in bar and 'class="dot" style="left:50.0%"' in bar
    assert ci_bar("cf", (0.0, 1.0)) == "" and 'style="left:100.0%"' in ci_bar("90.0 [50.0, 70.0]", (40.0, 80.0))  # clamped
    assert ci_scales(pd.DataFrame({"a": ["60.0 [50.0, 70.0]", "", "40.0 [35.0, 45.0]"], "b": ["x", "1", "y"]})) == {"a": (35.0, 70.0)}
    both = ci_scales(pd.DataFrame({"a": ["60.0 [50.0, 70.0]"], "b": ["20.0 [10.0, 30.0]"]}))  # one scale per table
    assert both == {"a": (10.0, 70.0), "b": (10.0, 70.0)}


def chromium(profile):
    """Headless Chromium under selenium, offline (no driver download, no background network)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("Chromium and ChromeDriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_a_browser_sorts_the_tables_and_shows_a_configuration(page, tmp_path, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium's driver manager must not reach out
    browser = chromium(tmp_path / "profile")
    from selenium.webdriver.common.by import By

    try:
        browser.get(page.as_uri())
        table = browser.find_element(By.ID, "runs")
        header = table.find_elements(By.CSS_SELECTOR, "thead th")[5]  # macro accuracy
        column = lambda: [float(row.find_elements(By.TAG_NAME, "td")[5].get_attribute("data-sort"))  # noqa: E731
                          for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        header.click()
        assert header.get_attribute("aria-sort") == "ascending" and column() == sorted(column()) and len(set(column())) > 1
        header.click()
        assert header.get_attribute("aria-sort") == "descending" and column() == sorted(column(), reverse=True)
        metrics = browser.find_element(By.XPATH, "(//h2[.='Every metric']/following::table)[1]")  # a row per run
        headers = [th.text.strip() for th in metrics.find_elements(By.CSS_SELECTOR, "thead th")]
        for name in ("log_loss", "method"):  # a figure column, then a text column
            metrics.find_elements(By.CSS_SELECTOR, "thead th")[headers.index(name)].click()
            keys = [row.find_elements(By.TAG_NAME, "td")[headers.index(name)].get_attribute("data-sort")
                    for row in metrics.find_elements(By.CSS_SELECTOR, "tbody tr")]
            assert len(keys) >= 3 and keys == sorted(keys, key=float if name == "log_loss" else str)
        first = table.find_element(By.CSS_SELECTOR, "tbody tr details")
        first.find_element(By.TAG_NAME, "summary").click()
        assert '"method"' in first.find_element(By.TAG_NAME, "pre").text  # the run's configuration, on demand
        images = browser.find_elements(By.TAG_NAME, "img")
        assert images and all(browser.execute_script("return arguments[0].naturalWidth", image) > 0 for image in images)
        browser.set_window_size(800, 900)  # a narrow window: wide tables scroll on their own, the page does not
        assert browser.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert browser.execute_script("return Array.from(document.querySelectorAll('div.wide')).some(d => d.scrollWidth > d.clientWidth)")
        shot = tmp_path / "leaderboard.png"  # kept by pytest under its basetemp
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        browser.quit()
