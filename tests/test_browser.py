"""A real browser visits every page of the running app: no error box, a screenshot of each; and a dataset
nobody has seen is trained from the Train page and read on every page.

Needs Debian's Chromium (``/usr/bin/chromium``; `.ci/run` installs it) and Playwright for
Python (in requirements.txt); Playwright drives the system Chromium, no browser download.
Screenshots go to ``$BROWSER_SCREENSHOTS`` if set, else to the test's temporary folder.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# A deep link first: a fresh server must still route through streamlit_app.py's navigation.
PAGES = {"try": "try", "overview": "", "data": "data", "training": "training", "per_class": "per_class", "roc_pr": "roc_pr",
         "calibration": "calibration", "deployment": "deployment", "significance": "significance",
         "baselines": "baselines", "model_selection": "model_selection", "methods": "methods", "train": "train",
         "export": "export"}

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env_extra: dict):
    """Start the app on a free port with ``env_extra``; yields its URL, stops it after."""
    port = _free_port()
    env = dict(os.environ, **env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode(errors="replace")[-2000:])
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def app_server(tiny_artifacts):
    yield from _serve({"STUDY_ARTIFACTS": str(tiny_artifacts)})


def _launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def _settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the page's script run is over (the "running" status widget disappears)."""
    page.wait_for_selector("h1", timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_timeout(500)


def test_every_page_in_a_real_browser(app_server, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in PAGES.items():
            page.goto(f"{app_server}/{path}", wait_until="domcontentloaded")
            _settle(page)
            assert page.locator('[data-testid="stException"]').count() == 0, name
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, name
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Overview" in nav and "Try the models" in nav, (name, nav)  # st.navigation's menu
            assert page.get_by_text("Dataset", exact=True).count() >= 1, name  # the shared sidebar
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            assert (shots / f"{name}.png").stat().st_size > 10_000, name
        headline = page.locator("h1").first.inner_text()
        browser.close()
    assert headline == "Export"  # the last page visited


def _many_class_dataset(root: Path, classes: int = 20, per_class: int = 10) -> Path:
    """``train/`` and ``val/`` folders only (2 of each class's images in val/): noise images, each its own
    (no near-copies), tinted by class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(16)
    for c in range(classes):
        tint = rng.integers(0, 255, 3)
        for i in range(per_class):
            folder = root / ("val" if i < 2 else "train") / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(0, 255, (32, 32, 3))
            Image.fromarray(((noise + tint) // 2).astype("uint8")).save(folder / f"{i}.png")
    return root


@pytest.fixture
def fresh_app(tmp_path, lite0_home):
    """The app with no results yet, offering one unseen many-class dataset to train."""
    data = _many_class_dataset(tmp_path / "data" / "many")
    art = tmp_path / "artifacts"
    yield from _serve({"STUDY_ARTIFACTS": str(art), "STUDY_ALLOWED_DATA_ROOTS": str(data.parent),
                       "STUDY_JOBS": str(tmp_path / "jobs"), "HOME": os.environ["HOME"]})


def _page_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


@pytest.mark.slow
def test_a_many_class_dataset_trained_from_the_train_page_gets_the_whole_report(fresh_app, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path) / "many"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = _launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{fresh_app}/train", wait_until="domcontentloaded")
        _settle(page)
        text = _page_text(page)
        assert "200 images in 20 classes" in text and "The dataset's val/ folder is" in text
        page.get_by_text("Then measure deployment variants").click()  # quick preset (the default), no deployment
        _settle(page)
        page.get_by_role("button", name="Start training").click()
        page.wait_for_selector('[data-testid="stProgress"]', timeout=60_000)  # one overall bar from the start
        page.get_by_text(re.compile(r"Last job, .*: succeeded")).wait_for(timeout=240_000)
        _settle(page)
        text = _page_text(page)
        assert re.search(r"EfficientNetLite0 on many: test accuracy \d\.\d{3}", text), text
        page.screenshot(path=str(shots / "train-done.png"), full_page=True)
        page.get_by_role("link", name=re.compile("Open the Overview of many")).click()
        _settle(page)
        text = _page_text(page)
        assert "Leaderboard: many" in text and "1 complete run;" in text
        assert "Splits: train ← folder train/; val ← stratified by group from train; test ← folder val/" in text
        assert "Audit: " in text
        box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first  # the sidebar's Dataset
        shown = box.text_content() + " ".join(i.input_value() for i in box.locator("input").all())
        assert "many" in shown, shown
        expected = {
            "data": ["Which folder became which split", "test ← folder val/", "Leakage pairs",
                     "Groups: images that must stay on one side of a split", "What leakage does to the scores"],
            "significance": ["a comparison needs two"],
            "methods": ["python -m core run", "Settings", "differs from its preset's default"],
            "training": ["Solid: training, dashed: validation"],
            # 20 classes: colour-only matrices with an order and a filter, and the most-confused table.
            "per_class": ["Most confused pairs", "Order classes by",
                          "classes: the matrices are colour only"],
            # Long-form AUC table; the curves' step order is checked on the chart data in tests/test_charts.py.
            "roc_pr": ["AUC and average precision", "Classes (one-vs-rest)", "steps in threshold order"],
            "calibration": ["Hollow points: bins with fewer than"],
            "deployment": [], "export": ["Report (one HTML file)"],
            "try": ["Keras models of many are ready"],
        }
        for name, needles in expected.items():
            page.goto(f"{fresh_app}/{name}", wait_until="domcontentloaded")
            _settle(page)
            assert page.locator('[data-testid="stException"]').count() == 0, name
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, (name, _page_text(page))
            for needle in needles:  # a page still drawing (the HTML report takes seconds) gets time to finish
                page.get_by_text(needle, exact=False).first.wait_for(timeout=30_000)
            text = _page_text(page)
            for needle in needles:
                assert needle in text, (name, needle, text[:2000])
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            if name == "export":  # the report is built when clicked: one self-contained file with its charts
                with page.expect_download(timeout=60_000) as download:
                    page.get_by_role("button", name="Report (one HTML file)").click()
                html = Path(download.value.path()).read_text(encoding="utf-8")
                assert "<svg" in html and "many" in html and "Most-confused pairs" in html
        # Phone width: a compact title and the headline chart across the screen.
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(fresh_app, wait_until="domcontentloaded")
        _settle(phone)
        chart = phone.locator('[data-testid="stVegaLiteChart"]').last
        chart.scroll_into_view_if_needed()
        assert chart.bounding_box()["width"] > 300
        assert phone.locator("h1").first.bounding_box()["height"] < 200
        phone.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
        browser.close()
