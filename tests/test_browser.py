"""A real browser visits every page of the running app: no error box, a screenshot of each.

Needs Debian's Chromium (``/usr/bin/chromium``; `.ci/run` installs it) and Playwright for
Python (in requirements.txt); Playwright drives the system Chromium, no browser download.
Screenshots go to ``$BROWSER_SCREENSHOTS`` if set, else to the test's temporary folder.
"""

import os
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
         "methods": "methods", "train": "train", "export": "export"}

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(tiny_artifacts):
    port = _free_port()
    env = dict(os.environ, STUDY_ARTIFACTS=str(tiny_artifacts))
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


def test_every_page_in_a_real_browser(app_server, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in PAGES.items():
            page.goto(f"{app_server}/{path}", wait_until="domcontentloaded")
            page.wait_for_selector("h1", timeout=60_000)
            # Wait until the script run is over (the "running" status widget disappears).
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                   timeout=60_000)
            page.wait_for_timeout(500)
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
