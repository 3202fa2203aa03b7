"""The one preprocessing path from any picture to a model input.

Training data (CSV rows, image files) and inference (face crops from photos
and webcam frames) both go through :func:`to_face`, so a face looks the same
to a model whether it came from FER2013 or from a camera. Models rescale
pixels themselves, so a face stays ``uint8`` until it enters the model.
"""

from __future__ import annotations

import cv2
import numpy as np

from fertools import images
from fertools.constants import IMAGE_SIZE


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale ``uint8`` (H, W) from a gray, BGR or BGRA image of any integer or float dtype."""
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        scale = 255.0 if image.size and float(np.nanmax(image)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(image) * scale, 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def to_face(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A ``uint8`` (size, size) grayscale face from an image of any size or colour."""
    gray = to_gray(image)
    if gray.shape == (size, size):
        return np.ascontiguousarray(gray)
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interpolation)


def expand_box(
    box: tuple[int, int, int, int], margin: float, frame_shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Grow an (x, y, w, h) box by ``margin`` of its size on each side, clipped to the frame.

    FER2013 faces are cropped a little wider than a detector's tight box;
    the margin makes camera crops look like the training data.
    """
    x, y, w, h = box
    height, width = frame_shape[:2]
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


def crop_face(
    frame: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1, size: int = IMAGE_SIZE
) -> np.ndarray:
    """The model input for one detected face: crop with margin, grayscale, resize."""
    x, y, w, h = expand_box(box, margin, frame.shape)
    return to_face(frame[y : y + h, x : x + w], size)


#: Where FER2013 faces have their eyes and mouth, (x, y) as fractions of the crop side: the
#: median BlazeFace (short-range) keypoints of 1,161 FER2013 validation faces, upscaled 4x.
#: Right and left are the person's own, so the right eye is on the image's left.
FER_RIGHT_EYE = (0.318, 0.393)
FER_LEFT_EYE = (0.682, 0.392)
FER_MOUTH = (0.503, 0.773)


def aligned_face_transform(
    right_eye: tuple[float, float],
    left_eye: tuple[float, float],
    mouth: tuple[float, float] | None = None,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """The 2x3 similarity transform from frame pixels to a (size, size) FER2013-like crop.

    The eye line becomes level and its midpoint lands where FER2013's is.
    The scale makes the eyes as far apart as FER2013's; with ``mouth`` it
    is the mean of that and the eye-to-mouth distance's scale, which keeps a
    turned head (eyes closer together) from being zoomed in on.
    """
    right, left = np.asarray(right_eye, np.float64), np.asarray(left_eye, np.float64)
    template_right, template_left = np.asarray(FER_RIGHT_EYE), np.asarray(FER_LEFT_EYE)
    eye_line = left - right
    angle = np.arctan2(eye_line[1], eye_line[0]) - np.arctan2(*(template_left - template_right)[::-1])
    scales = [np.linalg.norm(template_left - template_right) * size / max(np.linalg.norm(eye_line), 1e-6)]
    eye_centre = (right + left) / 2
    template_centre = (template_right + template_left) / 2
    if mouth is not None:
        drop = np.linalg.norm(np.asarray(mouth, np.float64) - eye_centre)
        scales.append(np.linalg.norm(np.asarray(FER_MOUTH) - template_centre) * size / max(drop, 1e-6))
    scale = float(np.mean(scales))
    cos, sin = scale * np.cos(-angle), scale * np.sin(-angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    offset = template_centre * size - rotation @ eye_centre
    return np.hstack([rotation, offset[:, None]])


def crop_aligned_face(
    frame: np.ndarray,
    right_eye: tuple[float, float],
    left_eye: tuple[float, float],
    mouth: tuple[float, float] | None = None,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """The model input for a face with known eyes: a ``uint8`` (size, size) grey crop framed like FER2013's.

    Eye and mouth points are (x, y) frame pixels, the person's right eye first
    (see :func:`aligned_face_transform`). Where the crop reaches past the
    frame's edge, the edge pixels are repeated.
    """
    transform = aligned_face_transform(right_eye, left_eye, mouth, size)
    # Sample at about the frame's own resolution, then shrink by area: a bilinear warp
    # straight to 48x48 would alias a large face the way a plain resize does not.
    scale = float(np.hypot(*transform[0, :2]))
    steps = max(1, int(1.0 / scale)) if scale > 0 else 1
    # Only the frame region the crop covers is converted to grey.
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    inverse = cv2.invertAffineTransform(transform)
    reach = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = frame.shape[:2]
    x0, y0 = np.clip(np.floor(reach.min(axis=0)).astype(int) - 1, 0, [width - 1, height - 1])
    x1, y1 = np.clip(np.ceil(reach.max(axis=0)).astype(int) + 2, [x0 + 1, y0 + 1], [width, height])
    region = to_gray(frame[y0:y1, x0:x1])
    shifted = transform.copy()
    shifted[:, 2] += transform[:, :2] @ np.array([x0, y0], np.float64)
    big = cv2.warpAffine(
        region,
        shifted * steps,
        (size * steps, size * steps),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return big if steps == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


#: Longest side a photo is shrunk to before detection: a 12-megapixel phone picture
#: costs seconds to search for faces and shows nothing more at screen size.
PHOTO_MAX_SIDE = 1280


def load_photo(data: bytes, max_side: int = PHOTO_MAX_SIDE) -> np.ndarray:
    """Decode an uploaded photo to an upright BGR ``uint8`` (H, W, 3) frame, longest side <= ``max_side``.

    The one decoder, :func:`fertools.images.decode`: dimensions checked against the limits
    before decoding, the EXIF orientation applied (phones store portraits sideways and set the
    tag), transparency composited onto white, 16-bit scaled to 8, JPEGs decoded at a reduced
    scale when that is enough. Raises ``ValueError`` (:class:`fertools.images.ImageError`) with
    a one-sentence message if ``data`` is no image FER Lab reads, is truncated, or is too large.
    """
    return images.decode(data, max_side=max_side)
