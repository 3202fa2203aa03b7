"""The Train page's form model (ui/train_form.py) on a plain dict, without Streamlit."""

from __future__ import annotations

import pytest

from fertools.config import PRESETS, AugmentConfig, TrainConfig
from ui import train_form as form


def filled(preset: str | None = None, **state) -> dict:
    values = {"train_preset": preset, **state}
    form.restore(values)
    if preset:
        form.apply_preset(values)
    form.remember(values)
    return values


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_comes_back_whole_from_the_form(name):
    assert form.config_from(filled(name)) == PRESETS[name]


def test_the_default_form_is_the_default_config_with_the_augmentation_pages_settings():
    state = filled(augment_config={"rotation": 5.0})
    assert form.config_from(state) == TrainConfig(augment=AugmentConfig(rotation=5.0))
    assert form.augmentation(state)[1] == "from the Augmentation page"


def test_a_preset_without_augmentation_switches_it_off_and_forgets_the_previous_preset():
    state = filled("default")
    state["train_preset"] = "quick"
    form.apply_preset(state)
    assert state[form.AUGMENT_TOGGLE] is False and state[form.AUGMENT_KEY] is None
    assert form.config_from(state).augment is None


def test_changing_epochs_rescales_cycles_and_average_and_says_so_in_the_widgets_words():
    state = filled("default")
    state["train_epochs"] = 100
    form.adapt_to_epochs(state)
    assert state["train_cycles"] == "12, 20, 18, 25, 25" and state["train_average"] == 8
    note = state[form.NOTE_KEY]
    assert "Cosine cycles to 12, 20, 18, 25, 25" in note and "Average the final epochs to 8" in note
    assert "_" not in note  # no field names
    assert form.config_from(state).epochs == 100


def test_changing_epochs_leaves_cycles_being_typed_to_the_check_at_start():
    state = filled("default")
    state["train_cycles"] = "30, 1x"
    state["train_epochs"] = 40
    form.adapt_to_epochs(state)
    assert state["train_cycles"] == "30, 1x" and state["train_average"] == 3
    assert "Cosine cycles" not in state[form.NOTE_KEY]
    with pytest.raises(form.FormError, match="whole numbers .* not '30, 1x': change Cosine cycles"):
        form.config_from(state)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_cycles": "10, ten"}, "cosine cycles must be whole numbers"),
        ({"train_cycles": "0, 30"}, "at least 1 epoch: change Cosine cycles"),
        ({"train_cycles": "10, 10"}, "add up to 20 epochs but Epochs is 30: change Cosine cycles"),
        ({"train_average": 31}, "Average the final epochs is 31 but Epochs is 30"),
    ],
)
def test_a_form_that_cannot_run_names_the_widget(changes, message):
    state = filled(**changes)
    with pytest.raises(form.FormError, match=message) as raised:
        form.config_from(state)
    assert "cycle_epochs" not in str(raised.value) and "average_epochs" not in str(raised.value)


def test_restore_brings_back_what_remember_kept_once_the_widgets_were_forgotten():
    state = filled()
    state.update(train_epochs=7, train_sweep_batches=[16])
    form.remember(state)
    for key in [*form.BY_KEY, "train_sweep_batches"]:  # Streamlit drops widget values off the page
        del state[key]
    form.restore(state)
    assert state["train_epochs"] == 7 and state["train_sweep_batches"] == [16]
    assert state["train_lr"] == 1e-3


def test_every_widget_label_is_unique():
    labels = [field.label for field in form.FIELDS]
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize(
    "typed", ["30, ²", "30, ٣", "9" * 5000], ids=["superscript", "arabic-indic", "5000-digits"]
)
def test_cycles_that_python_calls_digits_but_int_refuses_are_a_form_error(typed):
    with pytest.raises(form.FormError, match="whole numbers of epochs separated by commas"):
        form.parse_cycles(typed)
    assert form.parse_cycles(" 30; 60 ") == (30, 60)
