"""`vivid app` driven end to end in headless Chromium on the tiny model: upload a video, paint the mask,
preview keyframe candidates, choose one, propagate, download the result.

Needs Debian's chromium and Playwright for Python (never `playwright install`):
    apt-get install -y chromium && pip install playwright gradio
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app needs gradio: pip install gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python missing: pip install playwright")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="Debian's chromium is missing: apt-get install -y chromium"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_pipe, tmp_path_factory):
    from vivid.apps.gradio_app import VividApp, launch

    app = VividApp(tiny_pipe, tmp_path_factory.mktemp("app"), steps=1, guidance=1.0)
    port = _free_port()
    demo = launch(app, port=port, block=False)
    yield f"http://127.0.0.1:{port}"
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


def test_app_upload_paint_preview_propagate_download(app_url, moving_video, tmp_path):
    from vivid.io.video import video_info

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(app_url, timeout=120_000)
            page.locator("#preview").click()  # too early: a message, not a traceback
            sync_api.expect(page.locator(".toast-body").first).to_contain_text("upload a video first", timeout=60_000)
            assert "Traceback" not in page.content()
            page.locator(".toast-body").first.locator("button").first.click()  # close the message
            page.locator("#video-in input[type=file]").set_input_files(str(moving_video))
            # Wait until the upload is processed and the first frame is the editor's background: a stroke
            # painted before that is wiped when the background arrives (CI saw that with a fixed 2 s wait).
            sync_api.expect(page.locator("#video-info")).to_contain_text("14 frames at 8 fps, 96x64", timeout=120_000)
            sync_api.expect(page.locator("#mask-editor button[aria-label='Pan']")).to_be_enabled(timeout=60_000)
            canvas = page.locator("#mask-editor canvas").first
            page.locator("#mask-editor button[aria-label='Brush']").click()
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
            thumbs = page.locator("#candidates img")
            thumbs.nth(1).wait_for(timeout=180_000)
            assert thumbs.count() == 2
            thumbs.nth(1).click()
            sync_api.expect(page.locator("#chosen")).to_contain_text("candidate 2 of 2", timeout=30_000)

            page.locator("#propagate").click()
            link = page.locator("#download a").first
            link.wait_for(timeout=300_000)
            href = link.get_attribute("href")
            assert href
            response = page.request.get(href if href.startswith("http") else app_url + href)
            assert response.ok
            out = tmp_path / "downloaded.mp4"
            out.write_bytes(response.body())
            assert page.locator("#result video").count() == 1  # the result plays in the page
            assert not page.locator(".toast-body.error").count(), "the app showed an error"
        finally:
            browser.close()
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (14, 64, 96)
