"""A saved model is a folder: ``model.keras`` plus ``card.json``.

The card carries everything a user of the model needs and must never guess:
class names in index order, input shape, preprocessing, and where the model
came from (architecture, training config, metrics, dataset and split).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # reading a card must not cost a TensorFlow import (the CLI, the app's model lists)
    import keras

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"

#: How a face becomes a model input; the same text goes on every card.
PREPROCESSING = {
    "face_crop": "detector box grown by 10% on each side (Haar cascade for photos and webcam)",
    "color": "grayscale",
    "size": "48x48, cv2.INTER_AREA when shrinking",
    "pixels": "raw uint8 0..255; the model rescales inside its graph",
    "code": "fertools.preprocess.crop_face / to_face",
}


class ModelLoadError(RuntimeError):
    """A model folder that cannot be loaded; the message is one sentence for the user."""


@dataclass
class ModelCard:
    """Metadata that travels with a saved model (``card.json``)."""

    name: str
    architecture: str
    classes: list[str]
    input_shape: list[int]
    parameters: int = 0
    preprocessing: dict = field(default_factory=lambda: dict(PREPROCESSING))
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    #: How the Recognizer runs the model, with that engine's accuracy and speed (see fertools.engine).
    inference: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def accuracy(self) -> float | None:
        """Validation accuracy recorded on the card, if any."""
        value = self.metrics.get("accuracy")
        return float(value) if value is not None else None


def hardware_description() -> str:
    """CPU model and core count, plus GPUs if TensorFlow sees any."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if gpus:
        text += f", {len(gpus)} GPU(s)"
    return text


def save_model_dir(model: keras.Model, card: ModelCard, path: str | os.PathLike) -> Path:
    """Write ``model.keras`` and ``card.json`` into the folder ``path``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    card.parameters = card.parameters or int(model.count_params())
    model.save(folder / MODEL_FILE)
    (folder / CARD_FILE).write_text(card.to_json() + "\n")
    return folder


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card of a model folder, without loading the model."""
    card_path = Path(path) / CARD_FILE
    try:
        return ModelCard.from_dict(json.loads(card_path.read_text()))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is not a model folder (no {CARD_FILE}).") from None
    except (json.JSONDecodeError, TypeError) as error:
        raise ModelLoadError(f"{card_path} is not a valid model card ({error}).") from None


def load_model_dir(path: str | os.PathLike) -> tuple[keras.Model, ModelCard]:
    """Load a model folder with ``safe_mode=True``; :class:`ModelLoadError` if it cannot be."""
    card = read_card(path)
    model_path = Path(path) / MODEL_FILE
    if not model_path.exists():
        raise ModelLoadError(f"{path} has a card but no {MODEL_FILE}.")
    import keras

    import fertools.augment  # noqa: F401  (registers custom layers a model may hold)

    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except (ValueError, OSError, TypeError) as error:
        raise ModelLoadError(f"{model_path} could not be loaded ({error}).") from None
    check_card_fits(model, card, path)
    return model, card


def check_card_fits(model, card: ModelCard, path: str | os.PathLike) -> None:
    """Refuse a card that disagrees with its network, before anything runs it.

    Raises:
        ModelLoadError: the class list is not unique strings, or its length, or the input
            shape, differs from the network's.
    """
    classes = card.classes
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(name, str) and name for name in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelLoadError(f"the card in {path} does not list its classes as distinct names.")
    outputs = model.output_shape
    if not isinstance(outputs, tuple) or len(outputs) != 2 or outputs[1] != len(classes):
        raise ModelLoadError(
            f"the card in {path} names {len(classes)} classes but the network gives {outputs[1:]} outputs."
        )
    expected = [int(n) for n in card.input_shape] if isinstance(card.input_shape, list) else None
    if expected is None or list(model.input_shape[1:]) != expected:
        raise ModelLoadError(
            f"the card in {path} says input {card.input_shape} but the network takes {list(model.input_shape[1:])}."
        )


def _count(number, noun: str) -> str:
    """``1 epoch``, ``245 epochs``, ``? epochs`` for a card that does not say."""
    if number is None:
        return f"? {noun}s"
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def card_markdown(card: ModelCard) -> str:
    """The card's figures as Markdown: summary, per-class table and confusion matrix (for READMEs)."""
    metrics, training, dataset = card.metrics, card.training, card.dataset
    lines = [
        f"**{card.name}** · architecture `{card.architecture}` · {card.parameters:,} parameters · "
        f"input {'x'.join(map(str, card.input_shape))} grayscale"
    ]
    if "accuracy" in metrics:
        line = f"Validation accuracy **{metrics['accuracy']:.2%}**"
        if "accuracy_flip_tta" in metrics:
            line += f" ({metrics['accuracy_flip_tta']:.2%} with flip test-time augmentation)"
        if "macro_f1" in metrics:
            line += f", macro F1 {metrics['macro_f1']:.3f}"
        lines.append(line + f", on {metrics.get('n', '?')} faces ({dataset.get('split', '')}).")
    if dataset:
        lines.append(f"Data: {dataset.get('source', '?')}; sizes {dataset.get('sizes', {})}.")
        if "origin" in dataset:
            lines.append(f"Origin: {dataset['origin']}. Terms: {dataset.get('terms', 'see the source')}.")
    if training:
        epochs = training.get("epochs_run")
        average = training.get("weight_average") or {}
        if average.get("shipped"):
            kept = f"the weights averaged over epochs {min(average['epochs'])}-{max(average['epochs'])}"
        elif training.get("best_epoch") is not None:
            kept = f"best epoch {training['best_epoch']}"
        else:
            kept = "the final weights"
        lines.append(
            f"Training: {_count(epochs, 'epoch')} ({kept}),"
            f" {training.get('seconds', 0) / 3600:.1f} h on {training.get('hardware', '?')};"
            f" TensorFlow {training.get('tensorflow', '?')}, Keras {training.get('keras', '?')}."
        )
        if training.get("command"):
            lines.append(f"Command: `{training['command']}`")
    inference = card.inference
    if inference:
        lines.append(
            f"Inference: {inference['engine']} engine with {inference['precision']} weights, "
            f"{inference['accuracy']:.2%} validation accuracy ({inference['agreement']:.1%} of predictions "
            f"equal to the Keras model's), {inference['ms_per_face_p50']:.2f} ms per face "
            f"(batch 1, median) on {inference.get('hardware', '?')}."
        )
        if "accuracy_flip_tta" in inference:
            lines[-1] += (
                f" With flip TTA, the Recognizer's default on this engine: "
                f"{inference['accuracy_flip_tta']:.2%}, {inference['ms_per_face_flip_tta_p50']:.2f} ms per face."
            )
    for note in card.notes:
        lines.append(f"Note: {note}")
    text = "\n\n".join(lines)
    per_class = metrics.get("per_class") or {}
    if per_class:
        text += "\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n"
        text += "\n".join(
            f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
            for name, v in per_class.items()
        )
    confusion = metrics.get("confusion")
    if confusion:
        short = [name[:4] for name in card.classes]
        text += "\n\nConfusion matrix (rows: true class, columns: predicted):\n\n"
        text += "| | " + " | ".join(short) + " |\n|---|" + "---|" * len(short) + "\n"
        text += "\n".join(
            f"| {name} | " + " | ".join(str(v) for v in row) + " |"
            for name, row in zip(card.classes, confusion)
        )
    return text + "\n"
