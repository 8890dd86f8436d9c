"""The app in a real browser: Debian chromium driven by playwright, everything on 127.0.0.1.

One app server (the shipped checkpoints/gia-mic-lite, ASR off) serves every test here; each
test opens a fresh page. Skips where /usr/bin/chromium (``apt-get install chromium``) or
playwright is absent. Screenshots are kept under ``artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
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
LITE = REPO_ROOT / "checkpoints" / "gia-mic-lite"
ANGRY = REPO_ROOT / "examples" / "1001_DFA_ANG_XX.mp4"
SENTENCE = "Don't forget a jacket"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.skipif(not (LITE / "model.safetensors").exists() or not ANGRY.exists(),
                       reason="needs the embedded lite checkpoint and the example clips"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app_url():
    with serve(tiny_recognizer(LITE)) as (_, url):
        yield url


@pytest.fixture()
def page(browser, app_url, request):
    width, height = getattr(request, "param", (1280, 1000))
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.hosts, page.console_errors = set(), []
    page.on("request", lambda r: page.hosts.add(urlparse(r.url).hostname or r.url.split(":", 1)[0]))
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto(app_url, wait_until="load")
    page.locator("#classify").wait_for(timeout=30_000)
    yield page
    assert page.hosts <= {"127.0.0.1", "data", "blob"}, page.hosts
    assert page.console_errors == []
    page.close()


def shot(page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def upload(page, path: Path) -> None:
    page.locator("#video-in input[type=file]").set_input_files(str(path))
    page.locator("#video-in video").first.wait_for(timeout=30_000)


def classify(page) -> str:
    page.locator("#classify").click()
    page.locator("#verdict h2, #verdict h3").first.wait_for(timeout=60_000)
    return page.locator("#verdict").inner_text()


def test_examples_verdict_with_disagreement_and_the_json_download(page):
    examples = page.get_by_text("acted:", exact=False)
    names = sorted(examples.all_inner_texts())
    assert names == ["acted: angry", "acted: happy", "acted: neutral", "acted: sad"], names
    page.get_by_text("acted: angry").click()
    page.locator("#video-in video").first.wait_for(timeout=30_000)
    assert page.locator("#transcript textarea").input_value() == SENTENCE
    verdict = classify(page)
    # the lite model on this clip (CREMA-D 1001 ANG): voice angry, words neutral
    assert "1001_DFA_ANG_XX.mp4" in verdict and "they disagree" in verdict, verdict
    assert "The voice says angry" in verdict and "the words say neutral" in verdict, verdict
    assert "knows only neutral, happy, angry, sad" in verdict
    page.locator("#explain-out img").wait_for(timeout=30_000)
    assert "Words used (typed)" in page.locator("#status-out").inner_text()
    assert page.locator("#label-out").is_visible()
    shot(page, "app-desktop-verdict.png")
    with page.expect_download() as info:
        page.locator("#download-json").click()
    result = json.loads(Path(info.value.path()).read_text())
    assert result["file"] == "1001_DFA_ANG_XX.mp4" and result["agreement"] is False
    assert result["per_modality"]["audio"]["label"] == "angry"


def test_new_upload_clears_the_old_result(page, tmp_path):
    upload(page, ANGRY)
    page.locator("#transcript textarea").fill(SENTENCE)
    assert "ANG" in classify(page)
    other = tmp_path / "other.mp4"
    shutil.copy(REPO_ROOT / "examples" / "1001_DFA_SAD_XX.mp4", other)
    page.locator("#video-in button[aria-label='Clear']").first.click()
    upload(page, other)
    page.get_by_text("New clip").wait_for(timeout=10_000)
    verdict = page.locator("#verdict").inner_text()
    assert "other.mp4" in verdict and "transcript box is not empty" in verdict and "ANG" not in verdict
    assert not page.locator("#label-out").is_visible() and not page.locator("#download-json").is_visible()
    assert "other.mp4" in classify(page)


def test_an_error_keeps_the_transcript_and_goes_with_the_next_result(page, tmp_path):
    short = make_clip(tmp_path / "blip.mp4", seconds=0.04, fps=25)
    upload(page, short)
    page.locator("#transcript textarea").fill("my own words")
    verdict = classify(page)
    assert "Could not classify this" in verdict and "blip.mp4" in verdict and "at least 0.1 s" in verdict, verdict
    assert page.locator("#transcript textarea").input_value() == "my own words"
    assert page.locator(".toast-body").count() == 0  # no toast stacking over later results
    shot(page, "app-desktop-error.png")
    page.locator("#video-in button[aria-label='Clear']").first.click()
    upload(page, ANGRY)
    verdict = classify(page)
    assert "Could not classify" not in verdict and verdict.startswith("neutral") is False


@pytest.mark.parametrize("page", [(390, 844)], indirect=True)
def test_phone_shows_the_verdict_in_the_first_screen_after_classify(page):
    page.get_by_text("acted: happy").click()
    page.locator("#video-in video").first.wait_for(timeout=30_000)
    page.locator("#classify").scroll_into_view_if_needed()
    classify(page)
    page.wait_for_timeout(500)
    box = page.locator("#verdict").bounding_box()
    scroll = page.evaluate("window.scrollY")
    top = box["y"]  # relative to the viewport
    assert -2 <= top < 844 - 80 and scroll > 0, (top, scroll)  # scrolled down to the verdict
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # nothing wider than the phone
    shot(page, "app-phone-verdict.png", full_page=False)
    shot(page, "app-phone-full.png")


def test_timeline_view_and_its_downloads(page):
    upload(page, ANGRY)
    page.locator("#timeline-section").get_by_text("Emotion over time").first.click()
    page.locator("#timeline-run").click()
    page.locator("#timeline-plot img").wait_for(timeout=60_000)
    summary = page.locator("#timeline-summary").inner_text()
    assert summary.startswith("Overall:"), summary
    table = page.locator("#timeline-table").inner_text()
    cells = table.split("words", 1)[1]
    assert "start (s)" in table and any(label in cells for label in ("neutral", "happy", "angry", "sad")), table
    with page.expect_download() as info:
        page.locator("#download-csv").click()
    csv_text = Path(info.value.path()).read_text()
    assert csv_text.startswith("file,start,end,label,score") and "1001_DFA_ANG_XX.mp4" in csv_text
    with page.expect_download() as info:
        page.locator("#download-srt").click()
    srt = Path(info.value.path()).read_text()
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    shot(page, "app-desktop-timeline.png")


def long_recording(path: Path) -> Path:
    """Four real example clips (CREMA-D 1001) one after another, 1.5 s of silence around each, as a WAV."""
    import numpy as np
    import soundfile as sf

    from gia_mic.media import decode_clip

    gap = np.zeros(24000, np.float32)  # (samples,) 1.5 s at 16 kHz
    parts = [gap]
    for emotion in ("ANG", "HAP", "SAD", "NEU"):
        parts += [decode_clip(REPO_ROOT / "examples" / f"1001_DFA_{emotion}_XX.mp4", num_frames=1).audio, gap]
    sf.write(path, np.concatenate(parts), 16000)
    return path


def open_timeline_and_select(page, path: Path, row: int) -> tuple[list[str], str]:
    page.locator("#audio-in input[type=file]").set_input_files(str(path))
    page.get_by_text("New clip").wait_for(timeout=30_000)
    page.locator("#timeline-section").get_by_text("Emotion over time").first.click()
    page.locator("#timeline-run").click()
    page.locator("#timeline-plot img").wait_for(timeout=90_000)
    rows = page.locator("#timeline-table [role=row]:has([role=gridcell])")  # Gradio 6: a virtual grid, not <tr>
    rows.nth(2).wait_for(timeout=10_000)
    assert rows.count() >= 3, page.locator("#timeline-table").inner_text()
    cells = [c.strip() for c in rows.nth(row).locator("[role=gridcell]").all_inner_texts()]
    rows.nth(row).locator("[role=gridcell]").nth(2).click()
    page.locator("#timeline-segment h3").wait_for(timeout=60_000)
    return cells, page.locator("#timeline-segment").inner_text()


@pytest.mark.parametrize("page", [(1280, 1000), (390, 844)], indirect=True)
def test_clicking_a_timeline_row_shows_that_stretch(page, tmp_path):
    start, end, label, score, _words = open_timeline_and_select(page, long_recording(tmp_path / "talk.wav"), 1)[0]
    details = page.locator("#timeline-segment").inner_text()
    assert details.startswith(f"Stretch 2: {start}\u2013{end} s: {label} ({score})"), (details, start, end, label)
    assert label in ("neutral", "happy", "angry", "sad")  # the lite model's classes, whichever it answers
    assert all(f"{name} " in details.split("Scores:")[1] for name in ("neutral", "happy", "angry", "sad")), details
    # ASR is off on this server: speech only, so no gates (test_app draws them with words)
    assert "From the voice alone." in details and "Words not used" in details and "No gate plot" in details
    assert not page.locator("#timeline-segment-gates").is_visible()
    phone = page.viewport_size["width"] < 500
    page.locator("#timeline-segment").scroll_into_view_if_needed()
    shot(page, f"app-{'phone' if phone else 'desktop'}-timeline-segment.png", full_page=False)
    if phone:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    upload(page, ANGRY)  # a new file: the stretch's details go with the old timeline
    page.locator("#verdict").get_by_text("1001_DFA_ANG_XX.mp4").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert page.locator("#timeline-segment").inner_text().strip() == ""
    assert not page.locator("#timeline-segment-gates").is_visible() and not page.locator("#timeline-table").is_visible()
