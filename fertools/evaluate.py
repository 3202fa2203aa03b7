"""Accuracy, per-class report and confusion matrix for a model on labelled faces."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


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
    tta: bool = False

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Rows sum to 1 (recall on the diagonal); empty rows stay zero."""
        totals = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, totals, out=np.zeros(self.confusion.shape), where=totals > 0)

    @property
    def macro_f1(self) -> float:
        return float(np.mean([c.f1 for c in self.per_class]))

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "n": self.n,
            "tta": self.tta,
            "macro_f1": self.macro_f1,
            "classes": list(self.classes),
            "per_class": {
                c.name: {"precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support}
                for c in self.per_class
            },
            "confusion": self.confusion.tolist(),
        }


def predict_proba(
    model: keras.Model, faces: np.ndarray, batch_size: int = 256, tta: bool = False
) -> np.ndarray:
    """Class probabilities for ``uint8`` faces (N, 48, 48) as ``float32`` (N, classes).

    With ``tta`` the prediction is the mean over the face and its mirror image.
    """
    x = faces.reshape(len(faces), faces.shape[1], faces.shape[2], 1).astype("float32")
    # A model built under a multi-device strategy predicts across replicas, and fails on a batch
    # that does not split evenly over them: pad with copies of the last face, then drop those rows.
    strategy = getattr(model, "distribute_strategy", None)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    count = len(x)
    if replicas > 1:
        batch_size = max(replicas, batch_size - batch_size % replicas)
        x = np.concatenate([x, np.repeat(x[-1:], -count % replicas, axis=0)])
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    if tta:
        probabilities = (probabilities + model.predict(x[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
    return np.asarray(probabilities[:count], dtype="float32")


def report(
    probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], tta: bool = False
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
        accuracy, len(labels), tuple(classes), tuple(per_class), confusion, probabilities, labels, tta
    )


def evaluate(
    model: keras.Model,
    faces: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    tta: bool = False,
    batch_size: int = 256,
) -> Evaluation:
    """Run ``model`` over ``faces`` and compare with ``labels``."""
    if len(faces) == 0:
        raise ValueError("nothing to evaluate: the split is empty")
    probabilities = predict_proba(model, faces, batch_size=batch_size, tta=tta)
    return report(probabilities, np.asarray(labels), tuple(classes), tta)


def format_table(evaluation: Evaluation) -> str:
    """Plain-text per-class table and confusion matrix (for the command line)."""
    width = max(len(c) for c in evaluation.classes) + 2
    lines = [
        f"accuracy {evaluation.accuracy:.4f} on {evaluation.n} faces"
        + (" (flip TTA)" if evaluation.tta else ""),
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
