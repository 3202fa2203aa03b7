"""Live webcam recognition: one frame processor per viewer, read safely from the page.

The Webcam page hands every camera frame to :meth:`FrameProcessor.process`
from streamlit-webrtc's worker thread, while the page's own thread reads
:meth:`FrameProcessor.readout` and :meth:`FrameProcessor.timeline_frame` to
draw the live readout. Everything the two threads share sits behind one lock
and is either replaced whole (immutable snapshots) or copied on read, so the
frame thread never waits on the page for longer than a list copy.

Per frame: optional mirror, :meth:`Recognizer.analyze` (the viewer's face
detector and minimum face size, then one batched model call), faces matched
to the previous frame's by box overlap (IoU) so each keeps an id, class
probabilities smoothed per face with an exponential moving average, then
:func:`draw_faces`. Nothing heavy is built per frame: the detector is rebuilt
only when the detector choice or the minimum face size changes, and the
model's first (tracing) call happens when the processor is built, not on the
first frame. The readout splits each frame's time into detect, classify and
draw.

For the page around it: :func:`parse_ice_servers` (STUN/TURN settings),
:class:`StreamWatch` (a stream that never delivers a frame) and
:func:`timeline_figure` (the Plotly timeline).

Frames are BGR ``uint8`` ``(H, W, 3)`` (see :mod:`fertools.constants`).
:func:`write_y4m` and :func:`demo_frame` make fake-camera videos from synthetic
faces for browser tests (Chromium's ``--use-file-for-fake-video-capture``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fertools import synthetic
from fertools.faces import DEFAULT_DETECTOR, DETECTORS, Box, FaceDetector, usable_detector
from fertools.recognize import CLASS_COLOURS, FaceResult, Recognizer, draw_faces


@dataclass(frozen=True)
class WebcamSettings:
    """What a viewer can change while frames flow."""

    min_face: int = 60  # smallest face side in frame pixels; bigger is faster and ignores the background
    smoothing: float = 0.6  # weight of the past in the moving average: 0 = raw frames, 0.9 = very calm
    bars: bool = True  # draw every class's probability beside each face
    mirror: bool = True  # flip left-right first, so the picture moves like a mirror
    detector: str = DEFAULT_DETECTOR  # a name from fertools.faces.DETECTORS

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if not 12 <= self.min_face <= 2000:
            raise ValueError(f"min_face must be between 12 and 2000 pixels, got {self.min_face}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


class FaceReadout(NamedTuple):
    """One tracked face in the latest frame, with smoothed probabilities (card class order)."""

    face_id: int
    box: Box
    label: str
    confidence: float
    probabilities: dict[str, float]
    detection_score: float | None = None  # the detector's confidence in this frame; None without scores


@dataclass(frozen=True)
class LiveReadout:
    """A snapshot of the stream: faces in the latest frame, speed, and the last error if any."""

    faces: tuple[FaceReadout, ...] = ()
    fps: float = 0.0  # frames processed per second, over the last ``TIMING_WINDOW_S`` seconds
    ms_per_frame: float = 0.0  # mean time spent on a frame, over the same frames
    # Of which (same frames; detect and classify as Recognizer.analyze measures them):
    ms_detect: float = 0.0  # finding faces
    ms_classify: float = 0.0  # cropping and classifying them
    ms_draw: float = 0.0  # drawing the annotations
    frames: int = 0  # frames processed since the processor was built or reset
    last_frame_at: float | None = None  # processor clock at the latest frame
    error: str | None = None  # why the latest frame could not be analysed; None when it was


class TimelineRow(NamedTuple):
    """One sample of the emotion timeline: a face's smoothed probabilities at a moment."""

    seconds: float  # since the first frame after a reset
    face_id: int
    label: str
    confidence: float
    probabilities: tuple[float, ...]  # in the classes' order


#: Frames per second and milliseconds per frame are measured over this many recent seconds
#: (or the last two frames, when they are further apart).
TIMING_WINDOW_S = 2.0


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes, in [0, 1]."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = min(ax + aw, bx + bw) - max(ax, bx)
    height = min(ay + ah, by + bh) - max(ay, by)
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    return overlap / (aw * ah + bw * bh - overlap)


@dataclass
class _Track:
    face_id: int
    box: Box
    probabilities: np.ndarray
    missed: int = 0
    logged_at: float = float("-inf")


class FaceTracker:
    """Gives each face a stable id across frames and smooths its probabilities.

    Faces are matched to the previous frame's greedily, highest box IoU first;
    a match needs at least ``min_iou``. A face missing for up to ``max_missed``
    frames keeps its id and average (the detector blinks now and then).
    Not thread-safe: :class:`FrameProcessor` guards it.
    """

    def __init__(self, min_iou: float = 0.3, max_missed: int = 5):
        self.min_iou, self.max_missed = min_iou, max_missed
        self.tracks: list[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks, self._next_id = [], 1

    def update(self, boxes: Sequence[Box], probabilities: np.ndarray, smoothing: float) -> list[_Track]:
        """Match ``boxes`` (with per-box ``probabilities`` (N, C)) to tracks; the tracks seen now, in box order.

        A matched track's probabilities become ``smoothing * old + (1 - smoothing) * new``;
        a new face starts from its raw probabilities.
        """
        pairs = sorted(
            (
                (box_iou(box, track.box), i, j)
                for i, box in enumerate(boxes)
                for j, track in enumerate(self.tracks)
            ),
            reverse=True,
        )
        matched: dict[int, _Track] = {}
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou < self.min_iou:
                break
            if i in matched or j in used:
                continue
            matched[i] = self.tracks[j]
            used.add(j)

        seen = []
        for i, box in enumerate(boxes):
            row = np.asarray(probabilities[i], dtype=np.float64)
            track = matched.get(i)
            if track is None:
                track = _Track(self._next_id, tuple(box), row.copy())
                self._next_id += 1
                self.tracks.append(track)
            else:
                track.box, track.missed = tuple(box), 0
                track.probabilities = smoothing * track.probabilities + (1.0 - smoothing) * row
            seen.append(track)
        seen_ids = {track.face_id for track in seen}
        for track in self.tracks:
            if track.face_id not in seen_ids:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        return seen


class FrameProcessor:
    """Per-viewer live recognition: ``process`` on the frame thread, ``readout`` anywhere.

    Build one per session (not per frame) and capture it in the frame callback.
    ``process`` is meant to be called from one thread at a time (streamlit-webrtc's
    worker); every other method may be called from any thread while it runs.

    ``timeline_interval`` is the least time between two timeline rows of one
    face (a 15 fps stream would otherwise fill it with near-copies);
    ``timeline_size`` bounds the rows kept, oldest dropped first. ``clock``
    (seconds) is injectable for tests.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        settings: WebcamSettings | None = None,
        *,
        timeline_interval: float = 0.2,
        timeline_size: int = 5000,
        clock: Callable[[], float] = time.perf_counter,
    ):
        _warm_up(recognizer)
        self._lock = threading.Lock()
        self._clock = clock
        self.timeline_interval = timeline_interval
        self._recognizer = recognizer
        self._settings = settings or WebcamSettings()
        self._detector = self._build_detector(self._settings)
        self._tracker = FaceTracker()
        self._timeline: deque[TimelineRow] = deque(maxlen=timeline_size)
        # (start, seconds spent, of which detect, classify, draw) per recent frame
        self._timings: deque[tuple[float, float, float, float, float]] = deque()
        self._readout = LiveReadout()
        self._started_at: float | None = None
        # Bumped by every reset/model change, so a frame analysed before it cannot publish after it.
        self._generation = 0

    @staticmethod
    def _build_detector(settings: WebcamSettings) -> FaceDetector:
        # Missing BlazeFace files give the cascade, as the recognizer's own detector does.
        return usable_detector(settings.detector, min_face=settings.min_face)[0]

    # --- configuration (page thread) ---------------------------------------------------

    @property
    def settings(self) -> WebcamSettings:
        with self._lock:
            return self._settings

    @property
    def classes(self) -> tuple[str, ...]:
        with self._lock:
            return self._recognizer.classes

    def configure(self, settings: WebcamSettings) -> None:
        """Use new settings from the next frame on; the detector is rebuilt only if it or ``min_face`` changed."""
        with self._lock:
            if settings == self._settings:
                return
            old = self._settings
            rebuild = (settings.min_face, settings.detector) != (old.min_face, old.detector)
        # Outside the lock: loading a cascade or a model must not stall the frame thread.
        detector = self._build_detector(settings) if rebuild else None
        with self._lock:
            self._settings = settings
            if detector is not None:
                self._detector = detector

    def set_recognizer(self, recognizer: Recognizer) -> None:
        """Switch models; tracks restart, and the timeline too if the class names differ."""
        with self._lock:
            if recognizer is self._recognizer:
                return
        _warm_up(recognizer)
        with self._lock:
            same_classes = recognizer.classes == self._recognizer.classes
            self._recognizer = recognizer
            self._tracker.reset()
            self._generation += 1
            if not same_classes:
                self._timeline.clear()
                self._started_at = None

    def reset(self) -> None:
        """Forget faces, timeline and timings (a new recording)."""
        with self._lock:
            self._tracker.reset()
            self._timeline.clear()
            self._timings.clear()
            self._readout = LiveReadout()
            self._started_at = None
            self._generation += 1

    # --- the frame thread --------------------------------------------------------------

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Analyse one BGR ``uint8`` frame and return an annotated copy (mirrored if set).

        Never raises for a model or detector failure: the frame comes back
        unannotated and the reason is in ``readout().error``.
        """
        start = self._clock()
        with self._lock:
            settings, detector = self._settings, self._detector
            recognizer, generation = self._recognizer, self._generation
        if settings.mirror:
            frame = cv2.flip(frame, 1)
        spent: dict[str, float] = {}
        try:
            results = recognizer.analyze(frame, detector=detector, timings=spent)
        except Exception as error:  # noqa: BLE001 - a broken frame must not end the stream; the page shows why
            self._publish_error(start, generation, f"{type(error).__name__}: {error}")
            return frame
        classes = recognizer.classes
        probabilities = np.array(
            [[result.probabilities[name] for name in classes] for result in results], dtype=np.float64
        ).reshape(len(results), len(classes))

        with self._lock:
            if generation != self._generation:
                return frame
            tracks = self._tracker.update([r.box for r in results], probabilities, settings.smoothing)
            smoothed = [
                _readout_of(track, classes)._replace(detection_score=result.detection_score)
                for track, result in zip(tracks, results)
            ]
        shown = [
            FaceResult(face.box, face.label, face.probabilities, result.face, result.detection_score)
            for face, result in zip(smoothed, results)
        ]
        # The split is measured in real seconds, like analyze's; ``clock`` stays the frame clock.
        drawing = time.perf_counter()
        out = draw_faces(frame, shown, bars=settings.bars)
        draw_seconds = time.perf_counter() - drawing
        end = self._clock()

        with self._lock:
            if generation != self._generation:
                return out
            self._record_timing(
                start, end, spent.get("detect", 0.0), spent.get("classify", 0.0), draw_seconds
            )
            if self._started_at is None:
                self._started_at = start
            for track, face in zip(tracks, smoothed):
                if start - track.logged_at >= self.timeline_interval:
                    track.logged_at = start
                    row = tuple(float(p) for p in track.probabilities)
                    self._timeline.append(
                        TimelineRow(start - self._started_at, face.face_id, face.label, face.confidence, row)
                    )
            total, detect, classify, draw = 1000.0 * np.mean([row[1:] for row in self._timings], axis=0)
            self._readout = LiveReadout(
                faces=tuple(smoothed),
                fps=self._fps(),
                ms_per_frame=float(total),
                ms_detect=float(detect),
                ms_classify=float(classify),
                ms_draw=float(draw),
                frames=self._readout.frames + 1,
                last_frame_at=start,
            )
        return out

    def _record_timing(
        self, start: float, end: float, detect: float = 0.0, classify: float = 0.0, draw: float = 0.0
    ) -> None:
        self._timings.append((start, end - start, detect, classify, draw))
        # Keep two frames at least, so a stream slower than the window still shows its rate.
        while len(self._timings) > 2 and start - self._timings[0][0] > TIMING_WINDOW_S:
            self._timings.popleft()

    def _fps(self) -> float:
        first, last = self._timings[0][0], self._timings[-1][0]
        return (len(self._timings) - 1) / (last - first) if last > first else 0.0

    def _publish_error(self, start: float, generation: int, message: str) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._record_timing(start, self._clock())
            self._readout = dataclasses.replace(
                self._readout,
                faces=(),
                fps=self._fps(),
                frames=self._readout.frames + 1,
                last_frame_at=start,
                error=message,
            )

    # --- readers (any thread) ----------------------------------------------------------

    def readout(self) -> LiveReadout:
        """The latest snapshot (immutable; safe to keep)."""
        with self._lock:
            return self._readout

    def timeline(self) -> list[TimelineRow]:
        """A copy of the timeline rows, oldest first."""
        with self._lock:
            return list(self._timeline)

    def timeline_frame(self) -> pd.DataFrame:
        """The timeline as a table: ``seconds, face, label, confidence`` and one column per class."""
        with self._lock:
            rows, classes = list(self._timeline), self._recognizer.classes
        columns = ["seconds", "face", "label", "confidence", *classes]
        records = [(r.seconds, r.face_id, r.label, r.confidence, *r.probabilities) for r in rows]
        table = pd.DataFrame.from_records(records, columns=columns)
        return table.round({"seconds": 3, "confidence": 4, **{name: 4 for name in classes}})

    def timeline_csv(self) -> str:
        """:meth:`timeline_frame` as CSV text with a header row."""
        return self.timeline_frame().to_csv(index=False)

    def snapshot(self, image: np.ndarray) -> tuple[np.ndarray, list[FaceResult]]:
        """Analyse one still picture with the current settings: ``(annotated BGR copy, faces)``.

        For camera snapshots when live video is not possible; it leaves the
        live readout, tracks and timeline alone. Errors from the model propagate.
        """
        with self._lock:
            settings, detector, recognizer = self._settings, self._detector, self._recognizer
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if settings.mirror:
            image = cv2.flip(image, 1)
        faces = recognizer.analyze(image, detector=detector)
        return draw_faces(image, faces, bars=settings.bars), faces


def _warm_up(recognizer: Recognizer) -> None:
    # NOTE: the first model call traces a tf.function, which takes seconds (tens of seconds on
    # a busy CPU). streamlit-webrtc ends the stream when one frame takes over 10 s, so that
    # first call happens here, on the page's thread, never on the first video frame.
    recognizer.classify(np.zeros((1, recognizer.input_size, recognizer.input_size), dtype=np.uint8))


def _readout_of(track: _Track, classes: Sequence[str]) -> FaceReadout:
    best = int(np.argmax(track.probabilities))
    scores = {name: float(p) for name, p in zip(classes, track.probabilities)}
    return FaceReadout(track.face_id, track.box, classes[best], scores[classes[best]], scores)


# --- connection --------------------------------------------------------------------------


def parse_ice_servers(value: str | Sequence | dict | None) -> list[dict]:
    """ICE servers (STUN/TURN) for ``RTCConfiguration.iceServers`` from JSON text or parsed data.

    Accepts a list of servers or ``{"iceServers": [...]}``; each server is a
    mapping with ``urls`` (a URL or a list of them) and, for TURN, ``username``
    and ``credential``. ``None`` or empty text gives ``[]`` (enough on
    localhost, where no STUN server is needed). Raises ``ValueError`` with
    one sentence saying what is wrong.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"ICE servers are not valid JSON ({error.msg} at character {error.pos})."
            ) from None
    if isinstance(value, Mapping) and "iceServers" in value:
        value = value["iceServers"]
    if isinstance(value, Mapping) or not isinstance(value, Sequence) or isinstance(value, str):
        # ValueError, not TypeError: to the user this is one more bad setting.
        raise ValueError('ICE servers must be a list like [{"urls": "stun:stun.example.org:3478"}].')  # noqa: TRY004
    servers = []
    for index, server in enumerate(value):
        if not isinstance(server, Mapping) or "urls" not in server:
            raise ValueError(f'ICE server {index + 1} needs a "urls" entry.')
        urls = server["urls"]
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls or not all(isinstance(url, str) and url.split(":", 1)[0] in _ICE_SCHEMES for url in urls):
            raise ValueError(
                f"ICE server {index + 1}: every URL must start with stun:, stuns:, turn: or turns:."
            )
        entry = {"urls": urls}
        for name in ("username", "credential"):
            if name in server:
                entry[name] = str(server[name])
        servers.append(entry)
    return servers


_ICE_SCHEMES = ("stun", "stuns", "turn", "turns")

#: Seconds a started stream may go without a single frame before we call it stuck.
STREAM_TIMEOUT_S = 20.0

NO_FRAMES = (
    "No video has reached the server within {seconds:.0f} s of starting: the browser and the server "
    "could not connect. Across networks WebRTC needs a STUN/TURN server (set FERLAB_ICE_SERVERS "
    "or ice_servers in .streamlit/secrets.toml)."
)
ENDED_EARLY = (
    "The live stream ended before any video reached the server: camera access was refused, the "
    "camera is busy, or the connection failed (the message in the video box says which)."
)


@dataclass
class StreamWatch:
    """Tells a live stream that never delivers a frame from one that is just starting.

    The browser component only reports *playing* or *signalling*; whether
    frames flow is seen from the processor's frame count. Call :meth:`update`
    on every page run; keep one per session.
    """

    timeout_s: float = STREAM_TIMEOUT_S
    since: float | None = None  # when the current start was first seen
    frames_at_start: int = 0
    problem: str | None = None

    def update(self, active: bool, frames: int, now: float) -> str | None:
        """The current problem (one sentence) or None; ``active`` is playing or signalling."""
        if active:
            if self.since is None:
                self.since, self.frames_at_start, self.problem = now, frames, None
            elif frames > self.frames_at_start:
                self.problem = None
            elif now - self.since > self.timeout_s:
                # The timeout, not the time waited: the message must not change while it stands.
                self.problem = NO_FRAMES.format(seconds=self.timeout_s)
        elif self.since is not None:
            if frames == self.frames_at_start:
                self.problem = ENDED_EARLY
            self.since = None
        return self.problem


# --- the timeline chart -------------------------------------------------------------------


def timeline_figure(
    table: pd.DataFrame, face_id: int | None = None, last_s: float | None = None
) -> go.Figure:
    """A Plotly line chart of one face's smoothed class probabilities over time.

    ``table`` is :meth:`FrameProcessor.timeline_frame`'s; ``face_id`` defaults
    to the face with the most rows; ``last_s`` keeps only the latest seconds
    (a live chart redrawn every second stays small). Lines use the class
    colours of the video overlay.
    """
    classes = list(table.columns[4:])
    if face_id is None and len(table):
        face_id = int(table["face"].value_counts().idxmax())
    rows = table[table["face"] == face_id] if face_id is not None else table
    if last_s is not None and len(rows):
        rows = rows[rows["seconds"] >= rows["seconds"].max() - last_s]
    figure = go.Figure()
    for name in classes:
        blue, green, red = CLASS_COLOURS.get(name, (160, 160, 160))
        figure.add_trace(
            go.Scatter(
                x=rows["seconds"],
                y=rows[name],
                name=name,
                mode="lines",
                line={"color": f"rgb({red},{green},{blue})", "width": 2},
            )
        )
    figure.update_layout(
        title=f"Face {face_id}" if face_id is not None else None,
        xaxis_title="seconds",
        yaxis={"title": "probability (smoothed)", "range": [0, 1]},
        height=300,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


# --- fake cameras -----------------------------------------------------------------------
# Pose and appearance fields of FaceParams (everything that is not expression).
_LOOK_FIELDS = (
    "dx", "dy", "scale", "angle", "skin", "hair", "hair_volume", "background",
    "contrast", "light_x", "light_y", "noise",
)  # fmt: skip


def demo_frame(
    emotion: str = "neutral",
    seed: int = 0,
    side: int = 200,
    origin: tuple[int, int] | None = None,
    size: tuple[int, int] = (640, 480),
    background: int = 128,
) -> np.ndarray:
    """A BGR ``uint8`` frame of ``size`` (width, height) with one synthetic face the Haar detector finds.

    The face shows ``emotion`` (its prototype plus the jitter drawn from ``seed``)
    under the default pose and lighting, upscaled to ``side`` pixels and placed
    with its top-left corner at ``origin`` (default: centred). Randomly posed
    synthetic faces are found only about two times in three; with the default
    look nearly all are (every class, seeds 0-9, except surprise at seed 7).
    Raises ``ValueError`` for an unknown emotion or a face that does not fit.
    """
    width, height = size
    if origin is None:
        origin = ((width - side) // 2, (height - side) // 2)
    x, y = origin
    if x < 0 or y < 0 or x + side > width or y + side > height:
        raise ValueError(f"a {side} px face at {origin} does not fit in a {width}x{height} frame")
    rng = np.random.default_rng(seed)
    params = synthetic.expression_params(emotion, rng)
    default_look = {name: getattr(synthetic.FaceParams(), name) for name in _LOOK_FIELDS}
    face = synthetic.render_face(dataclasses.replace(params, **default_look), rng)
    frame = np.full((height, width, 3), background, dtype=np.uint8)
    frame[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)[
        ..., None
    ]
    return frame


def write_y4m(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 15) -> int:
    """Write BGR ``uint8`` frames (all one even size) as a YUV4MPEG2 4:2:0 video; returns the frame count.

    Chromium plays such a file as a camera with
    ``--use-file-for-fake-video-capture=<path>`` (and loops it). Raises
    ``ValueError`` for no frames, odd sizes or frames of different sizes.
    """
    count, shape = 0, None
    with open(path, "wb") as file:
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frames must be BGR uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
            if shape is None:
                shape = frame.shape
                height, width = shape[:2]
                if width % 2 or height % 2:
                    raise ValueError(f"4:2:0 video needs even sides, got {width}x{height}")
                file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
            elif frame.shape != shape:
                raise ValueError(f"all frames must be {shape}, got {frame.shape}")
            # OpenCV's I420 is exactly the Y plane, then U, then V (quarter size each).
            file.write(b"FRAME\n")
            file.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            count += 1
    if count == 0:
        raise ValueError("write_y4m needs at least one frame")
    return count
