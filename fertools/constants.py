"""Constants shared by the whole project: class names, image size and paths.

Conventions used everywhere in :mod:`fertools`:

* a *frame* is a BGR ``uint8`` array of shape ``(H, W, 3)`` (OpenCV's order);
* a *face* is a grayscale ``uint8`` array of shape ``(48, 48)``;
* a batch of faces is ``uint8`` ``(N, 48, 48)``; models add the channel axis
  themselves and rescale inside the graph, so they take raw pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

#: FER2013's class names in label order (emotion 0..6 of ``fer2013.csv``).
FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)


def class_names_problem(classes: object) -> str | None:
    """Why ``classes`` cannot name a dataset's or a model's classes (a phrase), or None if they can.

    Class names are a non-empty sequence of distinct strings, none of them blank: a folder named
    " " or an ``.npz`` listing "" would otherwise train a model whose card cannot be read back.
    """
    if not isinstance(classes, (list, tuple)) or not classes:
        return "no class names"
    if not all(isinstance(name, str) and name.strip() for name in classes):
        return "a class name that is blank or not text"
    if len(set(classes)) != len(classes):
        return "the same class name twice"
    return None


#: Where FER2013 comes from and on what terms; model cards of FER2013-trained models carry it.
FER2013_ABOUT = {
    "origin": (
        "FER2013, from the ICML 2013 workshop 'Challenges in Representation Learning' facial "
        "expression challenge (Goodfellow et al., 2013, 'Challenges in Representation Learning: "
        "A report on three machine learning contests'); faces collected by Google image search, "
        "48x48 grayscale, distributed on Kaggle"
    ),
    "terms": (
        "the Kaggle competition's rules (research and teaching, not commercial use); the images "
        "stay their owners' and are not redistributed by FER Lab: the model ships, the data does not"
    ),
}

#: Side of the square grayscale face every model sees.
IMAGE_SIZE = 48
INPUT_SHAPE: tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 1)
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE

#: Split names a dataset may carry.
SPLITS: tuple[str, ...] = ("train", "val", "test")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_MODEL_DIR = MODELS_DIR / "default"


def data_dir() -> Path:
    """Root under which the app looks for datasets (``FERLAB_DATA_DIR``, default ``data/``)."""
    return Path(os.environ.get("FERLAB_DATA_DIR", PROJECT_ROOT / "data"))


def runs_dir() -> Path:
    """Where training runs are written (``FERLAB_RUNS_DIR``, default ``runs/``)."""
    return Path(os.environ.get("FERLAB_RUNS_DIR", PROJECT_ROOT / "runs"))


def cache_dir() -> Path:
    """On-disk cache of parsed datasets (``FERLAB_CACHE_DIR``, default ``~/.cache/ferlab``)."""
    default = Path.home() / ".cache" / "ferlab"
    return Path(os.environ.get("FERLAB_CACHE_DIR", default))


def hosted() -> bool:
    """Whether this is a shared classroom server (``FERLAB_HOSTED=1``): users, quotas, no tracebacks."""
    return os.environ.get("FERLAB_HOSTED", "").strip().lower() in ("1", "true", "yes", "on")
