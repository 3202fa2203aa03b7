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


def test_fake_camera_face_is_recognised_live(app) -> None:
    classes = list(read_card(DEFAULT_MODEL_DIR).classes)
    page = app.page
    app.goto("/Webcam", "the readout appears here", timeout_s=180)

    component = page.frame_locator('iframe[title*="streamlit_webrtc"]')
    component.get_by_role("button", name="START").click()

    # The readout (a fragment rerun every second) names each face's emotion and the frame rate.
    readout = page.locator(".st-key-webcam_readout")
    pattern = re.compile(rf"Face \d+\s+({'|'.join(map(re.escape, classes))}) \d+%.*?([\d.]+) fps", re.S)
    deadline = time.monotonic() + READOUT_TIMEOUT_S
    text = ""
    while not (match := pattern.search(text)):
        assert time.monotonic() < deadline, f"no face and emotion within {READOUT_TIMEOUT_S} s; readout: {text!r}"
        page.wait_for_timeout(250)
        text = readout.inner_text() if readout.count() else ""
    print(f"readout after {READOUT_TIMEOUT_S - (deadline - time.monotonic()):.1f} s: {text!r}")
    assert float(match.group(2)) > 0
    app.assert_no_exception()
    assert "No video has reached the server" not in app.text()

    # The emotion timeline (a fragment rerun every 3 s) charts one line per class.
    for _ in range(80):
        lines = [trace for chart in app.plotly_charts() for trace in chart if trace["name"] in classes]
        if len(lines) == len(classes) and len(lines[0]["x"]) >= 2:
            break
        page.wait_for_timeout(250)
    else:
        raise AssertionError(f"no emotion timeline within 20 s; charts: {app.plotly_charts()}")

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
