"""Sample pictures for the Photo page, drawn with :mod:`fertools.synthetic`.

FER Lab ships no photos of people, so the Photo page's samples are synthetic
cartoon faces (see :data:`fertools.synthetic.SYNTHETIC_NOTE`): a portrait,
where the face detector finds the face as it would in a photo, and a bare
48x48 crop like a FER2013 image, which is too small for the detector and
shows the "treat the whole image as a face" path.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from fertools import synthetic

#: (height, width) of a sample portrait.
PHOTO_SHAPE = (480, 640)
# Side of the face in the portrait: big enough for the Haar cascade's 40 px minimum many times over.
_FACE_SIDE = 300

# Per-channel (B, G, R) gains that keep luminance (0.114 B + 0.587 G + 0.299 R = 1), so the
# grey picture the detector and the model see is the synthetic face itself.
_WARM = np.array([0.788, 0.98, 1.12], dtype=np.float32)
_COOL = np.array([1.262, 1.0, 0.9], dtype=np.float32)


def sample_photo(emotion: str, seed: int = 0) -> np.ndarray:
    """A BGR ``uint8`` portrait of shape ``PHOTO_SHAPE + (3,)``: one synthetic face showing ``emotion``.

    The face is upright, lighter than the wall behind it and nearly noise-free:
    the appearance OpenCV's frontal-face Haar cascade reliably detects. The same
    ``emotion`` and ``seed`` always give the same picture. Raises ``ValueError``
    for an emotion that is not a FER2013 class.
    """
    rng = np.random.default_rng(seed)
    params = synthetic.expression_params(emotion, rng)
    wall = float(rng.uniform(100.0, 145.0))
    params = replace(
        params,
        dx=0.0,
        dy=0.0,
        scale=0.8,  # keeps the hair inside the tile
        angle=float(rng.uniform(-4.0, 4.0)),
        skin=float(rng.uniform(180.0, 215.0)),
        hair=float(rng.uniform(20.0, 60.0)),
        hair_volume=float(rng.uniform(0.2, 0.6)),
        background=wall,
        contrast=1.0,
        light_x=0.0,
        light_y=0.0,
        noise=1.5,
    )
    face = synthetic.render_face(params, rng)
    tile = cv2.resize(face, (_FACE_SIDE, _FACE_SIDE), interpolation=cv2.INTER_CUBIC)

    height, width = PHOTO_SHAPE
    top = (height - _FACE_SIDE) // 2 + int(rng.integers(-30, 21))
    left = (width - _FACE_SIDE) // 2 + int(rng.integers(-120, 121))
    centre_x, chin = left + _FACE_SIDE // 2, top + int(0.88 * _FACE_SIDE)
    gray = np.full(PHOTO_SHAPE, wall, dtype=np.float32)
    # Shoulders and a neck under the head: without them the bare chin-on-wall edge
    # sometimes passes for a second, smaller face.
    cv2.ellipse(gray, (centre_x, chin + 150), (250, 120), 0, 0, 360, float(rng.uniform(30.0, 70.0)), -1)
    cv2.rectangle(gray, (centre_x - 45, chin - 60), (centre_x + 45, chin + 50), params.skin * 0.9, -1)
    # The face tile's own background is the wall colour: paste only the head.
    head = cv2.GaussianBlur((np.abs(tile.astype(np.float32) - wall) > 8).astype(np.float32), (5, 5), 0)
    window = gray[top : top + _FACE_SIDE, left : left + _FACE_SIDE]
    window += head * (tile - window)
    # Soft light from one side, like a window, and a little sensor noise.
    ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32) * float(rng.uniform(-0.08, 0.08))
    gray *= 1.0 + ramp[np.newaxis, :]
    gray += rng.normal(0.0, 2.0, size=gray.shape).astype(np.float32)

    # Skin-bright pixels get a warm tint, wall-dark ones a cool one.
    warmth = np.clip((gray - wall) / max(0.6 * (params.skin - wall), 1.0), 0.0, 1.0)[..., np.newaxis]
    gains = _COOL + (_WARM - _COOL) * warmth
    return np.clip(np.rint(gray[..., np.newaxis] * gains), 0, 255).astype(np.uint8)


def sample_crop(emotion: str, seed: int = 0) -> np.ndarray:
    """A BGR ``uint8`` (48, 48, 3) synthetic face crop like a FER2013 image (too small to detect a face in)."""
    rng = np.random.default_rng(seed)
    face = synthetic.render_face(synthetic.expression_params(emotion, rng), rng)
    return cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
