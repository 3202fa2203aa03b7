"""AppTest smoke tests of the Webcam page, with webrtc_streamer replaced by a fake.

AppTest has no browser, so the real component can never connect; the fake
returns a context whose state the test picks. The video callback the page
hands over is still real and is exercised with an ``av.VideoFrame``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np
import pytest
import streamlit_webrtc
from streamlit.testing.v1 import AppTest

from fertools import synthetic
from fertools.modelcard import read_card
from fertools.webcam import demo_frame
from ui.model_notes import SYNTHETIC_MODEL
from ui.webrtc import ENDED_EARLY, FRAME_RATE, StreamWatch

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "5_Webcam.py")


class FakeState(NamedTuple):
    playing: bool
    signalling: bool


class FakeContext:
    def __init__(self, playing: bool, signalling: bool):
        self.state = FakeState(playing, signalling)
        self.video_processor = None


class FakeStreamer:
    """Records every call; ``playing``/``signalling`` decide the state it reports."""

    def __init__(self):
        self.playing = self.signalling = False
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> FakeContext:
        self.calls.append(kwargs)
        return FakeContext(self.playing, self.signalling)


@pytest.fixture
def streamer(monkeypatch) -> FakeStreamer:
    fake = FakeStreamer()
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake)
    monkeypatch.delenv("FERLAB_ICE_SERVERS", raising=False)
    return fake


@pytest.fixture
def app(tiny_model_dir, ferlab_dirs) -> AppTest:
    """The page, with the tiny test model installed as a finished run and selected."""
    model_dir = ferlab_dirs["runs"] / "tiny" / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["model_dir"] = str(model_dir)
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    parts += [w.value for w in at.warning] + [e.value for e in at.error]
    return "\n".join(parts)


def test_page_renders_with_controls_and_starts_the_streamer(app, streamer):
    app.run()
    assert not app.exception, app.exception
    for key in ("webcam_model", "webcam_min_face", "webcam_smoothing", "webcam_bars", "webcam_mirror"):
        assert app.get_by_key(key) is not None, key
    assert app.selectbox(key="webcam_model").value == "Run tiny"
    (call,) = streamer.calls
    assert call["key"] == "webcam"
    assert call["mode"] == streamlit_webrtc.WebRtcMode.SENDRECV
    # An ideal resolution: without one the browser may send 320x240, where faces are half the pixels.
    video = call["media_stream_constraints"]["video"]
    assert (video["width"], video["height"]) == ({"ideal": 640}, {"ideal": 480})
    assert video["frameRate"] == {"ideal": FRAME_RATE["local"]}
    assert call["rtc_configuration"] == {"iceServers": []}
    assert call["async_processing"] is True
    assert "Press **START**" in texts(app)
    assert not app.camera_input  # no fallback while nothing went wrong


def test_the_callback_annotates_frames_and_the_readout_shows_them(app, streamer):
    app.run()
    callback = streamer.calls[-1]["video_frame_callback"]
    frame = demo_frame("happy")
    for _ in range(3):
        out = callback(av.VideoFrame.from_ndarray(frame, format="bgr24"))
    image = out.to_ndarray(format="bgr24")
    assert image.shape == frame.shape and not np.array_equal(image, frame[:, ::-1])

    streamer.playing = True
    app.run()
    assert not app.exception, app.exception
    shown = texts(app)
    assert "Face 1:" in shown and "fps" in shown and "ms per frame" in shown
    assert "detect " in shown and "classify " in shown and "draw " in shown
    assert "sure this is a face" in shown  # BlazeFace's confidence
    label = app.metric[0].value.split()[0]
    assert label in app.session_state["webcam_processor"].classes
    assert app.get("plotly_chart")
    assert app.download_button(key="webcam_timeline_csv").proto.label == "Download timeline (CSV)"


def test_settings_reach_the_processor(app, streamer):
    app.run()
    assert app.session_state["webcam_processor"].settings.min_face == 0.1  # 10% of the frame
    app.slider(key="webcam_min_face").set_value(25)
    app.slider(key="webcam_smoothing").set_value(0.2)
    app.toggle(key="webcam_mirror").set_value(False)
    app.run()
    settings = app.session_state["webcam_processor"].settings
    assert (settings.min_face, settings.smoothing, settings.mirror, settings.bars) == (0.25, 0.2, False, True)
    assert settings.detector == "blazeface"
    app.selectbox(key="webcam_detector").set_value("haar").run()
    assert not app.exception, app.exception
    assert app.session_state["webcam_processor"].settings.detector == "haar"


def test_ice_servers_come_from_the_environment(app, streamer, monkeypatch):
    monkeypatch.setenv("FERLAB_ICE_SERVERS", '[{"urls": "stun:stun.example.org:3478"}]')
    app.run()
    assert streamer.calls[-1]["rtc_configuration"] == {
        "iceServers": [{"urls": ["stun:stun.example.org:3478"]}]
    }


def test_bad_ice_servers_are_reported_not_fatal(app, streamer, monkeypatch):
    monkeypatch.setenv("FERLAB_ICE_SERVERS", "[{nope")
    app.run()
    assert not app.exception
    assert "not valid JSON" in texts(app)
    assert streamer.calls[-1]["rtc_configuration"] == {"iceServers": []}


def _jpeg(frame: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buffer.tobytes()


def test_snapshot_mode_analyses_a_camera_picture(app, streamer):
    app.run()
    app.toggle(key="webcam_use_snapshots").set_value(True)
    app.run()
    assert not app.exception, app.exception
    assert len(streamer.calls) == 1  # the live component is gone
    app.camera_input(key="webcam_snapshot").set_value(("shot.jpg", _jpeg(demo_frame("sad")), "image/jpeg"))
    app.run()
    assert not app.exception, app.exception
    assert app.image, "the annotated snapshot"
    assert app.metric[0].label == "Face 1"
    assert app.dataframe


def test_snapshot_without_a_face_says_so(app, streamer):
    app.run()
    app.toggle(key="webcam_use_snapshots").set_value(True)
    app.run()
    blank = np.full((480, 640, 3), 90, np.uint8)
    app.camera_input(key="webcam_snapshot").set_value(("shot.jpg", _jpeg(blank), "image/jpeg"))
    app.run()
    assert any("No face found" in info.value for info in app.info)


def test_a_stream_that_ends_without_frames_offers_snapshots(app, streamer):
    app.run()
    streamer.signalling = True
    app.run()
    assert "Connecting" in texts(app)
    streamer.signalling = False
    app.run()
    assert not app.exception, app.exception
    assert ENDED_EARLY in texts(app)
    assert app.camera_input(key="webcam_snapshot") is not None


def test_a_stuck_connection_offers_snapshots(app, streamer):
    app.session_state["webcam_watch"] = StreamWatch(timeout_s=0.0)
    streamer.signalling = True
    app.run()
    app.run()
    assert "could not connect" in texts(app)
    assert app.camera_input(key="webcam_snapshot") is not None


def test_without_webrtc_the_page_falls_back_to_snapshots(app, monkeypatch):
    monkeypatch.setitem(sys.modules, "streamlit_webrtc", None)  # import fails
    app.run()
    assert not app.exception, app.exception
    assert "live video is unavailable" in texts(app)
    assert app.camera_input(key="webcam_snapshot") is not None


def chart_title(at: AppTest) -> str:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)["layout"]["title"]["text"]


def test_the_timeline_follows_the_face_the_readout_shows(app, streamer):
    app.run()
    app.toggle(key="webcam_mirror").set_value(False).run()
    callback = streamer.calls[-1]["video_frame_callback"]
    processor = app.session_state["webcam_processor"]
    both = synthetic.face_frame([(20, 140, 200), (420, 140, 200)])
    for _ in range(3):
        callback(av.VideoFrame.from_ndarray(both, format="bgr24"))
    ids = {face.face_id: face.box for face in processor.readout().faces}
    assert sorted(ids) == [1, 2]
    # Face 2 leaves; face 1 stays. A chart that defaulted to the newest id would stay on face 2.
    x, y, _, _ = ids[1]
    alone = synthetic.face_frame([(20, 140, 200) if x < 320 else (420, 140, 200)])
    for _ in range(3):
        callback(av.VideoFrame.from_ndarray(alone, format="bgr24"))
    assert [face.face_id for face in processor.readout().faces] == [1]

    streamer.playing = True
    app.run()
    assert not app.exception, app.exception
    assert app.metric[0].label == "Face 1"
    assert app.selectbox(key="webcam_timeline_face").value == 0  # "The face in view"
    assert chart_title(app) == "Face 1"
    app.selectbox(key="webcam_timeline_face").set_value(2).run()
    assert chart_title(app) == "Face 2"


def test_a_model_trained_on_synthetic_faces_is_flagged(app, streamer, ferlab_dirs):
    card_file = ferlab_dirs["runs"] / "tiny" / "model" / "card.json"
    card = json.loads(card_file.read_text())
    card["dataset"] = {"source": "builtin", "synthetic": True}
    card_file.write_text(json.dumps(card))
    assert read_card(card_file.parent).dataset["synthetic"]
    app.run()
    assert not app.exception, app.exception
    assert SYNTHETIC_MODEL in texts(app)


def test_the_engine_fallback_is_shown(app, streamer, engine_fallback):
    app.run()
    assert not app.exception, app.exception
    assert "could not be built" in texts(app)
    assert SYNTHETIC_MODEL not in texts(app)


def test_a_hosted_snapshot_counts_against_the_upload_quota(app, streamer, monkeypatch):
    monkeypatch.setenv("FERLAB_HOSTED", "1")
    monkeypatch.setenv("FERLAB_MAX_UPLOAD_MB", "1")
    app.run()
    app.toggle(key="webcam_use_snapshots").set_value(True)
    app.run()
    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    big = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()  # over 1 MB alone
    assert len(big) > 1 << 20
    app.camera_input(key="webcam_snapshot").set_value(("shot.jpg", big, "image/jpeg"))
    app.run()
    assert not app.exception, app.exception
    [error] = [e.value for e in app.error]
    assert error.startswith("The snapshot cannot be analysed: This upload would bring what you uploaded")
    assert "FERLAB_MAX_UPLOAD_MB=1" in error and not app.metric


def test_a_huge_flat_snapshot_is_shrunk_before_detection(app, streamer, monkeypatch):
    from fertools.webcam import FrameProcessor

    seen, snapshot = [], FrameProcessor.snapshot
    monkeypatch.setattr(
        FrameProcessor, "snapshot", lambda self, image: seen.append(image.shape) or snapshot(self, image)
    )
    app.run()
    app.toggle(key="webcam_use_snapshots").set_value(True)
    app.run()
    flat = cv2.imencode(".jpg", np.full((7000, 5000, 3), 90, np.uint8))[1].tobytes()  # a few hundred KB
    assert len(flat) < 1 << 20
    app.camera_input(key="webcam_snapshot").set_value(("shot.jpg", flat, "image/jpeg"))
    app.run()
    assert not app.exception, app.exception
    assert seen == [(1280, 914, 3)]  # decoded shrunk, like a photo, not as 105 MB of pixels
    assert any("No face found" in info.value for info in app.info)
