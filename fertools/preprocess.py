"""The one preprocessing path from any picture to a model input.

Training data (CSV rows, image files) and inference (face crops from photos
and webcam frames) both go through :func:`to_face`, so a face looks the same
to a model whether it came from FER2013 or from a camera. Models rescale
pixels themselves, so a face stays ``uint8`` until it enters the model.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

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


def decode_image(data: bytes) -> np.ndarray | None:
    """Decode encoded image bytes (any format OpenCV reads) to BGR/gray ``uint8``; None if unreadable."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        return None
    return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)


#: Longest side a photo is shrunk to before detection: a 12-megapixel phone picture
#: costs seconds to search for faces and shows nothing more at screen size.
PHOTO_MAX_SIDE = 1280


def load_photo(data: bytes, max_side: int = PHOTO_MAX_SIDE) -> np.ndarray:
    """Decode an uploaded photo to an upright BGR ``uint8`` (H, W, 3) frame, longest side <= ``max_side``.

    Pillow applies the EXIF orientation tag (phones store portraits sideways and
    set the tag), composites transparency onto white, and decodes JPEGs at a
    reduced scale when that is enough. Raises ``ValueError`` with a one-sentence
    message if ``data`` is not an image Pillow can read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (max_side, max_side))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = image.convert("RGBA")
                white = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, image)
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ValueError("this file is not an image FER Lab can read (try JPEG or PNG).") from None
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    height, width = frame.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frame
