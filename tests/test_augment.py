"""Augmentation: the preview runs the training layers; shapes, dtypes, seeds and single transforms."""

from __future__ import annotations

import numpy as np
import pytest

from fertools.augment import build_augmenter, preview
from fertools.config import NO_AUGMENTATION, AugmentConfig


@pytest.fixture(scope="module")
def faces(tiny_builtin) -> np.ndarray:
    """Three synthetic faces, ``uint8`` (3, 48, 48)."""
    return tiny_builtin.images[:3]


def test_preview_shapes_and_dtype(faces):
    out = preview(faces, AugmentConfig(), n=5, seed=0)
    assert out.shape == (3, 5, 48, 48)
    assert out.dtype == np.uint8


def test_preview_rejects_a_channel_axis(faces):
    with pytest.raises(ValueError, match="expected faces of shape"):
        preview(faces[..., None], AugmentConfig())


def test_preview_is_deterministic_for_a_seed(faces):
    config = AugmentConfig(brightness=0.2, contrast=0.2, erasing=0.5)
    a = preview(faces, config, n=4, seed=7)
    b = preview(faces, config, n=4, seed=7)
    c = preview(faces, config, n=4, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The default config really changes the faces.
    assert not np.array_equal(a, np.repeat(faces[:, None], 4, axis=1))


def test_no_augmentation_is_the_identity(faces):
    assert NO_AUGMENTATION.is_identity
    assert build_augmenter(NO_AUGMENTATION).layers == []
    out = preview(faces, NO_AUGMENTATION, n=3)
    np.testing.assert_array_equal(out, np.repeat(faces[:, None], 3, axis=1))


def test_flip_only_gives_the_face_or_its_mirror(faces):
    flip_only = AugmentConfig(0.0, 0.0, 0.0, 0.0, True, 0.0, 0.0, 0.0)
    assert not flip_only.is_identity
    out = preview(faces, flip_only, n=8, seed=0)
    flipped = 0
    for face, copies in zip(faces, out):
        for copy in copies:
            if np.array_equal(copy, face[:, ::-1]):
                flipped += 1
            else:
                np.testing.assert_array_equal(copy, face)
    # 24 fair coin flips: both outcomes show up.
    assert 0 < flipped < 24


def test_config_round_trips_through_a_dict():
    config = AugmentConfig(rotation=5, horizontal_flip=False, erasing=0.3)
    assert AugmentConfig.from_dict({**config.to_dict(), "unknown": 1}) == config
