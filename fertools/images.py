"""The one image decoder: the bytes of an image file to a ``uint8`` array, bounded before decoding.

The Photo page (through :func:`fertools.preprocess.load_photo`), ``predict`` and the dataset
loader's image folders and zips all decode here, so a picture gives every one of them the same
pixels. :func:`decode` returns a BGR ``uint8`` (H, W, 3) frame, or with ``gray=True`` a ``uint8``
(H, W) image; anything it refuses raises :class:`ImageError` with one sentence for the user.

Pillow decodes, because it does what an untrusted upload needs and OpenCV does not: it reads
the dimensions from the header before any pixel is decoded (a 30000x30000 PNG is refused, not
allocated), applies the EXIF orientation (phones store portraits sideways and set the tag),
knows every mode a file may hold (16-bit, palette, LA/RGBA, CMYK) and refuses truncated files
(``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False). OpenCV decodes one case only: complete
8-bit grayscale JPEGs without EXIF, which is what FER2013's image release is. Both link
libjpeg-turbo with the same default IDCT, so the pixels are identical
(``tests/test_untrusted_input.py`` checks), and OpenCV's call is ~5x cheaper than Pillow's
decoding of a 48x48 face. Those files are recognised, and their size checked, by
:func:`_plain_gray_jpeg_size`, a walk over the JPEG segments before the scan, not by Pillow:
Pillow's JPEG header parser is Python and costs ~65 us a file under the GIL, which alone made
loading 5,000 faces 2.3x slower; the walk costs ~5 us and leaves anything unusual to Pillow.

Conversions: 16-bit images are scaled to 8 bits (the high byte, as OpenCV's readers and
:func:`fertools.preprocess.to_gray` do), not clipped; transparency (LA, RGBA, palette or
``tRNS``) is composited onto white, which is what a viewer shows; palette, CMYK and other modes
become RGB; an animated image gives its first frame.
"""

from __future__ import annotations

import io
import os
import struct

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fertools import limits

#: Formats the decoder opens (JPEG includes MPO, as Pillow names many phone JPEGs). Pillow's
#: other formats are no photos or faces, and some run outside code (EPS starts Ghostscript).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")

#: What Pillow's parsers raise on a malformed or truncated file, beside its own errors.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError)
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


class ImageError(ValueError):
    """Bytes that are no image FER Lab decodes; the message is one sentence for the user.

    ``reason`` is a few words for a dataset's list of skipped files.
    """

    def __init__(self, message: str, reason: str = "unreadable image"):
        super().__init__(message)
        self.reason = reason


class ImageTooLarge(ImageError):
    """An image above one of the limits of :mod:`fertools.limits`; the message names it."""

    def __init__(self, message: str):
        super().__init__(message, "image above the size limits")


def decode(
    data: bytes, *, gray: bool = False, max_side: int | None = None, name: str = "this file"
) -> np.ndarray:
    """Decode an image file's bytes, upright, to ``uint8``: BGR (H, W, 3), or (H, W) with ``gray``.

    ``max_side`` shrinks the result so its longest side is at most that (JPEGs are then decoded
    at a reduced scale already). ``name`` names the file in messages. Raises
    :class:`ImageTooLarge` for a file above ``limits.MAX_IMAGE_FILE_BYTES`` or dimensions above
    ``limits.MAX_IMAGE_PIXELS`` / ``limits.MAX_IMAGE_SIDE`` (checked before decoding), and
    :class:`ImageError` for bytes that are no image, or a truncated or damaged one.
    """
    if len(data) > limits.MAX_IMAGE_FILE_BYTES:
        raise ImageTooLarge(
            f"{name} is larger than {limits.describe_bytes(limits.MAX_IMAGE_FILE_BYTES)}, "
            "FER Lab's limit for one image file."
        )
    size = _plain_gray_jpeg_size(data) if max_side is None else None
    if size is not None:
        _check_dimensions(size, name)
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is not None and pixels.dtype == np.uint8 and pixels.shape == (size[1], size[0]):
            return pixels if gray else cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        # OpenCV disagrees with the header (a damaged file): Pillow decides.
    image = _open(data, name)
    with image:
        _check_dimensions(image.size, name)
        if max_side is not None and image.format in ("JPEG", "MPO"):
            image.draft(None, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale when that is enough
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            pixels = _to_uint8(image, gray)
        except _DECODE_ERRORS:
            raise ImageError(
                f"{name} is truncated or damaged, so FER Lab does not use it; try another copy of it.",
                "truncated or damaged image",
            ) from None
    height, width = pixels.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return pixels


def upright_size(data: bytes, *, name: str = "this file") -> tuple[int, int]:
    """(width, height) of an image file as :func:`decode` turns it upright, read from its header alone.

    For telling a user the size of what they uploaded when :func:`decode` shrank it.
    Raises :class:`ImageError` as :func:`decode` does for bytes that are no image.
    """
    image = _open(data, name)
    with image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation; 5-8 swap the sides
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_image_file(path: str | os.PathLike, *, gray: bool = False) -> np.ndarray:
    """:func:`decode` of a file, reading at most one byte past ``limits.MAX_IMAGE_FILE_BYTES``.

    Raises ``OSError`` if the file cannot be read, :class:`ImageError` as :func:`decode` does.
    """
    return decode(limits.read_file(path, limits.MAX_IMAGE_FILE_BYTES), gray=gray, name=str(path))


def _open(data: bytes, name: str) -> Image.Image:
    """Pillow's lazy image: the header is parsed, no pixel is decoded yet."""
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        # Pillow's own check fires first for images far above our limit, without telling the size.
        raise ImageTooLarge(
            f"{name} has more than {limits.MAX_IMAGE_PIXELS:,} pixels, FER Lab's limit for one image."
        ) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        raise ImageError(f"{name} is not an image FER Lab can read (try JPEG or PNG).") from None


def _check_dimensions(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} is an image without pixels ({width}x{height}).")
    if width * height > limits.MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"{name} is {width}x{height} pixels, above FER Lab's limit of "
            f"{limits.MAX_IMAGE_PIXELS:,} pixels for one image."
        )
    if max(width, height) > limits.MAX_IMAGE_SIDE:
        raise ImageTooLarge(
            f"{name} is {width}x{height} pixels, above FER Lab's limit of "
            f"{limits.MAX_IMAGE_SIDE:,} pixels for the longest side of an image."
        )


#: Frame markers of Huffman-coded 8-bit JPEGs (baseline, extended, progressive) that the fast path takes.
_PLAIN_FRAMES = (0xC0, 0xC1, 0xC2)
#: Markers C4 (Huffman tables), C8 (reserved) and CC (arithmetic coding) are no frame headers.
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Segments that say nothing about size or orientation: tables, restart interval, comment, APPn but APP1.
_TABLES = frozenset({0xC4, 0xDB, 0xDD, 0xFE, 0xE0, *range(0xE2, 0xF0)})
_SEGMENT = struct.Struct(">BBH")  # 0xFF, marker, length
_FRAME = struct.Struct(">BHHB")  # precision, height, width, components


def _plain_gray_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a complete 8-bit one-channel Huffman JPEG without EXIF; None for any other file.

    Walks the segments from the start marker to the start of the scan, where
    every header segment has been seen: the frame header gives the size, an
    APP1 ``Exif`` segment an orientation to apply (so Pillow decodes those). A
    file not ending in the end marker may be truncated, and is left to Pillow,
    which refuses it.
    """
    if not (data.startswith(_JPEG_START) and data.endswith(_JPEG_END)):
        return None
    unpack = _SEGMENT.unpack_from
    at, end, size = 2, len(data) - 4, None
    while at <= end:
        prefix, marker, length = unpack(data, at)
        if marker in _TABLES and prefix == 0xFF and length >= 2:  # most segments: nothing to check
            at += 2 + length
            continue
        if prefix != 0xFF:
            return None
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker == 0xDA:  # start of scan
            return size
        if length < 2 or 0xD0 <= marker <= 0xD9 or marker == 0x01:  # no segment belongs here
            return None
        if marker == 0xE1 and data.startswith(b"Exif", at + 4):
            return None
        if marker in _FRAMES:
            if marker not in _PLAIN_FRAMES or size is not None or length < 8:
                return None
            precision, height, width, components = _FRAME.unpack_from(data, at + 4)
            if precision != 8 or components != 1 or not height or not width:
                return None
            size = (width, height)
        at += 2 + length
    return None


#: Pixels converted at a time: converting a 50-megapixel image whole holds several copies of it
#: (RGBA, white, composite, RGB, array), 845 MB measured; by strips only the decoded image and
#: the result are whole.
_STRIP_PIXELS = 1 << 20


def _to_uint8(image: Image.Image, gray: bool) -> np.ndarray:
    """A loaded Pillow image as BGR ``uint8`` (H, W, 3), or gray (H, W) with ``gray``, converted by strips."""
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    if rows >= height:
        return _convert(image, gray)
    out = np.empty((height, width) if gray else (height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = _convert(image.crop((0, top, width, bottom)), gray)
    return out


def _convert(image: Image.Image, gray: bool) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "F":  # Pillow's own convention for float images: values are 0..255
            levels = np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8)
        else:  # 16-bit (mode I holds 16-bit data from older writers): keep the high byte
            levels = (np.clip(values, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        return levels if gray else cv2.cvtColor(levels, cv2.COLOR_GRAY2BGR)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    elif mode in ("L", "1"):
        levels = np.asarray(image if mode == "L" else image.convert("L"))
        return levels if gray else cv2.cvtColor(levels, cv2.COLOR_GRAY2BGR)
    else:
        rgb = image if mode == "RGB" else image.convert("RGB")
    # OpenCV's weights, so a colour image gives the gray it gave when OpenCV decoded datasets.
    return cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR)
