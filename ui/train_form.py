"""The Train page's form as one model: widget values <-> :class:`TrainConfig`, presets, epochs.

Every widget of the form is a :class:`Field` here, with the label the page shows, so messages
name the widget a student sees, never a config field. The functions take the session state (any
mutable mapping, so they are tested on a dict):

- :func:`restore` seeds the widgets (remembered values, else the defaults) before they are drawn,
  :func:`remember` keeps their values after, since Streamlit forgets a widget's value when a
  visitor opens another page;
- :func:`apply_preset` fills every field from a preset, augmentation included;
- :func:`adapt_to_epochs` rescales the settings that count epochs when Epochs changes;
- :func:`config_from` builds the :class:`TrainConfig`, or raises :class:`FormError`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

import numpy as np

from fertools.config import PRESET_NOTES, PRESETS, AugmentConfig, TrainConfig

BATCH_SIZES = [8, 16, 32, 64, 128, 256, 512]
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 1e-1]
SWEEP_BATCH_SIZES = BATCH_SIZES
SWEEP_EPOCHS = [1, 2, 5, 10, 20, 30, 50, 100]
MORE = "under More settings"
#: Session keys that are not widgets: the form's augmentation settings and where they came from.
AUGMENT_KEY, AUGMENT_ORIGIN_KEY = "train_augment_config", "train_augment_origin"
REMEMBERED_KEY = "train_form"
NOTE_KEY = "train_form_note"


class FormError(ValueError):
    """A form that cannot make a run; the message is one sentence naming the widget to change."""


def _nearest(options: list, value):
    return min(options, key=lambda option: abs(np.log(option) - np.log(value)))


def _same(value):
    return value


@dataclass(frozen=True)
class Field:
    """One widget: its session key, the TrainConfig field it sets, and its label on the page."""

    key: str
    name: str
    label: str
    to_widget: Callable = _same
    from_widget: Callable = _same


def cycles_text(cycles: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in cycles)


def parse_cycles(text: str) -> tuple[int, ...]:
    """'30, 60' -> (30, 60); :class:`FormError` in the page's words for anything else."""
    parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    # ASCII digits only ("²".isdigit() is True too), and few of them: int() refuses 4,300 digits.
    if not all(part.isascii() and part.isdigit() and len(part) <= 6 for part in parts):
        raise FormError(
            f"The cosine cycles must be whole numbers of epochs separated by commas (e.g. 30, 60), not "
            f"{text!r}: change Cosine cycles {MORE}."
        )
    return tuple(int(part) for part in parts)


FIELDS: tuple[Field, ...] = (
    Field("train_arch", "architecture", "Architecture"),
    Field("train_epochs", "epochs", "Epochs", from_widget=int),
    Field("train_batch", "batch_size", "Batch size", lambda v: _nearest(BATCH_SIZES, v), int),
    Field("train_lr", "learning_rate", "Learning rate", lambda v: _nearest(LEARNING_RATES, v), float),
    Field("train_optimizer", "optimizer", "Optimizer"),
    Field("train_schedule", "schedule", "Learning-rate schedule"),
    Field("train_class_weights", "class_weights", "Class weights"),
    Field("train_smoothing", "label_smoothing", "Label smoothing", float, float),
    Field("train_mixup", "mixup", "Mixup alpha (0 = off)", float, float),
    Field("train_val_fraction", "val_fraction", "Validation fraction", float, float),
    Field("train_early_stopping", "early_stopping", "Early stopping patience (0 = off)", int, int),
    Field("train_seed", "seed", "Seed", int, int),
    Field("train_warmup", "warmup_epochs", "Warm-up epochs (cosine)", int, int),
    Field("train_cycles", "cycle_epochs", "Cosine cycles (epochs)", cycles_text, parse_cycles),
    Field("train_average", "average_epochs", "Average the final epochs (0 = off)", int, int),
    Field("train_momentum", "momentum", "Momentum (sgd, rmsprop)", float, float),
    Field("train_weight_decay", "weight_decay", "Weight decay", float, float),
)
BY_KEY = {field.key: field for field in FIELDS}
AUGMENT_TOGGLE = "train_augment"
#: Widgets of the form that are not settings of one run, with their first values.
EXTRA_DEFAULTS = {
    "train_name": "",
    "train_sweep_batches": [32, 64, 128, 256],
    "train_sweep_epochs": [50, 100],
}


def label(key: str) -> str:
    """The label of the widget at ``key``, as the page shows it."""
    return BY_KEY[key].label


def widget_values(config: TrainConfig, origin: str | None = None) -> dict:
    """Session values of every setting's widget for ``config``; its augmentation too, from ``origin``.

    Without ``origin`` the augmentation follows the Augmentation page (or the defaults).
    """
    values = {field.key: field.to_widget(getattr(config, field.name)) for field in FIELDS}
    values[AUGMENT_TOGGLE] = config.augment is not None and not config.augment.is_identity
    values[AUGMENT_KEY] = config.augment.to_dict() if origin and config.augment is not None else None
    values[AUGMENT_ORIGIN_KEY] = origin if values[AUGMENT_KEY] else None
    return values


#: The last run settings the form made, as a TrainConfig dict: saved with the user's choices
#: (fertools.prefs), so a new session (a refresh) starts from them, not from the defaults.
SAVED_KEY = "train_config"


def _saved_values(state: MutableMapping) -> dict:
    """Widget values of the saved settings (``SAVED_KEY``); ``{}`` when none or they cannot work."""
    saved = state.get(SAVED_KEY)
    if not isinstance(saved, dict):
        return {}
    try:
        config = TrainConfig.from_dict(saved)
        config.validate()
        return widget_values(config, origin="your last settings")
    except (TypeError, ValueError, KeyError):
        return {}


def restore(state: MutableMapping) -> None:
    """Give every form widget its remembered value, else its default; call before drawing them.

    Remembered: this session's values (a visit to another page), else the settings the user saved
    last time (a refresh, a new tab).
    """
    remembered = state.get(REMEMBERED_KEY) or _saved_values(state)
    for key, value in {**widget_values(TrainConfig()), **EXTRA_DEFAULTS}.items():
        if key not in state:
            state[key] = remembered.get(key, value)


def remember(state: MutableMapping) -> None:
    """Keep the form's values past a visit to another page; call after drawing the widgets."""
    keys = [*BY_KEY, AUGMENT_TOGGLE, *EXTRA_DEFAULTS]
    state[REMEMBERED_KEY] = {key: state[key] for key in keys if key in state}
    try:
        state[SAVED_KEY] = config_from(state).to_dict()
    except (FormError, ValueError):
        pass  # half-typed settings: keep the last ones that worked


def apply_preset(state: MutableMapping) -> None:
    """Fill every field from the preset chosen at ``train_preset``, its augmentation included."""
    name = state.get("train_preset")
    if name in PRESETS:
        state.update(widget_values(PRESETS[name], origin=f"the {name} preset"))
        note = PRESET_NOTES.get(name)
        state[NOTE_KEY] = f"Every setting below now comes from the {name} preset." + (
            f" {note}" if note else ""
        )


def augmentation(state: MutableMapping) -> tuple[AugmentConfig, str]:
    """The form's augmentation settings and where they come from, in the page's words."""
    if state.get(AUGMENT_KEY):
        return AugmentConfig.from_dict(state[AUGMENT_KEY]), f"from {state.get(AUGMENT_ORIGIN_KEY)}"
    carried = state.get("augment_config")
    if isinstance(carried, AugmentConfig):
        return carried, "from the Augmentation page"
    if carried:
        return AugmentConfig.from_dict(carried), "from the Augmentation page"
    return AugmentConfig(), "defaults"


def follow_augmentation_page(state: MutableMapping) -> None:
    """Drop the preset's augmentation settings: the form takes the Augmentation page's again."""
    state[AUGMENT_KEY] = state[AUGMENT_ORIGIN_KEY] = None


def adapt_to_epochs(state: MutableMapping) -> None:
    """After Epochs changed: rescale the cosine cycles and the weight average, and say so."""
    epochs = int(state["train_epochs"])
    before = int((state.get(REMEMBERED_KEY) or {}).get("train_epochs", epochs))
    try:
        cycles = parse_cycles(state["train_cycles"])
    except FormError:
        cycles = None  # the student is typing them: leave them to the check at Start
    old = TrainConfig(epochs=before, cycle_epochs=cycles or (), average_epochs=int(state["train_average"]))
    new = old.with_epochs(epochs)
    changes = []
    if cycles and new.cycle_epochs != cycles:
        state["train_cycles"] = cycles_text(new.cycle_epochs)
        changes.append(f"Cosine cycles to {state['train_cycles'] or 'empty (one cycle)'}")
    if new.average_epochs != old.average_epochs:
        state["train_average"] = new.average_epochs
        changes.append(f"Average the final epochs to {new.average_epochs}")
    if changes:
        state[NOTE_KEY] = f"For {epochs} epochs, {' and '.join(changes)} ({MORE})."


def config_from(state: MutableMapping) -> TrainConfig:
    """The :class:`TrainConfig` the form describes; :class:`FormError` naming the widget to change."""
    values = {field.name: field.from_widget(state[field.key]) for field in FIELDS}
    epochs, cycles, average = values["epochs"], values["cycle_epochs"], values["average_epochs"]
    if cycles and min(cycles) < 1:
        raise FormError(f"Every cosine cycle must last at least 1 epoch: change Cosine cycles {MORE}.")
    if cycles and sum(cycles) != epochs:
        raise FormError(
            f"The cosine cycles add up to {sum(cycles)} epochs but Epochs is {epochs}: change Cosine "
            f"cycles {MORE} so they add up to {epochs}, or empty it for one cycle."
        )
    if average > epochs:
        raise FormError(
            f"Average the final epochs is {average} but Epochs is {epochs}: set it {MORE} to at most {epochs}."
        )
    augment = augmentation(state)[0] if state[AUGMENT_TOGGLE] else None
    return TrainConfig(**values, augment=augment)
