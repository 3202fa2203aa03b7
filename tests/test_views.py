"""Test-time view averaging (fertools.views) and the modes the Recognizer and evaluate expose."""

from __future__ import annotations

import numpy as np
import pytest

from fertools.views import CROP_FRACTION, VIEWS, average_views, crops


class Recorder:
    """A stand-in model: each face's probabilities are its mean brightness and left-right tilt; it records its batches."""

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        self.batches.append(len(faces))
        left = faces[:, :, : faces.shape[2] // 2].mean(axis=(1, 2))
        right = faces[:, :, faces.shape[2] // 2 :].mean(axis=(1, 2))
        total = left + right + 1e-9
        return np.stack([left / total, right / total], axis=1)


def faces_with_a_bright_left_half(n: int = 3) -> np.ndarray:
    faces = np.zeros((n, 48, 48), np.uint8)
    faces[:, :, :24] = 200
    faces[:, :, 24:] = 50
    return faces


def test_one_view_is_the_face_itself_and_mirroring_balances_left_and_right():
    faces = faces_with_a_bright_left_half()
    model = Recorder()
    np.testing.assert_allclose(average_views(model, faces, "one"), model(faces))
    mirrored = average_views(model, faces, "mirror")
    np.testing.assert_allclose(mirrored, 0.5, atol=1e-6)  # a face and its mirror image average out


def test_ten_crop_is_twelve_views_in_one_batch():
    faces = faces_with_a_bright_left_half(4)
    model = Recorder()
    probabilities = average_views(model, faces, "ten_crop")
    assert model.batches == [4 * 12]  # six upright views and their mirrors, one call
    assert probabilities.shape == (4, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    views = crops(faces)
    assert len(views) == 6 and all(view.shape == faces.shape for view in views)
    # 44 of 48 px: the left crops see more of the bright half than the whole face does, the right less.
    assert int(round(48 * CROP_FRACTION)) == 44
    assert views[1].mean() > faces.mean() and views[2].mean() < faces.mean()


def test_unknown_modes_and_empty_batches():
    model = Recorder()
    with pytest.raises(ValueError, match="views must be one of"):
        average_views(model, faces_with_a_bright_left_half(), "twenty")
    assert average_views(model, np.zeros((0, 48, 48), np.uint8), "ten_crop").shape == (0, 2)
    assert VIEWS == ("one", "mirror", "ten_crop")


def test_the_recognizer_and_evaluate_take_the_views(tiny_model_dir):
    from fertools import evaluate
    from fertools.modelcard import load_model_dir
    from fertools.recognize import Recognizer
    from fertools.synthetic import generate

    faces, labels = generate(n_per_class=2, seed=3)
    recognizer = Recognizer.load(tiny_model_dir, engine="keras")
    for views in VIEWS:
        probabilities = recognizer.classify(faces, views=views)
        assert probabilities.shape == (len(faces), 7)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(
        recognizer.classify(faces, tta=True), recognizer.classify(faces, views="mirror")
    )
    model, card = load_model_dir(tiny_model_dir)
    scored = evaluate.evaluate(model, faces, labels, tuple(card.classes), views="ten_crop")
    assert (scored.views, scored.tta, scored.to_dict()["views"]) == ("ten_crop", False, "ten_crop")
    assert "ten-crop" in evaluate.format_table(scored)
    assert evaluate.evaluate(model, faces, labels, tuple(card.classes), tta=True).views == "mirror"
