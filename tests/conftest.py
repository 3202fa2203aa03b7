"""Shared fixtures: isolated FER Lab folders, a tiny built-in dataset, faces the Haar cascade finds.

Every test runs with ``FERLAB_RUNS_DIR``, ``FERLAB_DATA_DIR`` and ``FERLAB_CACHE_DIR``
pointing into its own temporary folder, so no test reads or writes the real
``runs/``, ``data/`` or ``~/.cache/ferlab``.
"""

from __future__ import annotations

import os

# Before anything imports TensorFlow: keep its C++ start-up chatter out of test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fertools import synthetic
from fertools.data import Dataset, load_builtin

#: Side in pixels of an upscaled synthetic face in a frame.
FACE_SIDE = 200
#: Where the single face of ``haar_face_frame`` sits (top-left corner).
FACE_ORIGIN = (220, 140)


@pytest.fixture(autouse=True)
def ferlab_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point the runs, data and cache folders at fresh temporary folders."""
    folders = {}
    for name, variable in (
        ("runs", "FERLAB_RUNS_DIR"),
        ("data", "FERLAB_DATA_DIR"),
        ("cache", "FERLAB_CACHE_DIR"),
    ):
        folder = tmp_path / f"ferlab_{name}"
        folder.mkdir()
        monkeypatch.setenv(variable, str(folder))
        folders[name] = folder
    return folders


@pytest.fixture(scope="session")
def tiny_builtin() -> Dataset:
    """The built-in synthetic set at 20 faces per class (140 faces: 112 train, 14 val, 14 test)."""
    return load_builtin(n_per_class=20, seed=0)


def face_frame(origins: list[tuple[int, int]], side: int = FACE_SIDE, background: int = 128) -> np.ndarray:
    """A 640x480 BGR ``uint8`` frame with the neutral face, upscaled to ``side`` px, at each origin."""
    return synthetic.face_frame([(x, y, side) for x, y in origins], background=background)


@pytest.fixture
def haar_face_frame() -> np.ndarray:
    """640x480 BGR frame with one 200 px synthetic face at (220, 140) that the Haar detector finds."""
    return face_frame([FACE_ORIGIN])


@pytest.fixture
def haar_face_box() -> tuple[int, int, int, int]:
    """Where the face of ``haar_face_frame`` was drawn: (x, y, w, h)."""
    return (*FACE_ORIGIN, FACE_SIDE, FACE_SIDE)


@pytest.fixture
def make_face_frame() -> Callable[..., np.ndarray]:
    """The :func:`face_frame` builder, e.g. ``make_face_frame([(10, 140), (200, 140)], side=180)``."""
    return face_frame


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder holding an untrained ``default`` model and its card (7 FER2013 classes)."""
    from fertools import models
    from fertools.constants import FER2013_CLASSES, INPUT_SHAPE
    from fertools.modelcard import ModelCard, save_model_dir

    model = models.create("default", num_classes=len(FER2013_CLASSES))
    card = ModelCard(
        name="tiny-untrained",
        architecture="default",
        classes=list(FER2013_CLASSES),
        input_shape=list(INPUT_SHAPE),
        notes=["untrained, for tests"],
    )
    return save_model_dir(model, card, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def engine_fallback(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every Recognizer loaded says its fast engine fell back; returns the sentence it says."""
    from fertools.recognize import Recognizer

    sentence = "The fast LiteRT engine could not be built, so faces are classified by Keras."
    load = Recognizer.load.__func__

    def load_with_fallback(cls, *args, **kwargs):
        recognizer = load(cls, *args, **kwargs)
        recognizer.fallback = sentence
        return recognizer

    monkeypatch.setattr(Recognizer, "load", classmethod(load_with_fallback))
    return sentence
