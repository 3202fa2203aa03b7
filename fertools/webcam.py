"""Live webcam recognition: one frame processor per viewer, read safely from the page.

The Webcam page hands every camera frame to :meth:`FrameProcessor.process`
from streamlit-webrtc's worker thread, while the page's own thread reads
:meth:`FrameProcessor.readout` and :meth:`FrameProcessor.timeline_frame` to
draw the live readout. Everything the two threads share sits behind one lock
and is either replaced whole (immutable snapshots) or copied on read, so the
frame thread never waits on the page for longer than a list copy.

Per frame: optional mirror, :meth:`Recognizer.analyze` with the viewer's
detector (:func:`webcam_detector`: the minimum face size is a share of the
frame, so it means the same when the browser sends 320x240 instead of
640x480), faces followed across frames by :class:`fertools.tracking.FaceTracker`
(stable ids through detector flicker; a face gets an id once seen in two frames
in a row), class probabilities smoothed per tracked face with an exponential
moving average, then :func:`draw_faces`. Camera snapshots
(:meth:`FrameProcessor.snapshot`) go through the same detector and analysis,
without tracking. Nothing heavy is built per frame: the detector is rebuilt
only when the detector choice or the minimum face size changes, and the
model's first (tracing) call happens when the processor is built, not on the
first frame. The readout splits each frame's time into detect, classify and
draw.

Frames are BGR ``uint8`` ``(H, W, 3)`` (see :mod:`fertools.constants`).
:func:`write_y4m` and :func:`demo_frame` make fake-camera videos from synthetic
faces for browser tests (Chromium's ``--use-file-for-fake-video-capture``).
The page's own pieces (ICE servers, the stream watch, the timeline chart) live
in :mod:`ui.webcam_view`, :mod:`ui.webrtc` and :mod:`ui.webcam_charts`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd

from fertools import synthetic
from fertools.faces import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Box,
    DetectorUnavailableError,
    FaceDetector,
    FilteredDetector,
    FirstFound,
    make_detector,
    usable_detector,
)
from fertools.recognize import FaceResult, Recognizer, draw_faces
from fertools.tracking import FaceTracker, Track

log = logging.getLogger(__name__)

#: BlazeFace's short-range model finds faces from about a fifth of the frame's longest side up
#: (on the sample portraits: found at 20%, missed at 15%); below that the full-range model
#: (found down to 8%, about twice the time a frame) is used.
SHORT_RANGE_MIN_FACE = 0.2
#: The least face side, in frame pixels, either detector is asked to find; the minimum face
#: size setting then drops smaller faces relative to the frame.
SMALLEST_FACE_PX = 12


@dataclass(frozen=True)
class WebcamSettings:
    """What a viewer can change while frames flow."""

    # Smallest face side as a share of the frame's longest side: 0.1 is 64 px at 640x480 and
    # 32 px at 320x240, so the same face is found when the browser lowers the resolution.
    min_face: float = 0.1
    smoothing: float = 0.6  # weight of the past in the moving average: 0 = raw frames, 0.9 = very calm
    bars: bool = True  # draw every class's probability beside each face
    mirror: bool = True  # flip left-right first, so the picture moves like a mirror
    detector: str = DEFAULT_DETECTOR  # a name from fertools.faces.DETECTORS

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if not 0.03 <= self.min_face <= 0.9:
            raise ValueError(
                f"min_face must be between 0.03 and 0.9 of the frame's longest side, got {self.min_face}"
            )
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


def webcam_detector(settings: WebcamSettings) -> FaceDetector:
    """The detector for live frames and snapshots: faces of at least ``settings.min_face`` of the frame.

    BlazeFace runs its short-range model; when the minimum face is below what that model finds
    well (:data:`SHORT_RANGE_MIN_FACE`), frames where it finds no face that large go to the
    full-range model (:class:`~fertools.faces.FirstFound`): a face near the camera costs the short
    model's time, small faces the full model's (a frame with both gets the near face only).
    Missing BlazeFace files give the Haar cascade, as the recognizer's own detector does (the
    page says so).
    """
    if settings.detector == "blazeface" and settings.min_face < SHORT_RANGE_MIN_FACE:
        try:
            tiers = [
                make_detector("blazeface", model=m, min_face=SMALLEST_FACE_PX) for m in ("short", "full")
            ]
        except DetectorUnavailableError:
            pass  # the Haar cascade below, with the page's warning
        else:
            # The short model's faces count only where it is accurate; smaller faces (its boxes
            # there are a third too large) are left to the full-range model.
            short, full = tiers
            return FirstFound(
                (
                    FilteredDetector(short, min_side=SHORT_RANGE_MIN_FACE),
                    FilteredDetector(full, min_side=settings.min_face),
                )
            )
    detector, _ = usable_detector(settings.detector, min_face=SMALLEST_FACE_PX)
    return FilteredDetector(detector, min_side=settings.min_face)


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
    frame_size: tuple[int, int] | None = None  # (width, height) of the latest frame, as the browser sends it
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


class FrameProcessor:
    """Per-viewer live recognition: ``process`` on the frame thread, ``readout`` anywhere.

    Build one per session (not per frame) and capture it in the frame callback.
    ``process`` is meant to be called from one thread at a time (streamlit-webrtc's
    worker); every other method may be called from any thread while it runs.

    ``timeline_interval`` is the least time between two timeline rows of one
    face (a 15 fps stream would otherwise fill it with near-copies);
    ``timeline_size`` bounds the rows kept, oldest dropped first. ``clock``
    (seconds) is injectable for tests; the tracker's grace period runs on it.
    ``tracker`` defaults to a :class:`~fertools.tracking.FaceTracker` with its defaults.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        settings: WebcamSettings | None = None,
        *,
        timeline_interval: float = 0.2,
        timeline_size: int = 5000,
        clock: Callable[[], float] = time.perf_counter,
        tracker: FaceTracker | None = None,
    ):
        _warm_up(recognizer)
        self._lock = threading.Lock()
        self._clock = clock
        self.timeline_interval = timeline_interval
        self._recognizer = recognizer
        self._settings = settings or WebcamSettings()
        self._detector = webcam_detector(self._settings)
        self._tracker = tracker or FaceTracker()
        self._timeline: deque[TimelineRow] = deque(maxlen=timeline_size)
        # (start, seconds spent, of which detect, classify, draw) per recent frame
        self._timings: deque[tuple[float, float, float, float, float]] = deque()
        self._readout = LiveReadout()
        self._started_at: float | None = None
        # Bumped by every reset/model change, so a frame analysed before it cannot publish after it.
        self._generation = 0

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
        detector = webcam_detector(settings) if rebuild else None
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
        unannotated and the reason is in ``readout().error``. Faces are drawn and
        read out once their track is confirmed (seen in two frames in a row).
        """
        start = self._clock()
        with self._lock:
            settings, detector = self._settings, self._detector
            recognizer, generation = self._recognizer, self._generation
        frame = _upright(frame, settings)
        spent: dict[str, float] = {}
        try:
            results = recognizer.analyze(frame, detector=detector, timings=spent)
        except Exception as error:  # noqa: BLE001 - a broken frame must not end the stream; the page shows why
            # The page shows one sentence; the details (library messages, paths) stay in the server's log.
            log.exception("a webcam frame of %s could not be analysed", frame.shape)
            message = f"a frame of {frame.shape[1]}x{frame.shape[0]} pixels failed ({type(error).__name__})"
            self._publish_error(start, generation, message, frame)
            return frame
        classes = recognizer.classes

        with self._lock:
            if generation != self._generation:
                return frame
            tracks = self._tracker.update([result.box for result in results], start)
            tracked = []
            for track, result in zip(tracks, results):
                _smooth(track, result, classes, settings.smoothing)
                if track.face_id is not None:
                    tracked.append((track, _readout_of(track, classes, result.detection_score), result.face))
        shown = [
            FaceResult(face.box, face.label, face.probabilities, crop, face.detection_score)
            for _, face, crop in tracked
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
            for track, face, _ in tracked:
                if start - track.logged_at >= self.timeline_interval:
                    track.logged_at = start
                    row = tuple(float(p) for p in track.probabilities)
                    self._timeline.append(
                        TimelineRow(start - self._started_at, face.face_id, face.label, face.confidence, row)
                    )
            total, detect, classify, draw = 1000.0 * np.mean([row[1:] for row in self._timings], axis=0)
            self._readout = LiveReadout(
                faces=tuple(face for _, face, _ in tracked),
                fps=self._fps(),
                ms_per_frame=float(total),
                ms_detect=float(detect),
                ms_classify=float(classify),
                ms_draw=float(draw),
                frames=self._readout.frames + 1,
                frame_size=(frame.shape[1], frame.shape[0]),
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

    def _publish_error(self, start: float, generation: int, message: str, frame: np.ndarray) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._record_timing(start, self._clock())
            self._readout = dataclasses.replace(
                self._readout,
                faces=(),
                fps=self._fps(),
                frames=self._readout.frames + 1,
                frame_size=(frame.shape[1], frame.shape[0]),
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
        """Analyse one still picture as a live frame is: ``(annotated BGR copy, faces)``.

        For camera snapshots when live video is not possible: the same mirror,
        detector (minimum face size relative to the picture) and model as the
        stream, without tracking or smoothing; it leaves the live readout, tracks
        and timeline alone. Gray and BGRA pictures are accepted. Errors from the
        model propagate.
        """
        with self._lock:
            settings, detector, recognizer = self._settings, self._detector, self._recognizer
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        image = _upright(image, settings)
        faces = recognizer.analyze(image, detector=detector)
        return draw_faces(image, faces, bars=settings.bars), faces


def _upright(frame: np.ndarray, settings: WebcamSettings) -> np.ndarray:
    """The frame as the viewer sees it: mirrored when the setting says so."""
    return cv2.flip(frame, 1) if settings.mirror else frame


def _warm_up(recognizer: Recognizer) -> None:
    # NOTE: the first model call traces a tf.function, which takes seconds (tens of seconds on
    # a busy CPU). streamlit-webrtc ends the stream when one frame takes over 10 s, so that
    # first call happens here, on the page's thread, never on the first video frame.
    recognizer.classify(np.zeros((1, recognizer.input_size, recognizer.input_size), dtype=np.uint8))


def _smooth(track: Track, result: FaceResult, classes: Sequence[str], smoothing: float) -> None:
    """Fold this frame's probabilities into the track's moving average (a new track starts from them)."""
    row = np.array([result.probabilities[name] for name in classes], dtype=np.float64)
    if track.probabilities is None or len(track.probabilities) != len(row):
        track.probabilities = row
    else:
        track.probabilities = smoothing * track.probabilities + (1.0 - smoothing) * row


def _readout_of(track: Track, classes: Sequence[str], detection_score: float | None) -> FaceReadout:
    best = int(np.argmax(track.probabilities))
    scores = {name: float(p) for name, p in zip(classes, track.probabilities)}
    return FaceReadout(
        track.face_id, track.box, classes[best], scores[classes[best]], scores, detection_score
    )


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
    return synthetic.face_frame([(x, y, side)], faces=[face], background=background, size=size)


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
