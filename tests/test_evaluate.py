"""Evaluation: the report's numbers on a hand-made example, the normalised confusion, flip TTA."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fertools.evaluate import evaluate, format_table, predict_proba, report

CLASSES = ("a", "b", "c", "d")


def one_hot(predicted: list[int], k: int = len(CLASSES)) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[predicted]


@pytest.fixture
def hand_made():
    """Six faces: true 0,0,0,1,1,2 predicted 0,0,1,1,2,2; class d never occurs."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    return report(one_hot([0, 0, 1, 1, 2, 2]), labels, CLASSES)


def test_confusion_and_accuracy(hand_made):
    assert hand_made.n == 6
    assert hand_made.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(
        hand_made.confusion,
        [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(hand_made.predictions, [0, 0, 1, 1, 2, 2])


def test_precision_recall_f1(hand_made):
    rows = {c.name: (c.precision, c.recall, c.f1, c.support) for c in hand_made.per_class}
    assert rows["a"] == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert rows["b"] == pytest.approx((0.5, 0.5, 0.5, 2))
    assert rows["c"] == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert rows["d"] == (0.0, 0.0, 0.0, 0)  # absent and never predicted: zeros, no division by zero
    assert hand_made.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3 + 0) / 4)


def test_normalised_confusion(hand_made):
    np.testing.assert_allclose(
        hand_made.confusion_normalized,
        [[2 / 3, 1 / 3, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
    )


def test_to_dict_and_table(hand_made):
    values = hand_made.to_dict()
    assert set(values) >= {"accuracy", "n", "per_class", "confusion", "classes", "macro_f1", "tta"}
    assert values["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert values["confusion"][0] == [2, 1, 0, 0]
    table = format_table(hand_made)
    assert table.splitlines()[0] == "accuracy 0.6667 on 6 faces"
    assert "confusion (rows: true, columns: predicted)" in table


def _left_right_model() -> keras.Model:
    """Two classes: 'brighter on the left' vs 'brighter on the right' (so mirroring swaps them)."""
    inputs = keras.Input(shape=(48, 48, 1))
    logits = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    left = np.zeros((48, 48), np.float32)
    left[:, :24] = 1.0 / 255
    kernel = np.stack([left.ravel(), left[:, ::-1].ravel()], axis=1)
    model.layers[2].set_weights([kernel, np.zeros(2, np.float32)])
    return model


def test_tta_averages_the_face_and_its_mirror():
    model = _left_right_model()
    faces = np.zeros((3, 48, 48), np.uint8)
    faces[0, :, :10] = 200  # bright left edge
    faces[1, :, -5:] = 90  # bright right edge
    faces[2] = 50
    plain = predict_proba(model, faces)
    mirrored = predict_proba(model, faces[:, :, ::-1])
    tta = predict_proba(model, faces, tta=True)
    assert plain.dtype == np.float32 and plain.shape == (3, 2)
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, atol=1e-6)
    # This model is mirror-antisymmetric, so TTA makes it undecided.
    np.testing.assert_allclose(tta, 0.5, atol=1e-6)
    assert plain[0, 0] > 0.99 and plain[1, 1] > 0.9


def test_evaluate_with_and_without_tta():
    model = _left_right_model()
    faces = np.zeros((2, 48, 48), np.uint8)
    faces[0, :, :10] = 200
    faces[1, :, -10:] = 200
    result = evaluate(model, faces, np.array([0, 1]), ("left", "right"))
    assert result.accuracy == 1.0 and not result.tta
    flipped = evaluate(model, faces, np.array([0, 1]), ("left", "right"), tta=True)
    assert flipped.tta and "(flip TTA)" in format_table(flipped)
    np.testing.assert_allclose(flipped.probabilities, 0.5, atol=1e-6)


def test_evaluate_refuses_an_empty_split():
    with pytest.raises(ValueError, match="empty"):
        evaluate(_left_right_model(), np.zeros((0, 48, 48), np.uint8), np.zeros(0, int), ("l", "r"))
