"""Face detection behind a small interface, with a bundled default that downloads nothing.

The default, :class:`HaarFaceDetector`, is OpenCV's frontal-face Haar cascade
shipped inside ``opencv-python-headless`` 4.x (``cv2.data``). It runs on a
downscaled, histogram-equalised grey copy of the frame, which is what keeps
webcam frames fast; boxes are mapped back to the full frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fertools.preprocess import to_gray

#: A face box in frame pixels: (x, y, width, height).
Box = tuple[int, int, int, int]


class FaceDetector(Protocol):
    """Anything that finds faces in a BGR ``uint8`` frame."""

    def detect(self, frame: np.ndarray) -> list[Box]: ...


class DetectorUnavailableError(RuntimeError):
    """The bundled cascade file is missing (e.g. opencv-python-headless 5.x)."""


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


#: Still photos are not real-time: search finer (OpenCV's 1.1 steps), smaller faces, more pixels.
PHOTO_DETECTOR_SETTINGS = {"min_face": 30, "scale_factor": 1.1, "max_side": 800}
_photo_detector: HaarFaceDetector | None = None


def photo_detector() -> HaarFaceDetector:
    """The shared detector for still photos (group pictures, small faces); safe across threads."""
    global _photo_detector
    if _photo_detector is None:
        _photo_detector = HaarFaceDetector(**PHOTO_DETECTOR_SETTINGS)
    return _photo_detector
