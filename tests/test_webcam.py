"""The webcam frame processor on generated frames: tracking, smoothing, timeline, timing, threads, y4m.

The page's own pieces (ICE servers, the stream watch, the timeline chart) are tested here too.
"""

from __future__ import annotations

import io
import itertools
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fertools.constants import FER2013_CLASSES
from fertools.faces import FilteredDetector, FirstFound, HaarFaceDetector
from fertools.recognize import FaceResult, Recognizer
from fertools.samples import sample_photo
from fertools.tracking import FaceTracker, box_iou
from fertools.webcam import (
    SHORT_RANGE_MIN_FACE,
    FrameProcessor,
    LiveReadout,
    WebcamSettings,
    demo_frame,
    write_y4m,
)
from ui.webcam_charts import followed_face, timeline_figure
from ui.webrtc import ENDED_EARLY, StreamWatch, media_stream_constraints, parse_ice_servers

CLASSES = FER2013_CLASSES
BLANK = np.full((480, 640, 3), 128, dtype=np.uint8)


def one_hot(label: str, weight: float = 1.0) -> np.ndarray:
    """Probabilities with ``weight`` on ``label`` and the rest spread evenly."""
    row = np.full(len(CLASSES), (1.0 - weight) / (len(CLASSES) - 1))
    row[CLASSES.index(label)] = weight
    return row


class ScriptedRecognizer:
    """Stands in for a Recognizer: returns the next scripted list of (box, probabilities) per frame."""

    def __init__(self, script, classes=CLASSES, fail: bool = False):
        self.classes = tuple(classes)
        self.detector = HaarFaceDetector()
        self._script = iter(script)
        self.fail = fail
        self.detectors: list = []

    input_size = 48

    def classify(self, faces):
        self.warmed_up = True
        return np.full((len(faces), len(self.classes)), 1 / len(self.classes))

    def analyze(self, frame, max_faces=16, detector=None, timings=None):
        self.detectors.append(detector)
        if self.fail:
            raise RuntimeError("model exploded")
        faces = next(self._script)
        return [
            FaceResult(box, self.classes[int(np.argmax(p))], dict(zip(self.classes, map(float, p))),
                       np.zeros((48, 48), np.uint8))
            for box, p in faces
        ]  # fmt: skip


class StepClock:
    """A clock that moves ``step`` seconds every time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> Recognizer:
    """The (untrained, deterministic) tiny model behind the real Haar detector."""
    from fertools import models
    from fertools.constants import INPUT_SHAPE
    from fertools.modelcard import ModelCard, save_model_dir

    model = models.create("default", num_classes=len(CLASSES))
    card = ModelCard(
        name="tiny", architecture="default", classes=list(CLASSES), input_shape=list(INPUT_SHAPE)
    )
    folder = save_model_dir(model, card, tmp_path_factory.mktemp("models") / "tiny")
    return Recognizer.load(folder)


# --- pieces -----------------------------------------------------------------------------


def test_settings_are_validated():
    with pytest.raises(ValueError, match="smoothing"):
        WebcamSettings(smoothing=1.0)
    with pytest.raises(ValueError, match="min_face"):
        WebcamSettings(min_face=60)  # a share of the frame now, not pixels
    with pytest.raises(ValueError, match="detector must be one of"):
        WebcamSettings(detector="dlib")


def test_smoothing_is_an_exponential_moving_average_per_face():
    box = (100, 100, 120, 120)
    script = [[(box, one_hot("happy"))], [(box, one_hot("sad"))], [(box, one_hot("sad"))]]
    processor = FrameProcessor(
        ScriptedRecognizer(script),
        WebcamSettings(smoothing=0.75, mirror=False),
        tracker=FaceTracker(confirm=1),
    )
    processor.process(BLANK)
    first = processor.readout().faces[0]
    assert (first.face_id, first.label, first.confidence) == (1, "happy", pytest.approx(1.0))
    processor.process(BLANK)
    second = processor.readout().faces[0]
    # 0.75 of the past, 0.25 of the new frame: still happy after one sad frame.
    assert second.label == "happy"
    assert second.probabilities["happy"] == pytest.approx(0.75)
    assert second.probabilities["sad"] == pytest.approx(0.25)
    processor.process(BLANK)
    third = processor.readout().faces[0]
    assert third.probabilities["sad"] == pytest.approx(0.75 * 0.25 + 0.25 * 1.0)
    assert sum(third.probabilities.values()) == pytest.approx(1.0)


def test_no_smoothing_follows_every_frame():
    box = (100, 100, 120, 120)
    script = [[(box, one_hot("happy"))], [(box, one_hot("sad"))]]
    processor = FrameProcessor(ScriptedRecognizer(script), WebcamSettings(smoothing=0.0))
    processor.process(BLANK)
    processor.process(BLANK)
    assert processor.readout().faces[0].label == "sad"


def test_a_flickering_face_keeps_its_id_and_a_one_frame_false_face_never_shows():
    face, glitch = (200, 150, 60, 60), (500, 300, 40, 40)
    frames = [[face], [face, glitch], [], [], [face], [], [face]] * 6
    script = ([(box, one_hot("happy" if box == face else "angry")) for box in boxes] for boxes in frames)
    clock = StepClock(0.0625)  # a frame every 0.125 s: the misses last at most 0.25 s
    processor = FrameProcessor(ScriptedRecognizer(script), timeline_interval=0.0, clock=clock)
    shown = set()
    for _ in frames:
        processor.process(BLANK)
        shown |= {(face.face_id, face.box) for face in processor.readout().faces}
    assert shown == {(1, face)}
    assert set(processor.timeline_frame()["face"]) == {1}


def test_fps_and_ms_per_frame_follow_the_clock():
    box = (100, 100, 120, 120)
    clock = StepClock(0.02)  # read twice per frame: 20 ms of work, one frame every 40 ms
    processor = FrameProcessor(ScriptedRecognizer(itertools.repeat([(box, one_hot("fear"))])), clock=clock)
    assert processor.readout() == LiveReadout()
    for _ in range(10):
        processor.process(BLANK)
    readout = processor.readout()
    assert readout.frames == 10
    assert readout.fps == pytest.approx(25.0)
    assert readout.ms_per_frame == pytest.approx(20.0)
    processor.reset()
    assert processor.readout().frames == 0 and processor.timeline() == []


def test_timing_forgets_frames_older_than_the_window():
    box = (100, 100, 120, 120)
    # A slow first frame (model warm-up: 1.5 s), then 30 frames of 10 ms every 100 ms.
    reads = [0.0, 1.5] + [t for i in range(30) for t in (2.0 + 0.1 * i, 2.0 + 0.1 * i + 0.01)]
    clock = iter(reads).__next__
    processor = FrameProcessor(ScriptedRecognizer(itertools.repeat([(box, one_hot("fear"))])), clock=clock)
    for _ in range(31):
        processor.process(BLANK)
    readout = processor.readout()
    assert readout.ms_per_frame == pytest.approx(10.0)
    assert readout.fps == pytest.approx(10.0)


def test_a_very_slow_stream_still_shows_its_rate():
    box = (100, 100, 120, 120)
    clock = iter([0.0, 1.0, 5.0, 8.0, 10.0, 13.0]).__next__  # 1 s, 3 s, 3 s of work, a frame every 5 s
    processor = FrameProcessor(ScriptedRecognizer(itertools.repeat([(box, one_hot("fear"))])), clock=clock)
    for _ in range(3):
        processor.process(BLANK)
    readout = processor.readout()
    assert readout.fps == pytest.approx(0.2)
    assert readout.ms_per_frame == pytest.approx(3000.0)


def test_timeline_rows_and_csv():
    boxes = [(0, 0, 100, 100), (300, 0, 100, 100)]
    script = itertools.repeat([(boxes[0], one_hot("happy", 0.9)), (boxes[1], one_hot("angry", 0.8))])
    clock = StepClock(0.0625)  # one frame every 0.125 s (binary fractions: exact sums)
    processor = FrameProcessor(
        ScriptedRecognizer(script), timeline_interval=0.25, clock=clock, tracker=FaceTracker(confirm=1)
    )
    for _ in range(10):
        processor.process(BLANK)
    rows = processor.timeline()
    # Every other frame is logged (0.25 s apart), for both faces.
    assert len(rows) == 10
    assert [row.face_id for row in rows[:4]] == [1, 2, 1, 2]
    assert rows[0].seconds == 0.0 and rows[2].seconds == 0.25
    table = pd.read_csv(io.StringIO(processor.timeline_csv()))
    assert list(table.columns) == ["seconds", "face", "label", "confidence", *CLASSES]
    assert set(table["label"]) == {"happy", "angry"}
    assert table.loc[table["face"] == 1, "confidence"].iloc[-1] == pytest.approx(0.9)
    np.testing.assert_allclose(table[list(CLASSES)].sum(axis=1), 1.0, atol=1e-3)


def test_timeline_is_bounded():
    script = itertools.repeat([((0, 0, 100, 100), one_hot("sad"))])
    processor = FrameProcessor(ScriptedRecognizer(script), timeline_interval=0.0, timeline_size=5)
    for _ in range(12):
        processor.process(BLANK)
    assert len(processor.timeline()) == 5
    assert processor.timeline_frame().shape == (5, 4 + len(CLASSES))


def test_empty_timeline_csv_has_a_header():
    processor = FrameProcessor(ScriptedRecognizer([]))
    assert processor.timeline_csv().strip() == ",".join(["seconds", "face", "label", "confidence", *CLASSES])


def test_a_failing_model_does_not_end_the_stream():
    processor = FrameProcessor(ScriptedRecognizer([], fail=True), WebcamSettings(mirror=False))
    out = processor.process(BLANK)
    assert out is BLANK
    readout = processor.readout()
    assert readout.frames == 1 and readout.faces == ()
    # One sentence for the page; the library's own message (paths, versions) stays in the server's log.
    assert readout.error == "a frame of 640x480 pixels failed (RuntimeError)"


def test_the_model_is_warmed_up_before_the_first_frame():
    stub = ScriptedRecognizer([])
    FrameProcessor(stub)
    assert stub.warmed_up and stub.detectors == []


def test_configure_rebuilds_the_detector_only_for_a_new_min_face_or_detector():
    stub = ScriptedRecognizer(itertools.repeat([]))
    processor = FrameProcessor(stub, WebcamSettings(min_face=0.1))
    processor.process(BLANK)
    processor.configure(WebcamSettings(min_face=0.1, smoothing=0.1, bars=False))
    processor.process(BLANK)
    processor.configure(WebcamSettings(min_face=0.25))
    processor.process(BLANK)
    processor.configure(WebcamSettings(min_face=0.25, detector="haar"))
    processor.process(BLANK)
    first, second, third, fourth = stub.detectors
    assert first is second
    # Faces under a fifth of the frame may need BlazeFace's full-range model: the short one first,
    # for the faces it finds well, the full one on frames without such a face. Larger minimum
    # faces: the short one alone.
    assert isinstance(first, FirstFound)
    assert [(tier.detector.model, tier.min_side) for tier in first.detectors] == [
        ("short", SHORT_RANGE_MIN_FACE),
        ("full", 0.1),
    ]
    assert isinstance(third, FilteredDetector) and third.detector.model == "short"
    assert third.min_side == 0.25
    assert isinstance(fourth.detector, HaarFaceDetector) and fourth.min_side == 0.25


def test_switching_models_restarts_tracks_and_timeline_when_classes_change():
    box = (0, 0, 100, 100)
    processor = FrameProcessor(
        ScriptedRecognizer(itertools.repeat([(box, one_hot("happy"))])), tracker=FaceTracker(confirm=1)
    )
    processor.process(BLANK)
    assert processor.timeline()
    three = ("a", "b", "c")
    processor.set_recognizer(ScriptedRecognizer(itertools.repeat([(box, np.array([0.1, 0.2, 0.7]))]), three))
    assert processor.timeline() == [] and processor.classes == three
    processor.process(BLANK)
    face = processor.readout().faces[0]
    assert (face.face_id, face.label) == (1, "c")
    assert list(processor.timeline_frame().columns)[4:] == list(three)


def test_process_on_one_thread_while_another_reads():
    box = (100, 100, 120, 120)
    labels = itertools.cycle(["happy", "sad", "angry"])
    script = (
        [(box, one_hot(next(labels))), ((400, 100, 120, 120), one_hot("fear"))] for _ in itertools.count()
    )
    processor = FrameProcessor(ScriptedRecognizer(script), timeline_interval=0.0, timeline_size=500)
    frames, errors = 300, []

    def worker():
        try:
            for _ in range(frames):
                processor.process(BLANK)
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    reads = 0
    while thread.is_alive() or reads < 10:
        readout = processor.readout()
        assert len(readout.faces) in (0, 2)
        table = processor.timeline_frame()
        assert list(table.columns)[:4] == ["seconds", "face", "label", "confidence"]
        processor.configure(WebcamSettings(smoothing=0.5 if reads % 2 else 0.2, bars=bool(reads % 2)))
        reads += 1
    thread.join()
    assert not errors
    assert processor.readout().frames == frames
    assert {face.face_id for face in processor.readout().faces} == {1, 2}
    assert len(processor.timeline()) == 500


# --- the real detector and model ----------------------------------------------------------


def test_demo_frames_are_found_by_the_detector():
    detector = HaarFaceDetector(min_face=60)
    for emotion in CLASSES:
        boxes = detector.detect(demo_frame(emotion, seed=0))
        assert len(boxes) == 1, emotion
        x, y, w, h = boxes[0]
        assert abs(x + w / 2 - 320) < 30 and abs(y + h / 2 - 240) < 30


def test_real_recognizer_finds_tracks_and_annotates(recognizer, make_face_frame):
    processor = FrameProcessor(recognizer, WebcamSettings(mirror=False, bars=True))
    frame = make_face_frame([(10, 140), (420, 140)], side=180)
    assert np.array_equal(processor.process(frame), frame)  # new faces: no id, no box yet
    assert processor.readout().faces == ()
    out = processor.process(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame)
    faces = processor.readout().faces
    assert len(faces) == 2
    ids = {face.face_id: face.box for face in faces}
    out = processor.process(make_face_frame([(20, 150), (410, 130)], side=180))
    assert {face.face_id for face in processor.readout().faces} == set(ids)
    for face in processor.readout().faces:
        assert box_iou(face.box, ids[face.face_id]) > 0.5
        assert face.label in CLASSES and 0 < face.confidence <= 1
        assert 0.5 < face.detection_score <= 1  # BlazeFace, the default, scores every face
    readout = processor.readout()
    assert min(readout.ms_detect, readout.ms_classify, readout.ms_draw) > 0
    assert readout.ms_detect + readout.ms_classify + readout.ms_draw <= readout.ms_per_frame


def test_mirror_flips_the_frame_before_detection(recognizer, make_face_frame):
    frame = make_face_frame([(20, 140)], side=200)  # face on the left
    plain = FrameProcessor(recognizer, WebcamSettings(mirror=False))
    mirrored = FrameProcessor(recognizer, WebcamSettings(mirror=True))
    for _ in range(2):  # a face is read out from its second frame on
        plain.process(frame)
        mirrored.process(frame)
    (x_plain, *_), (x_mirror, *_) = plain.readout().faces[0].box, mirrored.readout().faces[0].box
    assert x_plain < 200 < x_mirror


def test_min_face_hides_small_faces(recognizer, haar_face_frame):
    processor = FrameProcessor(recognizer, WebcamSettings(min_face=0.4))  # the face is 200 of 640 px
    processor.process(haar_face_frame)
    processor.process(haar_face_frame)
    assert processor.readout().faces == ()
    processor.configure(WebcamSettings(min_face=0.2))
    processor.process(haar_face_frame)
    processor.process(haar_face_frame)
    assert len(processor.readout().faces) == 1


@pytest.mark.parametrize("width", [640, 320])
def test_a_small_face_is_found_at_either_resolution_live_and_in_a_snapshot(recognizer, width):
    """The issue's case: a face of 76 px in 640x480, and the same scene when the browser sends 320x240."""
    # The portrait's face box is about 180 px wide (in its 300 px head): shrunk to about 76 px.
    portrait = sample_photo("happy", seed=1)
    small = cv2.resize(portrait, None, fx=0.42, fy=0.42, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), small[0, 0], np.uint8)
    frame[180 : 180 + small.shape[0], 240 : 240 + small.shape[1]] = small
    frame = cv2.resize(frame, (width, width * 3 // 4), interpolation=cv2.INTER_AREA)
    processor = FrameProcessor(recognizer, WebcamSettings(mirror=False))  # the default minimum face
    for _ in range(2):
        processor.process(frame)
    (face,) = processor.readout().faces
    assert 70 <= face.box[2] * 640 / width <= 85
    assert processor.readout().frame_size == (width, width * 3 // 4)
    _, snapshot_faces = processor.snapshot(frame)
    assert len(snapshot_faces) == 1
    assert box_iou(snapshot_faces[0].box, face.box) > 0.9  # one detector path for both


def test_write_y4m_round_trips_a_detectable_face(tmp_path: Path):
    frames = [demo_frame("happy"), demo_frame("surprise")]
    path = tmp_path / "face.y4m"
    assert write_y4m(path, frames) == 2
    data = path.read_bytes()
    header = b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n"
    frame_bytes = 640 * 480 * 3 // 2
    assert data.startswith(header)
    assert len(data) == len(header) + 2 * (len(b"FRAME\n") + frame_bytes)
    # Decode the second frame's planes back to BGR: the face is still there.
    start = len(header) + len(b"FRAME\n") + frame_bytes + len(b"FRAME\n")
    i420 = np.frombuffer(data[start : start + frame_bytes], np.uint8).reshape(480 * 3 // 2, 640)
    decoded = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    assert np.abs(decoded.astype(int) - frames[1].astype(int)).mean() < 3
    assert len(HaarFaceDetector().detect(decoded)) == 1


def test_write_y4m_rejects_bad_frames(tmp_path: Path):
    with pytest.raises(ValueError, match="at least one"):
        write_y4m(tmp_path / "a.y4m", [])
    with pytest.raises(ValueError, match="even"):
        write_y4m(tmp_path / "b.y4m", [np.zeros((11, 10, 3), np.uint8)])
    with pytest.raises(ValueError, match="all frames"):
        write_y4m(tmp_path / "c.y4m", [np.zeros((10, 10, 3), np.uint8), np.zeros((20, 10, 3), np.uint8)])


def test_snapshot_analyses_without_touching_the_live_readout(recognizer, haar_face_frame):
    processor = FrameProcessor(recognizer, WebcamSettings(mirror=False))
    annotated, faces = processor.snapshot(haar_face_frame)
    assert len(faces) == 1 and faces[0].label in CLASSES
    assert annotated.shape == haar_face_frame.shape and not np.array_equal(annotated, haar_face_frame)
    assert processor.readout() == LiveReadout() and processor.timeline() == []
    gray_annotated, gray_faces = processor.snapshot(haar_face_frame[:, :, 0])
    assert gray_annotated.shape == haar_face_frame.shape and len(gray_faces) == 1


# --- connection helpers and the chart -------------------------------------------------------


def test_parse_ice_servers_accepts_the_usual_shapes():
    assert parse_ice_servers(None) == [] and parse_ice_servers("  ") == []
    stun = [{"urls": ["stun:stun.example.org:3478"]}]
    assert parse_ice_servers('[{"urls": "stun:stun.example.org:3478"}]') == stun
    assert parse_ice_servers({"iceServers": [{"urls": "stun:stun.example.org:3478"}]}) == stun
    turn = parse_ice_servers(
        [{"urls": ["turn:t.example.org:3478?transport=tcp"], "username": "u", "credential": 7}]
    )
    assert turn == [{"urls": ["turn:t.example.org:3478?transport=tcp"], "username": "u", "credential": "7"}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"urls": "stun:x"}', "must be a list"),
        ("[1]", 'needs a "urls"'),
        ('[{"urls": "http://x"}]', "stun:, stuns:, turn: or turns:"),
        ('[{"urls": []}]', "every URL"),
    ],
)
def test_parse_ice_servers_explains_bad_values(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_ice_servers(value)


def test_stream_watch_tells_a_stuck_stream_from_a_slow_start():
    watch = StreamWatch(timeout_s=10)
    assert watch.update(False, 0, 0.0) is None
    assert watch.update(True, 0, 1.0) is None  # started
    assert watch.update(True, 0, 5.0) is None  # still connecting
    stuck = watch.update(True, 0, 12.0)
    assert "could not connect" in stuck and "within 10 s" in stuck
    assert watch.update(True, 0, 15.0) == stuck  # the same words while it lasts
    assert watch.update(True, 3, 13.0) is None  # frames arrived after all
    assert watch.update(False, 40, 20.0) is None  # a normal stop
    assert watch.update(True, 40, 30.0) is None
    assert watch.update(False, 40, 31.0) == ENDED_EARLY  # stopped before any frame
    assert watch.update(True, 40, 40.0) is None  # a new start clears it


def test_the_timeline_follows_the_face_the_readout_shows_first():
    table = pd.DataFrame({"seconds": [0.0, 0.1, 0.2, 0.3], "face": [2, 26, 2, 27]})
    assert followed_face(table, [26, 27]) == 26
    assert followed_face(table, [99, 27]) == 27  # no rows yet for 99
    assert followed_face(table, []) == 27  # nobody in view: the face seen last
    assert followed_face(table.iloc[:0], [1]) is None


def test_timeline_figure_plots_one_line_per_class():
    boxes = [(0, 0, 100, 100), (300, 0, 100, 100)]
    script = itertools.repeat([(boxes[0], one_hot("happy", 0.9)), (boxes[1], one_hot("angry", 0.8))])
    processor = FrameProcessor(
        ScriptedRecognizer(script), timeline_interval=0.0, tracker=FaceTracker(confirm=1)
    )
    for _ in range(4):
        processor.process(BLANK)
    table = processor.timeline_frame()
    figure = timeline_figure(table, face_id=2)
    assert [trace.name for trace in figure.data] == list(CLASSES)
    assert list(figure.data[CLASSES.index("angry")].y) == pytest.approx([0.8] * 4)
    assert figure.layout.title.text == "Face 2"
    assert len(timeline_figure(table).data[0].x) == 4  # default: the face with the most rows
    latest = table["seconds"].max()
    assert len(timeline_figure(table, 1, last_s=0.0).data[0].x) == (table["seconds"] == latest).sum() // 2
    assert len(timeline_figure(table.iloc[:0]).data) == len(CLASSES)  # empty is fine


def test_the_camera_is_asked_for_30_fps_on_a_laptop_and_15_on_a_hosted_server(monkeypatch):
    monkeypatch.delenv("FERLAB_HOSTED", raising=False)
    assert media_stream_constraints()["video"]["frameRate"] == {"ideal": 30}
    monkeypatch.setenv("FERLAB_HOSTED", "1")
    assert media_stream_constraints()["video"]["frameRate"] == {"ideal": 15}
    assert media_stream_constraints()["audio"] is False
