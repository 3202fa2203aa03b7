"""The Webcam page: Chromium's fake camera (a synthetic face) is recognised live over WebRTC."""

from __future__ import annotations

import re
import time

import pytest

from fertools.constants import DEFAULT_MODEL_DIR
from fertools.modelcard import read_card

pytestmark = pytest.mark.browser

#: Seconds from pressing START to a face and an emotion in the readout.
READOUT_TIMEOUT_S = 30
#: Seconds more for the emotion timeline chart to show.
TIMELINE_TIMEOUT_S = 45


def test_fake_camera_face_is_recognised_live(app) -> None:
    classes = list(read_card(DEFAULT_MODEL_DIR).classes)
    page = app.page
    app.goto("/Webcam", "the readout appears here", timeout_s=180)

    component = page.frame_locator('iframe[title*="streamlit_webrtc"]')
    component.get_by_role("button", name="START").click()

    # The readout (a fragment rerun every second) names each face's emotion and the frame rate.
    readout = page.locator(".st-key-webcam_readout")
    pattern = re.compile(
        rf"Face \d+\s+({'|'.join(map(re.escape, classes))}) \d+%.*?([\d.]+) fps",
        re.DOTALL,
    )
    start = time.monotonic()
    text = ""
    # The first frame's readout says 0.0 fps (a rate needs two frames): wait for a real rate.
    while not ((match := pattern.search(text)) and float(match.group(2)) > 0):
        waited = time.monotonic() - start
        assert waited < READOUT_TIMEOUT_S, f"no face, emotion and fps within {READOUT_TIMEOUT_S} s: {text!r}"
        page.wait_for_timeout(250)
        text = readout.inner_text() if readout.count() else ""
    print(f"readout {time.monotonic() - start:.1f} s after START: {text!r}")
    app.assert_no_exception()
    assert "No video has reached the server" not in app.text()

    # The emotion timeline (a fragment rerun every 3 s) charts one line per class. Plotly's
    # code loads on the first chart a tab shows: 20 s and more on a busy 2-core machine.
    for _ in range(TIMELINE_TIMEOUT_S * 4):
        lines = [trace for chart in app.plotly_charts() for trace in chart if trace["name"] in classes]
        if len(lines) == len(classes) and len(lines[0]["x"]) >= 2:
            break
        page.wait_for_timeout(250)
    else:
        raise AssertionError(
            f"no emotion timeline within {TIMELINE_TIMEOUT_S} s; charts: {app.plotly_charts()}"
        )

    # The annotated video plays back in the component.
    video = component.locator("video")
    video.wait_for()
    for _ in range(40):  # HAVE_CURRENT_DATA: a frame is on screen
        if video.evaluate("v => v.readyState >= 2 && v.videoWidth > 0"):
            break
        page.wait_for_timeout(250)
    else:
        raise AssertionError("the annotated video never showed a frame")
    page.mouse.move(0, 0)
    page.wait_for_timeout(1500)
    app.screenshot("webcam")

    component.get_by_role("button", name="STOP").click()
