"""Scoring a model on a dataset's held-out split: splits, class mapping, chunks, clicked cells."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fertools.data import Dataset
from fertools.evaluate import cell_at, evaluate_split, held_out_splits, label_indices, split_rows

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def constant_model(winner: int, k: int = len(CLASSES)) -> keras.Model:
    """A network that gives class ``winner`` the highest probability whatever the face."""
    inputs = keras.Input(shape=(48, 48, 1))
    dense = keras.layers.Dense(k)
    model = keras.Model(inputs, keras.layers.Softmax()(dense(keras.layers.Flatten()(inputs))))
    bias = np.zeros(k, np.float32)
    bias[winner] = 5.0
    dense.set_weights([np.zeros((48 * 48, k), np.float32), bias])
    return model


def test_held_out_splits_come_test_first(tiny_builtin):
    assert held_out_splits(tiny_builtin) == ["test", "val"]
    assert held_out_splits(tiny_builtin.subset(["train", "val"])) == ["val"]
    assert held_out_splits(tiny_builtin.subset("train")) == []


def test_labels_are_mapped_to_the_models_class_order():
    labels = np.array([0, 1, 2, 0])
    assert label_indices(labels, ("a", "b", "c"), ("c", "a", "b")).tolist() == [1, 2, 0, 1]
    with pytest.raises(ValueError, match="does not know the classes contempt of this data"):
        label_indices(labels, ("a", "contempt", "c"), ("a", "c"))


def test_evaluate_split_scores_only_that_split_in_chunks(tiny_builtin):
    happy = CLASSES.index("happy")
    model = constant_model(happy)
    calls = []
    evaluation = evaluate_split(model, tiny_builtin, "test", CLASSES, chunk_size=4, progress=calls.append)
    test = tiny_builtin.subset("test")
    assert evaluation.n == len(test) == 14
    np.testing.assert_array_equal(evaluation.labels, test.labels)
    assert evaluation.accuracy == pytest.approx(np.mean(test.labels == happy))
    assert evaluation.confusion[:, happy].sum() == 14 and evaluation.confusion.sum() == 14
    assert calls == pytest.approx([4 / 14, 8 / 14, 12 / 14, 1.0])
    # The chunk counts views, not faces: with the mirror image, half as many faces a chunk.
    mirrored = []
    evaluate_split(model, tiny_builtin, "test", CLASSES, tta=True, chunk_size=4, progress=mirrored.append)
    assert mirrored == pytest.approx([k / 14 for k in (2, 4, 6, 8, 10, 12, 14)])
    whole = evaluate_split(model, tiny_builtin, "test", CLASSES, chunk_size=1000)
    np.testing.assert_allclose(whole.probabilities, evaluation.probabilities, rtol=1e-6)
    # Row i of the evaluation is this row of the dataset.
    rows = split_rows(tiny_builtin, "test")
    np.testing.assert_array_equal(tiny_builtin.labels[rows], evaluation.labels)


def test_evaluate_split_follows_the_models_class_order(tiny_builtin):
    reversed_classes = CLASSES[::-1]
    model = constant_model(reversed_classes.index("happy"))
    evaluation = evaluate_split(model, tiny_builtin, "val", reversed_classes)
    assert evaluation.classes == reversed_classes
    happy_faces = int((tiny_builtin.subset("val").labels == CLASSES.index("happy")).sum())
    assert evaluation.per_class[reversed_classes.index("happy")].support == happy_faces
    assert evaluation.accuracy == pytest.approx(happy_faces / evaluation.n)


def test_evaluate_split_refuses_a_missing_split(tiny_builtin):
    only_train: Dataset = tiny_builtin.subset("train")
    with pytest.raises(ValueError, match="the data has no 'test' split; it has train"):
        evaluate_split(constant_model(0), only_train, "test", CLASSES)


def test_cell_at_reads_a_clicked_point():
    assert cell_at({"x": "sad", "y": "happy", "customdata": [3, 4]}, CLASSES) == (3, 4)
    assert cell_at({"x": "sad", "y": "happy"}, CLASSES) == (3, 4)  # no customdata: the axis names
    assert cell_at({"x": "sad", "y": "happy", "customdata": [9, 4]}, CLASSES) == (3, 4)
    assert cell_at({"x": "sad", "y": "nobody"}, CLASSES) is None
    assert cell_at({"customdata": ["a", "b"]}, CLASSES) is None
    assert cell_at({}, CLASSES) is None
