"""From a frame to faces with emotions: detect, crop, classify in one batched call.

``Recognizer.analyze`` is what the Photo page, the Webcam page's frame
callback and ``python -m fertools predict`` call. Faces are found by BlazeFace
(:mod:`fertools.blazeface`; the Haar cascade when its model package is
missing, or on request), every face is cropped by the shared preprocessing
path (:mod:`fertools.preprocess`) and all are classified in one call to an
inference engine (:mod:`fertools.engine`): by default the model converted to
LiteRT with int8 weights, a few tenths of a millisecond per face on a CPU;
``engine="keras"`` calls the Keras model through a compiled ``tf.function``.
Never ``model.predict``.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np

from fertools.constants import DEFAULT_MODEL_DIR
from fertools.engine import FACE_BUDGET_SECONDS, one_pass_seconds, usable_engine
from fertools.faces import DEFAULT_DETECTOR, Box, Detection, FaceDetector, find_faces, usable_detector
from fertools.modelcard import MODEL_FILE, ModelCard, load_model_dir
from fertools.preprocess import crop_aligned_face, crop_face, to_face
from fertools.views import average_views, resolve


@dataclass(frozen=True)
class FaceResult:
    """One face: its box in the frame, the top label, every class's probability, and the model input.

    ``detection_score`` is the detector's confidence that the box holds a face
    (None from a detector without scores, such as the Haar cascade).
    """

    box: Box
    label: str
    probabilities: dict[str, float]
    face: np.ndarray = field(repr=False, compare=False)
    detection_score: float | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "probabilities": self.probabilities}


#: What the Recognizer's ``fallback`` says when LiteRT could not be built: by default mirror
#: averaging is then off too (two Keras passes miss the per-face budget); ``ENGINE_FALLBACK`` when
#: the caller chose mirror averaging themselves.
ENGINE_FALLBACK_NO_TTA = (
    "The fast LiteRT engine could not be built for this model, so it runs on Keras, "
    "slower and without mirror averaging."
)
ENGINE_FALLBACK = "The fast LiteRT engine could not be built for this model, so it runs on Keras, slower."


class Recognizer:
    """A model plus its card plus a face detector.

    Safe to share between threads (the Streamlit sessions of a hosted app):
    it holds no per-call state, the engine and the detector keep one
    interpreter (or cascade) per thread. ``model`` stays available (Grad-CAM
    needs its gradients); ``engine`` and ``precision`` choose how faces are
    classified (see :func:`fertools.engine.make_engine`).

    ``detector`` defaults to BlazeFace's short-range model (webcam frames; pass
    :func:`fertools.faces.photo_detector` to :meth:`analyze` for photos). When
    its model files are missing it is the Haar cascade instead and
    ``detector_fallback`` says why in one sentence (None otherwise).

    ``margin`` and ``align`` default to the card's
    :class:`~fertools.modelcard.Preprocessing` (``face_margin``, ``align``), so
    faces are cropped the way the model's training faces were; pass them to
    override. ``align`` crops faces with eye keypoints (from BlazeFace) by
    :func:`~fertools.preprocess.crop_aligned_face`: eye line level, eyes and
    mouth where FER2013's are. Faces without keypoints (Haar) are cropped from
    their box with ``margin``.

    ``tta`` averages each face with its mirror image. It doubles the model
    time, so by default it is on where two passes stay within the 2 ms per-face
    budget, measured when the Recognizer is made (LiteRT took 0.3 ms a pass on
    one of this project's machines, 1.25 ms on another), and off with the
    slower Keras engine.

    ``fallback`` is one sentence for the user when the LiteRT engine was asked
    for but could not be built, so the model runs on Keras (slower, and by
    default without mirror averaging); None otherwise. The technical reason goes
    to a ``UserWarning`` for the logs.
    """

    def __init__(
        self,
        model: keras.Model,
        card: ModelCard,
        detector: FaceDetector | None = None,
        margin: float | None = None,
        tta: bool | None = None,
        engine: str = "litert",
        precision: str = "int8",
        model_file: Path | None = None,
        align: bool | None = None,
    ):
        self.model, self.card = model, card
        self.classes: tuple[str, ...] = tuple(card.classes)
        self.input_size = int(card.input_shape[0])
        self.detector_fallback: str | None = None
        if detector is None:
            detector, self.detector_fallback = usable_detector(DEFAULT_DETECTOR)
        self.detector = detector
        preprocessing = card.preprocessing
        self.margin = preprocessing.face_margin if margin is None else margin
        self.align = preprocessing.align if align is None else align
        self.engine, engine_error = usable_engine(model, engine, precision, model_file)
        asked_for_tta = tta
        if tta is None:
            # Measured here, not assumed: two LiteRT passes took 0.6 ms on one 2-core machine
            # of this project and 2.5 ms on another.
            tta = self.engine.name == "litert" and (
                2 * one_pass_seconds(self.engine, self.input_size) <= FACE_BUDGET_SECONDS
            )
        self.tta = tta
        self.fallback: str | None = None
        if engine_error is not None:
            warnings.warn(f"LiteRT conversion failed, using the Keras engine: {engine_error}", stacklevel=2)
            self.fallback = ENGINE_FALLBACK_NO_TTA if asked_for_tta is None else ENGINE_FALLBACK

    @classmethod
    def load(cls, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR, **kwargs) -> Recognizer:
        """Load a model folder (``model.keras`` + ``card.json``); ``ModelLoadError`` if it cannot be."""
        model, card = load_model_dir(Path(model_dir))
        return cls(model, card, model_file=Path(model_dir) / MODEL_FILE, **kwargs)

    def classify(self, faces: np.ndarray, tta: bool | None = None, views: str | None = None) -> np.ndarray:
        """Probabilities (N, classes) for ``uint8`` faces (N, size, size), in card class order.

        ``tta`` (default: the recognizer's setting) averages each face with its mirror image;
        ``views`` (one of :data:`fertools.views.VIEWS`), when given, chooses the views instead
        (``"ten_crop"`` for still images).
        """
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return average_views(self.engine, faces, resolve(views, self.tta if tta is None else tta))

    def _results(
        self, detections: list[Detection], faces: np.ndarray, tta: bool | None, views: str | None = None
    ) -> list[FaceResult]:
        probabilities = self.classify(faces, tta, views)
        results = []
        for detection, face, row in zip(detections, faces, probabilities):
            scores = {name: float(p) for name, p in zip(self.classes, row)}
            label = self.classes[int(row.argmax())]
            results.append(FaceResult(detection.box, label, scores, face, detection.score))
        return results

    def crop(self, frame: np.ndarray, detection: Detection, align: bool | None = None) -> np.ndarray:
        """The ``uint8`` (size, size) model input for one detected face of ``frame``.

        Aligned on the eyes and mouth when ``align`` (default: the recognizer's
        setting) and the detection has keypoints; else the box with ``margin``.
        """
        if (self.align if align is None else align) and detection.keypoints is not None:
            return crop_aligned_face(
                frame,
                detection.keypoint("right_eye"),
                detection.keypoint("left_eye"),
                detection.keypoint("mouth"),
                self.input_size,
            )
        return crop_face(frame, detection.box, self.margin, self.input_size)

    def analyze(
        self,
        frame: np.ndarray,
        max_faces: int = 16,
        detector: FaceDetector | None = None,
        tta: bool | None = None,
        timings: dict[str, float] | None = None,
        views: str | None = None,
    ) -> list[FaceResult]:
        """Every face in a BGR (or gray) ``uint8`` frame, largest first.

        ``detector`` overrides the shared one for this call (a per-session minimum face size);
        ``tta`` the recognizer's mirror averaging, ``views`` both (see :meth:`classify`). A ``timings`` dict, when given, receives
        the seconds spent on ``"detect"`` and on ``"classify"`` (cropping included).
        """
        start = time.perf_counter()
        detections = find_faces(detector or self.detector, frame)[:max_faces]
        detected = time.perf_counter()
        results = []
        if detections:
            faces = np.stack([self.crop(frame, detection) for detection in detections])
            results = self._results(detections, faces, tta, views)
        if timings is not None:
            timings["detect"] = detected - start
            timings["classify"] = time.perf_counter() - detected
        return results

    def analyze_face(
        self, image: np.ndarray, tta: bool | None = None, views: str | None = None
    ) -> FaceResult:
        """Treat the whole image as one face crop (for images that already are a face)."""
        face = to_face(image, self.input_size)
        height, width = image.shape[:2]
        return self._results([Detection((0, 0, width, height))], face[None], tta, views)[0]


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
