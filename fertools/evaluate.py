"""Accuracy, per-class report and confusion matrix for a model on labelled faces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np

from fertools.views import VIEW_COUNT, average_views, resolve

if TYPE_CHECKING:
    from fertools.data import Dataset


@dataclass(frozen=True)
class ClassReport:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """Results on ``n`` faces. ``confusion[i, j]`` counts true class i predicted as j."""

    accuracy: float
    n: int
    classes: tuple[str, ...]
    per_class: tuple[ClassReport, ...]
    confusion: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    views: str = "one"  # fertools.views.VIEWS: which views were averaged

    @property
    def tta(self) -> bool:
        """Whether this is flip TTA (the face and its mirror image)."""
        return self.views == "mirror"

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Rows sum to 1 (recall on the diagonal); empty rows stay zero."""
        return normalize_rows(self.confusion)

    @property
    def macro_f1(self) -> float:
        return float(np.mean([c.f1 for c in self.per_class]))

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "n": self.n,
            "tta": self.tta,
            "views": self.views,
            "macro_f1": self.macro_f1,
            "classes": list(self.classes),
            "per_class": {
                c.name: {"precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support}
                for c in self.per_class
            },
            "confusion": self.confusion.tolist(),
        }


def normalize_rows(confusion: np.ndarray) -> np.ndarray:
    """A (k, k) confusion matrix with each row divided by its sum (``float``); empty rows stay zero."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)


def worst_confusion(confusion: np.ndarray) -> tuple[int, int] | None:
    """``(true, predicted)`` of the most frequent mistake in a (k, k) confusion; None if there is none."""
    confusion = np.asarray(confusion)
    off_diagonal = confusion - np.diag(np.diag(confusion))
    if off_diagonal.sum() == 0:
        return None
    true, predicted = np.unravel_index(off_diagonal.argmax(), off_diagonal.shape)
    return int(true), int(predicted)


def mistakes(
    labels: np.ndarray, probabilities: np.ndarray, true: int, predicted: int, limit: int | None = None
) -> np.ndarray:
    """Rows of faces of class ``true`` predicted as ``predicted``, the most confident mistakes first.

    ``labels`` (N,) ints and ``probabilities`` (N, C); returns at most ``limit`` row indices (int64).
    """
    rows = np.flatnonzero((np.asarray(labels) == true) & (probabilities.argmax(axis=1) == predicted))
    rows = rows[np.argsort(-probabilities[rows, predicted], kind="stable")]
    return rows if limit is None else rows[:limit]


def predict_proba(
    model: keras.Model, faces: np.ndarray, batch_size: int = 256, tta: bool = False, views: str | None = None
) -> np.ndarray:
    """Class probabilities for ``uint8`` faces (N, 48, 48) as ``float32`` (N, classes).

    With ``tta`` the prediction is the mean over the face and its mirror image; ``views`` (one
    of :data:`fertools.views.VIEWS`), when given, chooses the views instead.
    """
    # A model built under a multi-device strategy predicts across replicas, and fails on a batch
    # that does not split evenly over them: pad with copies of the last face, then drop those rows.
    strategy = getattr(model, "distribute_strategy", None)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    if replicas > 1:
        batch_size = max(replicas, batch_size - batch_size % replicas)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = batch.reshape(len(batch), batch.shape[1], batch.shape[2], 1).astype("float32")
        count = len(x)
        if replicas > 1:
            x = np.concatenate([x, np.repeat(x[-1:], -count % replicas, axis=0)])
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)[:count])

    probabilities = average_views(predict, faces, resolve(views, tta))
    return np.asarray(probabilities, dtype="float32")


def report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    tta: bool = False,
    views: str | None = None,
) -> Evaluation:
    """An :class:`Evaluation` from predicted probabilities and true labels."""
    k = len(classes)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = []
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        predicted_i, actual_i = confusion[:, i].sum(), confusion[i].sum()
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(ClassReport(name, float(precision), float(recall), float(f1), int(actual_i)))
    accuracy = float((predicted == labels).mean()) if len(labels) else 0.0
    return Evaluation(
        accuracy,
        len(labels),
        tuple(classes),
        tuple(per_class),
        confusion,
        probabilities,
        labels,
        resolve(views, tta),
    )


def evaluate(
    model: keras.Model,
    faces: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    tta: bool = False,
    batch_size: int = 256,
    views: str | None = None,
) -> Evaluation:
    """Run ``model`` over ``faces`` and compare with ``labels`` (``tta``, ``views``: see :func:`predict_proba`)."""
    if len(faces) == 0:
        raise ValueError("nothing to evaluate: the split is empty")
    probabilities = predict_proba(model, faces, batch_size=batch_size, tta=tta, views=views)
    return report(probabilities, np.asarray(labels), tuple(classes), tta, views)


def format_table(evaluation: Evaluation) -> str:
    """Plain-text per-class table and confusion matrix (for the command line)."""
    width = max(len(c) for c in evaluation.classes) + 2
    lines = [
        f"accuracy {evaluation.accuracy:.4f} on {evaluation.n} faces"
        + {"one": "", "mirror": " (flip TTA)", "ten_crop": " (ten-crop: 12 views)"}[evaluation.views],
        "",
        f"{'class':<{width}}precision  recall  f1      support",
    ]
    for c in evaluation.per_class:
        lines.append(f"{c.name:<{width}}{c.precision:<11.3f}{c.recall:<8.3f}{c.f1:<8.3f}{c.support}")
    lines += ["", "confusion (rows: true, columns: predicted)"]
    short = [c[:7] for c in evaluation.classes]
    lines.append(" " * width + "".join(f"{s:>8}" for s in short))
    for name, row in zip(evaluation.classes, evaluation.confusion):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>8}" for v in row))
    return "\n".join(lines)


# --- scoring a model on a dataset's held-out split (the Evaluate page) ----------------------------

#: Held-out splits, in the order they are offered: FER2013's PrivateTest is ``test``, PublicTest ``val``.
HELD_OUT_SPLITS = ("test", "val")
#: Faces converted to float32 and run at a time by :func:`evaluate_split`: 9 MiB (twice with TTA),
#: where FER2013's two test splits at once would be 66 MiB.
CHUNK_FACES = 1024


def held_out_splits(dataset: Dataset) -> list[str]:
    """The splits of ``dataset`` a model can be scored on: ``test`` and ``val`` where present."""
    return [name for name in HELD_OUT_SPLITS if name in dataset.splits]


def split_rows(dataset: Dataset, split: str) -> np.ndarray:
    """Row indices (int64) of ``split`` in ``dataset``: row i of :func:`evaluate_split` is row ``rows[i]``."""
    return np.flatnonzero(dataset.split == split)


def label_indices(
    labels: np.ndarray, dataset_classes: tuple[str, ...], model_classes: tuple[str, ...]
) -> np.ndarray:
    """``labels`` (indices into ``dataset_classes``) as indices into ``model_classes`` (int64).

    Raises ``ValueError`` (one sentence) when the data has classes the model does not know.
    """
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [name for name in dataset_classes if name not in index]
    if unknown:
        raise ValueError(
            f"the model does not know the classes {', '.join(unknown)} of this data; it knows {', '.join(model_classes)}."
        )
    lookup = np.array([index[name] for name in dataset_classes], dtype=np.int64)
    return lookup[np.asarray(labels, dtype=np.int64)]


def evaluate_split(
    model: keras.Model,
    dataset: Dataset,
    split: str,
    model_classes: tuple[str, ...],
    *,
    tta: bool = False,
    views: str | None = None,
    chunk_size: int = CHUNK_FACES,
    progress: Callable[[float], None] | None = None,
) -> Evaluation:
    """Score ``model`` (classes ``model_classes``, in its output order) on one split of ``dataset``.

    Faces go through the model ``chunk_size`` views at a time (``chunk_size`` faces in one view,
    a twelfth of that in ten crops), so memory stays bounded whatever the split's size and mode; ``progress(fraction)`` is called after each chunk. The evaluation's labels and
    classes are the model's; its row i is dataset row ``split_rows(dataset, split)[i]``. Raises
    ``ValueError`` (one sentence) for a split the data lacks or classes the model does not know.
    """
    if split not in dataset.splits:
        raise ValueError(
            f"the data has no {split!r} split; it has {', '.join(dataset.splits) or 'no faces'}."
        )
    labels = label_indices(dataset.labels, dataset.classes, tuple(model_classes))
    rows = split_rows(dataset, split)
    step = max(1, chunk_size // VIEW_COUNT[resolve(views, tta)])
    chunks = []
    for start in range(0, len(rows), step):
        chosen = rows[start : start + step]
        chunks.append(predict_proba(model, dataset.images[chosen], tta=tta, views=views))
        if progress is not None:
            progress(min(1.0, (start + len(chosen)) / len(rows)))
    probabilities = np.concatenate(chunks)
    return report(probabilities, labels[rows], tuple(model_classes), tta, views)


def cell_at(point: dict, classes: tuple[str, ...]) -> tuple[int, int] | None:
    """The ``(true, predicted)`` confusion cell a clicked chart point names, or None.

    ``point`` is one Plotly selection point: its ``customdata`` ``[true, predicted]`` where the
    chart carries it, else its ``y`` (true) and ``x`` (predicted) class names.
    """
    custom = point.get("customdata")
    k = len(classes)
    if isinstance(custom, list | tuple) and len(custom) == 2:
        try:
            true, predicted = int(custom[0]), int(custom[1])
        except (TypeError, ValueError):
            true = predicted = -1
        if 0 <= true < k and 0 <= predicted < k:
            return true, predicted
    names = {name: i for i, name in enumerate(classes)}
    if point.get("y") in names and point.get("x") in names:
        return names[point["y"]], names[point["x"]]
    return None
