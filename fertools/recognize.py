"""From a frame to faces with emotions: detect, crop, classify in one batched call.

``Recognizer.analyze`` is what the Photo page, the Webcam page's frame
callback and ``python -m fertools predict`` call. Every face of a frame is
cropped by the shared preprocessing path and classified in one call to an
inference engine (:mod:`fertools.engine`): by default the model converted to
LiteRT with int8 weights, a few tenths of a millisecond per face on a CPU;
``engine="keras"`` calls the Keras model through a compiled ``tf.function``.
Never ``model.predict``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np

from fertools.constants import DEFAULT_MODEL_DIR
from fertools.engine import make_engine, mirror_average
from fertools.faces import Box, FaceDetector, HaarFaceDetector
from fertools.modelcard import MODEL_FILE, ModelCard, load_model_dir
from fertools.preprocess import crop_face, to_face


@dataclass(frozen=True)
class FaceResult:
    """One face: its box in the frame, the top label, every class's probability, and the model input."""

    box: Box
    label: str
    probabilities: dict[str, float]
    face: np.ndarray = field(repr=False, compare=False)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "probabilities": self.probabilities}


class Recognizer:
    """A model plus its card plus a face detector.

    Safe to share between threads (the Streamlit sessions of a hosted app):
    it holds no per-call state, the engine keeps one interpreter per thread and
    the detector one cascade per thread. ``model`` stays available (Grad-CAM
    needs its gradients); ``engine`` and ``precision`` choose how faces are
    classified (see :func:`fertools.engine.make_engine`).

    ``tta`` averages each face with its mirror image. It doubles the model
    time, so by default it is on where that stays within the 2 ms per-face
    budget, with the LiteRT engine (about 0.3 ms a pass here), and off with
    the slower Keras engine.
    """

    def __init__(
        self,
        model: keras.Model,
        card: ModelCard,
        detector: FaceDetector | None = None,
        margin: float = 0.1,
        tta: bool | None = None,
        engine: str = "litert",
        precision: str = "int8",
        model_file: Path | None = None,
    ):
        self.model, self.card = model, card
        self.classes: tuple[str, ...] = tuple(card.classes)
        self.input_size = int(card.input_shape[0])
        self.detector = detector or HaarFaceDetector()
        self.margin = margin
        self.engine = make_engine(model, engine, precision, model_file)
        self.tta = self.engine.name == "litert" if tta is None else tta

    @classmethod
    def load(cls, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR, **kwargs) -> Recognizer:
        """Load a model folder (``model.keras`` + ``card.json``); ``ModelLoadError`` if it cannot be."""
        model, card = load_model_dir(Path(model_dir))
        return cls(model, card, model_file=Path(model_dir) / MODEL_FILE, **kwargs)

    def classify(self, faces: np.ndarray, tta: bool | None = None) -> np.ndarray:
        """Probabilities (N, classes) for ``uint8`` faces (N, size, size), in card class order.

        ``tta`` (default: the recognizer's setting) averages each face with its mirror image.
        """
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        if self.tta if tta is None else tta:
            return mirror_average(self.engine, faces)
        return self.engine(faces)

    def _results(self, boxes: list[Box], faces: np.ndarray, tta: bool | None) -> list[FaceResult]:
        probabilities = self.classify(faces, tta)
        results = []
        for box, face, row in zip(boxes, faces, probabilities):
            scores = {name: float(p) for name, p in zip(self.classes, row)}
            results.append(FaceResult(box, self.classes[int(row.argmax())], scores, face))
        return results

    def analyze(
        self,
        frame: np.ndarray,
        max_faces: int = 16,
        detector: FaceDetector | None = None,
        tta: bool | None = None,
    ) -> list[FaceResult]:
        """Every face in a BGR (or gray) ``uint8`` frame, largest first.

        ``detector`` overrides the shared one for this call (a per-session minimum face size);
        ``tta`` the recognizer's mirror averaging.
        """
        boxes = (detector or self.detector).detect(frame)[:max_faces]
        if not boxes:
            return []
        faces = np.stack([crop_face(frame, box, self.margin, self.input_size) for box in boxes])
        return self._results(boxes, faces, tta)

    def analyze_face(self, image: np.ndarray, tta: bool | None = None) -> FaceResult:
        """Treat the whole image as one face crop (for images that already are a face)."""
        face = to_face(image, self.input_size)
        height, width = image.shape[:2]
        return self._results([(0, 0, width, height)], face[None], tta)[0]


#: Colours (BGR) per class for boxes and bars; unknown classes get grey.
CLASS_COLOURS = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (0, 140, 255),
    "neutral": (180, 180, 180),
}


def draw_faces(frame: np.ndarray, faces: list[FaceResult], bars: bool = False) -> np.ndarray:
    """A copy of ``frame`` (BGR) with each face's box, label and confidence; optionally probability bars."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    scale = max(0.4, min(1.2, out.shape[1] / 900))
    thickness = max(1, int(round(2 * scale)))
    for face in faces:
        x, y, w, h = face.box
        colour = CLASS_COLOURS.get(face.label, (200, 200, 200))
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        text = f"{face.label} {face.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y - th - base - 4)
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(
            out,
            text,
            (x + 2, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
        if bars:
            _draw_bars(out, face, x + w + 4, y, scale)
    return out


def _draw_bars(out: np.ndarray, face: FaceResult, left: int, top: int, scale: float) -> None:
    row = int(14 * scale) + 2
    width = int(80 * scale)
    if left + width + 60 * scale > out.shape[1]:
        left = max(0, face.box[0] - width - int(60 * scale) - 4)
    for i, (name, p) in enumerate(face.probabilities.items()):
        y = top + i * row
        if y + row > out.shape[0]:
            break
        colour = CLASS_COLOURS.get(name, (200, 200, 200))
        cv2.rectangle(out, (left, y), (left + int(width * p), y + row - 3), colour, -1)
        cv2.putText(
            out,
            f"{name[:3]} {p:.2f}",
            (left + width + 2, y + row - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * scale / 0.6,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
