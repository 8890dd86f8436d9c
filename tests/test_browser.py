"""The app in a real browser: Debian chromium driven by playwright, everything on 127.0.0.1.

Skips where /usr/bin/chromium (``apt-get install chromium``) or playwright is absent. The
screenshot is kept as ``artifacts/app-browser.png`` (git-ignored).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.app_server import REPO_ROOT, serve, tiny_recognizer
from tests.clips import make_clip

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = REPO_ROOT / "artifacts"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def test_upload_classify_label_and_heatmaps(browser, tiny_checkpoint, tmp_path):
    clip = REPO_ROOT / "examples" / "1001_DFA_HAP_XX.mp4"
    if not clip.exists():
        clip = make_clip(tmp_path / "clip.mp4", seconds=1.5, size=(160, 120))
    recognizer = tiny_recognizer(tiny_checkpoint)
    with serve(recognizer) as (_, url):
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        hosts, console_errors = set(), []
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname or r.url.split(":", 1)[0]))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(url, wait_until="load")
        page.locator("#classify").wait_for(timeout=30_000)
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.locator("#video-in video").first.wait_for(timeout=30_000)
        page.locator("#transcript textarea").fill("Don't forget a jacket")
        page.locator("#classify").click()
        page.locator("#gates-out img").wait_for(timeout=60_000)
        label = page.locator("#label-out")
        for name in recognizer.labels:
            assert label.get_by_text(name).count() >= 1, name
        assert "Transcript used" in page.locator("#status-out").inner_text()
        assert page.locator("#gates-out img").evaluate("img => img.naturalWidth") > 500
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = tmp_path / "app-browser.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, ARTIFACTS / "app-browser.png")
        page.locator("#use-video input").uncheck()  # a toggle re-runs only the fusion
        page.get_by_text("only the fusion ran").wait_for(timeout=30_000)
        assert "video (switched off)" in page.locator("#status-out").inner_text()
        page.close()
    assert hosts <= {"127.0.0.1", "data", "blob"}, hosts
    assert console_errors == []
