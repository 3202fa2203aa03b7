"""Synthetic faces: determinism, shapes, balance, class subsets and expressions that differ.

The training check (a small CNN learns these faces) lives with the training
tests; everything here runs in well under a few seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fertools import synthetic
from fertools.constants import FER2013_CLASSES, IMAGE_SIZE

N_PER_CLASS = 40

# Where the mouth is in a 48x48 synthetic face (rows, columns), whatever the pose.
MOUTH = (slice(28, 44), slice(12, 36))


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    """All seven classes, ``N_PER_CLASS`` faces each (seed 0)."""
    return synthetic.generate(N_PER_CLASS, seed=0)


def class_mean(images: np.ndarray, labels: np.ndarray, label: int) -> np.ndarray:
    """Mean of one class's faces, each scaled to zero mean and unit std: ``float64`` (48, 48).

    Scaling first keeps the random skin, background and contrast from
    swamping the expression in a mean of a few dozen faces.
    """
    chosen = images[labels == label].astype(np.float64)
    flat = chosen.reshape(len(chosen), -1)
    flat = (flat - flat.mean(axis=1, keepdims=True)) / flat.std(axis=1, keepdims=True)
    return flat.mean(axis=0).reshape(chosen.shape[1:])


def test_same_seed_gives_identical_bytes(faces):
    images, labels = synthetic.generate(N_PER_CLASS, seed=0)
    assert images.tobytes() == faces[0].tobytes()
    assert labels.tobytes() == faces[1].tobytes()


def test_different_seed_gives_different_faces(faces):
    images, labels = synthetic.generate(N_PER_CLASS, seed=1)
    assert not np.array_equal(images, faces[0])
    assert not np.array_equal(labels, faces[1])  # the shuffle differs too


def test_shapes_dtypes_and_label_range(faces):
    images, labels = faces
    count = N_PER_CLASS * len(FER2013_CLASSES)
    assert images.shape == (count, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == np.uint8
    assert labels.shape == (count,)
    assert labels.dtype == np.int64
    assert labels.min() == 0
    assert labels.max() == len(FER2013_CLASSES) - 1


def test_classes_are_balanced_and_shuffled(faces):
    _, labels = faces
    assert np.bincount(labels).tolist() == [N_PER_CLASS] * len(FER2013_CLASSES)
    # Shuffled: not sorted by class.
    assert np.any(np.diff(labels) < 0)


def test_faces_are_not_blank(faces):
    images, _ = faces
    per_face_std = images.reshape(len(images), -1).std(axis=1)
    assert per_face_std.min() > 10.0


def test_happy_and_sad_mouths_differ(faces):
    images, labels = faces
    happy = class_mean(images, labels, FER2013_CLASSES.index("happy"))
    sad = class_mean(images, labels, FER2013_CLASSES.index("sad"))
    mouth_gap = np.abs(happy[MOUTH] - sad[MOUTH]).mean()
    assert mouth_gap > 0.15
    # The mouth is where they differ most: more than across the whole face.
    assert mouth_gap > np.abs(happy - sad).mean()


def test_every_class_has_its_own_mean_face(faces):
    images, labels = faces
    means = [class_mean(images, labels, label) for label in range(len(FER2013_CLASSES))]
    for first in range(len(means)):
        for second in range(first + 1, len(means)):
            gap = np.abs(means[first] - means[second]).mean()
            assert gap > 0.05, (FER2013_CLASSES[first], FER2013_CLASSES[second])


def test_a_subset_of_classes_is_labelled_in_its_own_order(faces):
    subset = ("sad", "happy", "surprise", "neutral", "angry")
    images, labels = synthetic.generate(20, seed=3, classes=subset)
    assert images.shape == (100, IMAGE_SIZE, IMAGE_SIZE)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3, 4]
    assert np.bincount(labels).tolist() == [20] * 5
    # Label 1 means "happy" here: its mouths look like the full set's happy ones.
    all_images, all_labels = faces
    happy = class_mean(all_images, all_labels, FER2013_CLASSES.index("happy"))[MOUTH]
    sad = class_mean(all_images, all_labels, FER2013_CLASSES.index("sad"))[MOUTH]
    subset_happy = class_mean(images, labels, 1)[MOUTH]
    assert np.abs(subset_happy - happy).mean() < np.abs(subset_happy - sad).mean()


def test_zero_faces_per_class_gives_empty_arrays():
    images, labels = synthetic.generate(0)
    assert images.shape == (0, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == np.uint8
    assert labels.shape == (0,)
    assert labels.dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("happy", "bored")}, "unknown class names"),
        ({"classes": ("happy", "happy")}, "distinct"),
        ({"classes": ()}, "non-empty"),
        ({"n_per_class": -1}, "n_per_class"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate(**kwargs)


def test_render_face_draws_one_face():
    face = synthetic.render_face(synthetic.FaceParams(), np.random.default_rng(0))
    assert face.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert face.dtype == np.uint8
    assert face.std() > 10.0
    # With no noise the rng plays no part.
    again = synthetic.render_face(synthetic.FaceParams(), np.random.default_rng(99))
    np.testing.assert_array_equal(face, again)


def test_render_face_follows_the_expression():
    rng = np.random.default_rng(0)
    neutral = synthetic.render_face(synthetic.FaceParams(), rng)
    smiling = synthetic.render_face(synthetic.FaceParams(mouth_curve=1.0, mouth_open=0.4), rng)
    frowning = synthetic.render_face(synthetic.FaceParams(brow_slope=1.0), rng)
    assert not np.array_equal(neutral[MOUTH], smiling[MOUTH])
    # Brows only: the mouth is untouched, the upper face is not.
    np.testing.assert_array_equal(neutral[MOUTH], frowning[MOUTH])
    assert not np.array_equal(neutral[:24], frowning[:24])


def test_expression_params_jitter_around_the_prototype():
    rng = np.random.default_rng(0)
    happy = [synthetic.expression_params("happy", rng) for _ in range(50)]
    sad = [synthetic.expression_params("sad", rng) for _ in range(50)]
    assert len({face.mouth_curve for face in happy}) == 50  # jittered
    assert min(face.mouth_curve for face in happy) > max(face.mouth_curve for face in sad)
    assert np.mean([face.brow_slope for face in sad]) < -0.5  # inner ends up
    assert len({(face.dx, face.dy, face.background) for face in happy}) == 50  # random look


def test_expression_params_rejects_an_unknown_emotion():
    with pytest.raises(ValueError, match="unknown emotion 'bored'"):
        synthetic.expression_params("bored", np.random.default_rng(0))


def test_face_params_are_frozen():
    params = synthetic.FaceParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.mouth_curve = 1.0  # type: ignore[misc]


def test_synthetic_note_says_these_are_not_real_people():
    assert "Synthetic" in synthetic.SYNTHETIC_NOTE
    assert "not real people" in synthetic.SYNTHETIC_NOTE


# --- frames with faces -----------------------------------------------------------------------------


def test_face_frame_pastes_the_neutral_face_where_asked():
    import cv2

    frame = synthetic.face_frame([(220, 140, 200)], background=90)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    big = cv2.resize(synthetic.neutral_face(), (200, 200), interpolation=cv2.INTER_CUBIC)
    # Inside the square, an exact copy in every channel; only its one-pixel edge is feathered.
    inside = frame[142:338, 222:418]
    np.testing.assert_array_equal(inside, np.repeat(big[2:-2, 2:-2, None], 3, axis=2))
    outside = np.ones(frame.shape[:2], bool)
    outside[139:341, 219:421] = False
    assert (frame[outside] == 90).all()


def test_face_frame_takes_given_faces_and_a_background_image():
    faces, _ = synthetic.generate(n_per_class=1, seed=0)
    wall = np.tile(np.linspace(50, 200, 640, dtype=np.uint8), (480, 1))
    frame = synthetic.face_frame([(10, 10, 100), (300, 200, 150)], faces[:2], background=wall)
    np.testing.assert_array_equal(frame[400:, :, 1], wall[400:])
    assert not np.array_equal(frame[60, 20:100, 0], wall[60, 20:100])
    with pytest.raises(ValueError, match="2 places but 1 faces"):
        synthetic.face_frame([(10, 10, 100), (300, 200, 150)], faces[:1])


def test_paste_face_rotates_and_tints():
    scene = np.zeros((200, 200, 3), np.float32)
    face = np.full((48, 48), 200, np.uint8)
    synthetic.paste_face(scene, face, (100, 100), 100, angle=45.0, tint=np.array([0.5, 1.0, 1.0], np.float32))
    np.testing.assert_allclose(scene[100, 100], [100.0, 200.0, 200.0], atol=0.5)
    # A square turned 45 degrees reaches its corners along the axes: 50 * sqrt(2) from the centre.
    assert scene[100, 100 + 65, 1] > 150 and scene[100 + 65, 100 + 65, 1] == 0
