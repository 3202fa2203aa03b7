"""Test-time view averaging: a face classified as the mean over several views of it.

Three modes, from fast to thorough:

* ``one``: the face as it is;
* ``mirror``: the face and its mirror image (flip TTA, the Recognizer's default where two passes
  fit its per-face budget, and the webcam's);
* ``ten_crop``: for still images: the whole face and five crops of 11/12 of its side (the four
  corners and the centre, each enlarged back to the input size, a zoom the training augmentation
  covers), each with its mirror image: 12 views, about six times the mirror mode's model time.

Measured on FER2013's PublicTest (3,589 faces) with the shipped model, 2026-12-02: 65.51% one
view, 66.73% mirror, 67.82% ten-crop through Keras (``python -m fertools evaluate --views``);
65.31%, 66.76% and 67.85% through LiteRT (see docs/MODEL.md for how the crop size was chosen).

Example::

    probabilities = average_views(engine, faces, "ten_crop")  # engine: faces -> (N, classes)
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

VIEWS = ("one", "mirror", "ten_crop")
#: What each mode means to a person choosing one.
VIEW_LABELS = {
    "one": "one view (the face as it is)",
    "mirror": "the face and its mirror image",
    "ten_crop": "ten crops: the face and five crops, each mirrored (12 views; still images)",
}
#: How many pictures of each face a mode sends to the model.
VIEW_COUNT = {"one": 1, "mirror": 2, "ten_crop": 12}
#: The side of a ten-crop view, as a share of the face's side (44 of 48 px).
CROP_FRACTION = 11 / 12


def resolve(views: str | None, mirror: bool) -> str:
    """The mode to use: ``views`` when given, else ``mirror`` (flip TTA) or ``one``."""
    return views or ("mirror" if mirror else "one")


def crops(faces: np.ndarray) -> list[np.ndarray]:
    """The whole faces and their five crops (corners, centre), each enlarged back: six (N, s, s) arrays."""
    side = faces.shape[1]
    crop = int(round(side * CROP_FRACTION))
    margin = side - crop
    views = [faces]
    for top, left in ((0, 0), (0, margin), (margin, 0), (margin, margin), (margin // 2, margin // 2)):
        part = faces[:, top : top + crop, left : left + crop]
        views.append(
            np.stack([cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR) for face in part])
        )
    return views


def average_views(predict: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, views: str) -> np.ndarray:
    """The mean of ``predict`` over ``views`` (one of :data:`VIEWS`) of ``uint8`` faces (N, s, s).

    All views go to ``predict`` in one batch; ``ValueError`` for an unknown mode.
    """
    if views not in VIEWS:
        raise ValueError(f"views must be one of {VIEWS}, not {views!r}.")
    if views == "one" or len(faces) == 0:
        return predict(faces)
    upright = [faces] if views == "mirror" else crops(faces)
    stack = np.concatenate([*upright, *(view[:, :, ::-1] for view in upright)])
    probabilities = predict(np.ascontiguousarray(stack))
    return probabilities.reshape(2 * len(upright), len(faces), -1).mean(axis=0)
