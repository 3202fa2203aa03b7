"""What the Train page asks fertools: durations, estimates, layer tables, mistakes, epochs rescaling."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from fertools.callbacks import MAX_CURVE_POINTS, ProgressReport
from fertools.config import PRESETS, TrainConfig
from fertools.estimate import estimate_sweep, format_duration, measured_speed
from fertools.evaluate import mistakes, normalize_rows, worst_confusion
from fertools.layers import layer_rows
from fertools.runs import RunDir


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00"),
        (65.4, "1:05"),
        (120, "2:00"),
        (3725, "1:02:05"),
        (None, "–"),
        (float("nan"), "–"),
        (-1, "–"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def fake_run(run_id: str, architecture: str, batch_size: int, rate: float | None):
    config = TrainConfig(architecture=architecture, batch_size=batch_size)
    return SimpleNamespace(id=run_id, config=config, progress={"images_per_second": rate} if rate else None)


def test_measured_speed_takes_the_nearest_batch_size_then_the_newest_run():
    runs = [
        fake_run("new", "default", 32, 100.0),
        fake_run("other-arch", "mini_xception", 64, 999.0),
        fake_run("old", "default", 64, 80.0),
        fake_run("older", "default", 64, 70.0),
        fake_run("never-started", "default", 128, None),
    ]
    assert measured_speed(runs, "default", 64).run_id == "old"
    assert measured_speed(runs, "default", 16).run_id == "new"
    assert measured_speed(runs, "resnet50", 64) is None


def test_a_sweep_estimate_counts_runs_epochs_and_seconds():
    runs = [fake_run("a", "default", 32, 100.0), fake_run("b", "default", 64, 200.0)]
    estimate = estimate_sweep([32, 64], [1, 2], "default", 1000, runs)
    assert (estimate.runs, estimate.epochs) == (4, 6)
    assert estimate.seconds == pytest.approx(1000 * 3 / 100 + 1000 * 3 / 200)
    unmeasured = estimate_sweep([32], [5], "resnet50", 1000, runs)
    assert (unmeasured.runs, unmeasured.epochs, unmeasured.seconds) == (1, 5, None)


def test_layer_rows_name_every_layer_with_its_shape_and_weights():
    inputs = keras.Input((4,))
    model = keras.Model(
        inputs, keras.layers.Dense(3, name="head")(keras.layers.Dense(5, name="hidden")(inputs))
    )
    rows = layer_rows(model)
    assert [(row.name, row.kind, row.output_shape, row.parameters) for row in rows[1:]] == [
        ("hidden", "Dense", "(None, 5)", 25),
        ("head", "Dense", "(None, 3)", 18),
    ]


def test_mistakes_are_the_most_confident_first_and_the_worst_pair_is_found():
    labels = np.array([0, 0, 0, 1, 2])
    probabilities = np.array(
        [[0.2, 0.7, 0.1], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]], dtype="float32"
    )
    assert mistakes(labels, probabilities, true=0, predicted=1).tolist() == [1, 0]
    assert mistakes(labels, probabilities, true=0, predicted=1, limit=1).tolist() == [1]
    assert mistakes(labels, probabilities, true=1, predicted=0).tolist() == []
    confusion = np.array([[1, 2, 0], [0, 1, 0], [1, 0, 0]])
    assert worst_confusion(confusion) == (0, 1)
    assert worst_confusion(np.diag([3, 1, 2])) is None
    assert normalize_rows(np.array([[1, 3], [0, 0]])).tolist() == [[0.25, 0.75], [0.0, 0.0]]


@pytest.mark.parametrize("epochs", [1, 3, 5, 6, 10, 100, 245, 300])
def test_with_epochs_keeps_the_preset_valid(epochs):
    config = PRESETS["default"].with_epochs(epochs)
    assert config.epochs == epochs and 1 <= config.average_epochs <= epochs
    assert not config.cycle_epochs or (sum(config.cycle_epochs) == epochs and min(config.cycle_epochs) >= 1)
    config.validate()


def test_with_epochs_changes_nothing_at_the_same_epochs_and_keeps_averaging_off():
    preset = PRESETS["default"]
    assert preset.with_epochs(preset.epochs) == preset
    assert TrainConfig(epochs=30).with_epochs(3) == TrainConfig(epochs=3)
    assert PRESETS["default"].with_epochs(10).cycle_epochs == (1, 2, 2, 3, 2)


def test_the_batch_curve_stays_bounded_and_spans_the_whole_run(tmp_path):
    report = ProgressReport(RunDir(tmp_path), epochs=10, batches=100, batch_size=8)
    for step in range(1, 1001):
        report._add_curve_point(step / 100, {"loss": 1.0 / step, "accuracy": 0.5})
    curve = report._curve
    assert MAX_CURVE_POINTS // 2 <= len(curve) <= MAX_CURVE_POINTS
    assert curve[0]["x"] < 0.1 and curve[-1]["x"] > 9.9
    assert [point["x"] for point in curve] == sorted(point["x"] for point in curve)
