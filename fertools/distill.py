"""Knowledge distillation: a run learns from saved models' predictions as well as from the labels.

A run with ``config.teacher`` (one or more model folders) trains on soft targets::

    target = (1 - distill) * one_hot(label) + distill * mean over teachers of p_teacher(face)

Each teacher's probabilities are its ``teacher_views`` average (``mirror`` by default; ``ten_crop``
for a stronger, slower teacher), and several teachers are averaged into an ensemble, so a small
student can learn what a larger network, or several differently built ones, know. The targets
are computed once per run on the un-augmented training faces ("offline" distillation: no teacher
runs during training, which on a CPU would cost more than the student's own step) and cached in
the run folder (:meth:`fertools.runs.RunDir.read_teacher_targets`), so a resumed run does not
pay for them again. Cross-entropy against such a target is the classic distillation loss at
temperature 1 (Hinton et al. 2015) plus the label's term; label smoothing and mixup still apply
on top. Validation and the shipped metrics keep the true labels.

Example::

    python -m fertools train --preset default --data data/fer2013 --out runs/student \\
        --teacher models/default runs/wide/model --distill 0.5
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

#: Faces sent to a teacher at a time: bounds the memory of the views (12 per face for ten crops).
CHUNK_FACES = 2048


def teacher_key(teachers: Sequence[str], views: str, labels: np.ndarray) -> str:
    """What a cached set of targets was computed from: the teachers' files, the views, the faces' labels.

    A teacher retrained in place (a new ``model.keras``), another view mode or another training
    split gives another key, so stale targets are never reused.
    """
    digest = hashlib.sha256()
    for teacher in teachers:
        model_file = Path(teacher) / "model.keras"
        stat = model_file.stat() if model_file.exists() else None
        digest.update(
            json.dumps(
                [str(Path(teacher).resolve()), stat and stat.st_size, stat and stat.st_mtime_ns]
            ).encode()
        )
    digest.update(views.encode())
    digest.update(np.ascontiguousarray(labels, dtype="int64").tobytes())
    return digest.hexdigest()


def teacher_probabilities(
    teachers: Sequence[str],
    faces: np.ndarray,
    classes: Sequence[str],
    views: str = "mirror",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The teachers' mean class probabilities (N, classes) for ``uint8`` faces (N, s, s).

    ``progress(done, total)``, when given, is called after each chunk of faces a teacher answers,
    counting faces times teachers (ten crops of a 28,709-face split take minutes on a CPU).

    Raises:
        ValueError: a teacher cannot be loaded, or names other classes (or another order) than
            the dataset, or takes another input size, in one sentence.
    """
    import keras

    from fertools.evaluate import predict_proba
    from fertools.modelcard import ModelLoadError, load_model_dir

    total = np.zeros((len(faces), len(classes)), dtype="float64")
    done = 0
    for teacher in teachers:
        try:
            model, card = load_model_dir(teacher)
        except ModelLoadError as error:
            raise ValueError(f"The teacher {teacher} cannot be used: {error}") from None
        if list(card.classes) != list(classes):
            raise ValueError(
                f"The teacher {teacher} knows the classes {list(card.classes)}, not this dataset's "
                f"{list(classes)} in that order, so it cannot teach this run."
            )
        if list(card.input_shape[:2]) != list(faces.shape[1:3]):
            raise ValueError(
                f"The teacher {teacher} takes {card.input_shape[0]}x{card.input_shape[1]} faces, "
                f"not this dataset's {faces.shape[1]}x{faces.shape[2]}."
            )
        for start in range(0, len(faces), CHUNK_FACES):
            chunk = faces[start : start + CHUNK_FACES]
            total[start : start + len(chunk)] += predict_proba(model, chunk, views=views)
            done += len(chunk)
            if progress is not None:
                progress(done, len(faces) * len(teachers))
        del model
        keras.backend.clear_session()
    return (total / max(1, len(teachers))).astype("float32")


def describe_teachers(teachers: Sequence[str]) -> list[dict]:
    """What the card of a distilled model says of each teacher: folder, name, architecture, accuracy."""
    from fertools.modelcard import ModelLoadError, read_card

    described = []
    for teacher in teachers:
        try:
            card = read_card(teacher)
        except ModelLoadError:
            described.append({"path": str(teacher)})
            continue
        described.append(
            {
                "path": str(teacher),
                "name": card.name,
                "architecture": card.architecture,
                "accuracy": card.accuracy,
                "split": card.metrics.get("split"),
            }
        )
    return described


def soft_targets(labels: np.ndarray, teacher: np.ndarray, distill: float) -> np.ndarray:
    """``(1 - distill) * one_hot(labels) + distill * teacher``, rows summing to 1 (float32)."""
    one_hot = np.eye(teacher.shape[1], dtype="float32")[labels]
    rows = teacher / np.maximum(teacher.sum(axis=1, keepdims=True), 1e-12)
    return ((1.0 - distill) * one_hot + distill * rows).astype("float32")


def training_targets(
    config,
    run,
    faces: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The run's soft targets for its training faces: from the run folder's cache, else computed and cached.

    ``progress(done, total)`` hears of each chunk the teachers answer (faces times teachers).
    """
    key = teacher_key(config.teacher, config.teacher_views, labels)
    teacher = run.read_teacher_targets(key)
    if teacher is None or teacher.shape != (len(faces), len(classes)):
        teacher = teacher_probabilities(config.teacher, faces, classes, config.teacher_views, progress)
        run.write_teacher_targets(key, teacher)
    return soft_targets(labels, teacher, config.distill)
