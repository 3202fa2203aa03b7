"""A saved model is a folder: ``model.keras`` plus ``card.json``.

The card carries everything a user of the model needs and must never guess:
class names in index order, input shape, preprocessing (:class:`Preprocessing`:
face margin, colour, resize interpolation, alignment, read by the Recognizer),
and where the model came from (architecture, training config, metrics, dataset
and split).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fertools.constants import class_names_problem

if TYPE_CHECKING:  # reading a card must not cost a TensorFlow import (the CLI, the app's model lists)
    import keras

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"


@dataclass(frozen=True)
class Preprocessing:
    """How a face becomes this model's input: the card's ``preprocessing``, read by the Recognizer.

    What the faces the model was trained on looked like, as data, so inference
    crops faces the same way (STYLE: metadata a user needs at inference travels
    with the weights). :mod:`fertools.preprocess` is the one path that does it;
    the input size is the card's ``input_shape``. A card written before these
    fields existed (prose only) reads as the defaults, which are what FER Lab
    has always done.
    """

    #: The detector's box grows by this fraction of its side on each side (FER2013's faces are
    #: framed wider than a detector's tight box).
    face_margin: float = 0.1
    #: The model sees one grey channel (``cv2.COLOR_BGR2GRAY``).
    color: str = "grayscale"
    #: OpenCV interpolation of :func:`fertools.preprocess.to_face` when a crop is larger than
    #: the input (``area``) and when it is smaller (``linear``).
    resize_shrink: str = "area"
    resize_enlarge: str = "linear"
    #: Eye alignment (:func:`fertools.preprocess.crop_aligned_face`) where the detector gives
    #: eye keypoints. Off: on FER2013 validation faces pasted into frames
    #: (``detection_bench.alignment_benchmark``, seeds 1 and 2), alignment moved the shipped
    #: model's accuracy on faces tilted up to 30 degrees from 61.4% to 63.9% and from 60.4% to
    #: 60.8%, but lowered it on upright faces (65.2% to 63.6%, 62.2% to 60.8%): the model
    #: learned FER2013's own framing, head tilt included.
    align: bool = False
    pixels: str = "raw uint8 0..255; the model rescales inside its graph"
    code: str = "fertools.preprocess.crop_face / crop_aligned_face / to_face"

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        """The preprocessing of a card's dict; missing fields get today's values.

        Raises:
            ValueError: a field of the wrong type, or a value :mod:`fertools.preprocess` does
                not do (a colour other than grayscale, another interpolation, a margin
                outside 0..1).
        """
        if not isinstance(values, dict):
            raise ValueError(f"preprocessing must be an object, not {type(values).__name__}")
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        defaults = cls()
        margin = known.get("face_margin", defaults.face_margin)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 1:
            raise ValueError(f"preprocessing.face_margin must be a number from 0 to 1, not {margin!r}")
        if not isinstance(known.get("align", defaults.align), bool):
            raise ValueError(f"preprocessing.align must be true or false, not {known['align']!r}")
        for name, supported in SUPPORTED_PREPROCESSING.items():
            value = known.get(name, getattr(defaults, name))
            if value not in supported:
                raise ValueError(
                    f"preprocessing.{name} is {value!r}, but FER Lab's preprocessing does only {list(supported)}"
                )
        for name in ("pixels", "code"):
            if name in known:
                known[name] = str(known[name])
        return cls(**{**known, "face_margin": float(margin)})


#: The values of the card's fields that :mod:`fertools.preprocess` can do.
SUPPORTED_PREPROCESSING = {
    "color": ("grayscale",),
    "resize_shrink": ("area",),
    "resize_enlarge": ("linear",),
}


class ModelLoadError(RuntimeError):
    """A model folder that cannot be loaded; the message is one sentence for the user.

    The message names the folder (``folder``), which helps on the command line; a page whose
    visitors must not read the server's paths shows :meth:`for_page` instead.
    """

    def __init__(self, message: str, folder: str | os.PathLike | None = None):
        super().__init__(message)
        self.folder = None if folder is None else str(folder)

    def for_page(self, name: str = "the chosen model") -> str:
        """The message with ``name`` where it names the folder (or a file in it)."""
        message = str(self)
        return message.replace(self.folder, name) if self.folder else message


#: The JSON type of each field a card may hold (``preprocessing`` is checked by its own class).
_CARD_FIELD_TYPES = {
    "name": str,
    "architecture": str,
    "classes": list,
    "input_shape": list,
    "parameters": int,
    "training": dict,
    "metrics": dict,
    "dataset": dict,
    "inference": dict,
    "created": str,
    "notes": list,
}
_JSON_NAMES = {str: "text", list: "a list", int: "a whole number", dict: "an object"}
#: Metrics a card shows as percentages or scores.
_NUMBER_METRICS = ("accuracy", "accuracy_flip_tta", "accuracy_ten_crop", "macro_f1")


@dataclass
class ModelCard:
    """Metadata that travels with a saved model (``card.json``)."""

    name: str
    architecture: str
    classes: list[str]
    input_shape: list[int]
    parameters: int = 0
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
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
        """A card from its JSON object; unknown keys are ignored. ``ValueError``/``TypeError`` if bad.

        Each field must have its JSON type, and the accuracies be numbers, so that nothing that
        shows a card (the CLI's ``card``, the pages) meets a "lots" where it formats a number.
        """
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        for name, kind in _CARD_FIELD_TYPES.items():
            value = known.get(name)
            if name in known and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise ValueError(f"its {name} is {type(value).__name__}, not {_JSON_NAMES[kind]}")
        for key in _NUMBER_METRICS:
            value = known.get("metrics", {}).get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"its metrics.{key} is {type(value).__name__}, not a number")
        if "preprocessing" in known:
            known["preprocessing"] = Preprocessing.from_dict(known["preprocessing"])
        return cls(**known)

    @property
    def accuracy(self) -> float | None:
        """Validation accuracy recorded on the card, if any."""
        value = self.metrics.get("accuracy")
        return float(value) if value is not None else None

    def view_accuracies(self) -> dict[str, float]:
        """Validation accuracy per view mode of :data:`fertools.views.VIEWS` the card records."""
        keys = {"one": "accuracy", "mirror": "accuracy_flip_tta", "ten_crop": "accuracy_ten_crop"}
        return {
            mode: float(self.metrics[key])
            for mode, key in keys.items()
            if isinstance(self.metrics.get(key), (int, float))
        }


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
        raise ModelLoadError(f"{path} is not a model folder (no {CARD_FILE}).", path) from None
    except (ValueError, TypeError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise ModelLoadError(f"{card_path} is not a valid model card ({error}).", path) from None


def load_model_dir(path: str | os.PathLike) -> tuple[keras.Model, ModelCard]:
    """Load a model folder with ``safe_mode=True``; :class:`ModelLoadError` if it cannot be."""
    card = read_card(path)
    model_path = Path(path) / MODEL_FILE
    if not model_path.exists():
        raise ModelLoadError(f"{path} has a card but no {MODEL_FILE}.", path)
    import keras

    import fertools.augment  # noqa: F401  (registers custom layers a model may hold)

    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except (ValueError, OSError, TypeError) as error:
        raise ModelLoadError(f"{model_path} could not be loaded ({error}).", path) from None
    check_card_fits(model, card, path)
    return model, card


def check_card_fits(model, card: ModelCard, path: str | os.PathLike) -> None:
    """Refuse a card that disagrees with its network, before anything runs it.

    Raises:
        ModelLoadError: the class list is not unique strings, or its length, or the input
            shape, differs from the network's.
    """
    classes = card.classes
    if not isinstance(classes, list) or class_names_problem(classes):
        raise ModelLoadError(f"the card in {path} does not list its classes as distinct names.", path)
    outputs = model.output_shape
    if not isinstance(outputs, tuple) or len(outputs) != 2 or outputs[1] != len(classes):
        raise ModelLoadError(
            f"the card in {path} names {len(classes)} classes but the network gives {outputs[1:]} outputs.",
            path,
        )
    expected = [int(n) for n in card.input_shape] if isinstance(card.input_shape, list) else None
    if expected is None or list(model.input_shape[1:]) != expected:
        raise ModelLoadError(
            f"the card in {path} says input {card.input_shape} but the network takes {list(model.input_shape[1:])}.",
            path,
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
        f"input {'x'.join(map(str, card.input_shape))} {card.preprocessing.color}"
    ]
    preprocessing = card.preprocessing
    lines.append(
        f"Preprocessing: the detector's box grown by {preprocessing.face_margin:.0%} on each side"
        f"{', aligned on the eyes' if preprocessing.align else ''}, {preprocessing.color}, resized with "
        f"{preprocessing.resize_shrink} interpolation (shrinking) or {preprocessing.resize_enlarge} (enlarging)."
    )
    if "accuracy" in metrics:
        line = f"Validation accuracy **{metrics['accuracy']:.2%}**"
        if "accuracy_flip_tta" in metrics:
            line += f" ({metrics['accuracy_flip_tta']:.2%} with flip test-time augmentation"
            if "accuracy_ten_crop" in metrics:
                line += f", {metrics['accuracy_ten_crop']:.2%} with ten crops"
            line += ")"
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
        what = "its members' own runs" if training.get("members") else f"{_count(epochs, 'epoch')} ({kept})"
        lines.append(
            f"Training: {what},"
            f" {training.get('seconds', 0) / 3600:.1f} h on {training.get('hardware', '?')};"
            f" TensorFlow {training.get('tensorflow', '?')}, Keras {training.get('keras', '?')}."
        )
        if training.get("members"):
            lines.append(
                "Ensemble of "
                + "; ".join(
                    f"`{m['architecture']}` ({_count(m.get('epochs_run'), 'epoch')}, "
                    f"{(m.get('seconds') or 0) / 3600:.1f} h; {m['accuracy']:.2%} alone, "
                    f"{m['accuracy_flip_tta']:.2%} with flip TTA)"
                    for m in training["members"]
                )
                + ": their probabilities are averaged."
            )
        if training.get("teachers"):
            share = (training.get("config") or {}).get("distill")
            teachers = ", ".join(
                f"{t.get('name') or t['path']} ({t['accuracy']:.2%})"
                if t.get("accuracy") is not None
                else t["path"]
                for t in training["teachers"]
            )
            lines.append(
                f"Distilled from {teachers}: the teachers' share of each training target was {share}."
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
        if "accuracy_ten_crop" in inference:
            lines[-1] += (
                f" With ten crops (12 views, the Photo page's option): {inference['accuracy_ten_crop']:.2%}, "
                f"{inference['ms_per_face_ten_crop_p50']:.2f} ms per face."
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
