"""The one preprocessing path: any picture to a 48x48 grayscale uint8 face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fertools.preprocess import crop_face, expand_box, load_photo, to_face, to_gray


def test_to_gray_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_gray(gray) is gray
    np.testing.assert_array_equal(to_gray(gray[..., None]), gray)

    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[:] = (10, 200, 50)
    assert to_gray(bgr).shape == (2, 2)
    assert int(to_gray(bgr)[0, 0]) == round(0.114 * 10 + 0.587 * 200 + 0.299 * 50)

    bgra = np.concatenate([bgr, np.full((2, 2, 1), 3, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_gray(bgra), to_gray(bgr))  # alpha ignored


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.full((2, 2), 40000, np.uint16), 40000 >> 8),
        (np.full((2, 2), 0.5, np.float32), 127),  # floats in 0..1 are fractions of white
        (np.full((2, 2), 200.0, np.float64), 200),  # larger floats are gray levels
        (np.full((2, 2), 300, np.int32), 255),  # clipped, not wrapped
        (np.full((2, 2), -5, np.int16), 0),
    ],
    ids=["uint16", "float-fraction", "float-levels", "int32-clipped", "negative"],
)
def test_to_gray_dtypes(image, expected):
    out = to_gray(image)
    assert out.dtype == np.uint8
    assert set(out.ravel().tolist()) == {expected}


def test_to_gray_refuses_other_shapes():
    with pytest.raises(ValueError, match="expected a gray, BGR or BGRA image"):
        to_gray(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        to_gray(np.zeros((2, 4, 4, 3), np.uint8))


def test_to_face_sizes_and_interpolation():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, size=(100, 80, 3), dtype=np.uint8)
    face = to_face(big)
    assert face.shape == (48, 48) and face.dtype == np.uint8
    # Shrinking averages (INTER_AREA), as training data was made.
    np.testing.assert_array_equal(face, cv2.resize(to_gray(big), (48, 48), interpolation=cv2.INTER_AREA))

    small = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    np.testing.assert_array_equal(to_face(small), cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR))

    exact = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(to_face(exact), exact)
    assert to_face(exact[:, ::-1]).flags["C_CONTIGUOUS"]
    assert to_face(big, size=64).shape == (64, 64)


def test_expand_box_grows_and_clips():
    assert expand_box((100, 100, 50, 40), 0.1, (480, 640)) == (95, 96, 60, 48)
    assert expand_box((0, 0, 50, 50), 0.2, (480, 640, 3)) == (0, 0, 60, 60)  # clipped at the top-left
    assert expand_box((600, 440, 40, 40), 0.5, (480, 640)) == (580, 420, 60, 60)  # and bottom-right
    assert expand_box((10, 10, 20, 20), 0.0, (480, 640)) == (10, 10, 20, 20)


def test_crop_face_uses_the_margin(haar_face_frame):
    box = (220, 140, 200, 200)
    face = crop_face(haar_face_frame, box, margin=0.1)
    assert face.shape == (48, 48) and face.dtype == np.uint8
    x, y, w, h = expand_box(box, 0.1, haar_face_frame.shape)
    np.testing.assert_array_equal(face, to_face(haar_face_frame[y : y + h, x : x + w]))
    assert not np.array_equal(face, crop_face(haar_face_frame, box, margin=0.0))


def test_load_photo():
    image = np.random.default_rng(1).integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_photo(cv2.imencode(".png", image)[1].tobytes()), image)
    deep = np.full((5, 5), 1000, np.uint16)
    frame = load_photo(cv2.imencode(".png", deep)[1].tobytes())  # 16-bit: scaled to 8, a BGR frame
    assert frame.dtype == np.uint8 and frame.shape == (5, 5, 3) and (frame == 1000 >> 8).all()
    big = np.zeros((3000, 40, 3), np.uint8)
    assert load_photo(cv2.imencode(".png", big)[1].tobytes()).shape == (1280, 17, 3)  # longest side shrunk
    for garbage in (b"", b"definitely not an image"):
        with pytest.raises(ValueError, match="is not an image FER Lab can read"):
            load_photo(garbage)
