"""The data the benchmark loads when none is given: FER2013-format CSVs and Kaggle-layout folders.

Synthetic faces (:mod:`fertools.synthetic`) with FER2013's size, class mix and ``Usage`` split,
written fast: the CSV text of a block of faces comes from one table lookup.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fertools import synthetic
from fertools.constants import FER2013_CLASSES, NUM_PIXELS

#: Rows of the real ``fer2013.csv`` per ``Usage`` value.
FER2013_USAGE = {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
#: Rows of the real ``fer2013.csv`` per class, in label order (35,887 in all).
FER2013_CLASS_ROWS = (4_953, 547, 5_121, 8_989, 6_077, 4_002, 6_198)
#: Images per class folder of the Kaggle image release's ``train/`` (28,709 in all).
FOLDER_CLASS_IMAGES = {
    "angry": 3_995,
    "disgust": 436,
    "fear": 4_097,
    "happy": 7_215,
    "sad": 4_830,
    "surprise": 3_171,
    "neutral": 4_965,
}


def scaled(counts: Iterable[int], total: int) -> list[int]:
    """``counts`` scaled to sum to ``total`` (largest remainders get the leftovers)."""
    counts = list(counts)
    exact = np.asarray(counts, dtype=float) * total / sum(counts)
    whole = np.floor(exact).astype(int)
    for index in np.argsort(whole - exact)[: total - int(whole.sum())]:
        whole[index] += 1
    return whole.tolist()


def varied_faces(count: int, seed: int) -> Iterator[np.ndarray]:
    """``count`` synthetic faces as ``uint8`` (N, 2304) blocks.

    A few hundred faces are drawn and reused with fresh pixel noise, so no two
    rows are alike without drawing 35,887 faces.
    """
    rng = np.random.default_rng(seed)
    base, _ = synthetic.generate(
        n_per_class=max(1, min(300, math.ceil(count / len(FER2013_CLASSES)))), seed=seed
    )
    base = base.reshape(len(base), NUM_PIXELS).astype(np.int16)
    for start in range(0, count, 2048):
        rows = np.arange(start, min(count, start + 2048)) % len(base)
        noisy = base[rows] + rng.integers(-6, 7, size=(len(rows), NUM_PIXELS), dtype=np.int16)
        yield np.clip(noisy, 0, 255).astype(np.uint8)


# Each pixel value as its decimal digits and a space, zero-padded to 4 bytes:
# indexing this table with a block of faces gives the CSV text of the block at once.
_TOKENS = np.zeros((256, 4), dtype=np.uint8)
for _value in range(256):
    _text = f"{_value} ".encode()
    _TOKENS[_value, : len(_text)] = np.frombuffer(_text, dtype=np.uint8)


def pixel_fields(block: np.ndarray) -> list[bytes]:
    """The space-separated pixel field of each ``uint8`` row of ``block`` (N, 2304)."""
    tokens = _TOKENS[block]  # (N, 2304, 4)
    last = tokens[:, -1]
    last[last == ord(" ")] = 0  # no space after a row's last pixel
    keep = tokens != 0
    lengths = keep.reshape(len(block), -1).sum(axis=1)
    text = tokens[keep].tobytes()
    ends = np.cumsum(lengths)
    return [text[start:end] for start, end in zip((ends - lengths).tolist(), ends.tolist())]


def write_fer2013_csv(path: str | os.PathLike, rows: int, seed: int = 0) -> None:
    """Write a FER2013-format CSV (``emotion,pixels,Usage``) of ``rows`` synthetic faces.

    Classes follow FER2013's mix and ``Usage`` its 28,709 / 3,589 / 3,589 split
    (scaled to ``rows``), Training rows first as in the real file.
    """
    rng = np.random.default_rng(seed)
    usage = np.repeat(list(FER2013_USAGE), scaled(FER2013_USAGE.values(), rows))
    labels = np.repeat(np.arange(len(FER2013_CLASSES)), scaled(FER2013_CLASS_ROWS, rows))
    labels = rng.permutation(labels)
    with open(path, "wb") as out:
        out.write(b"emotion,pixels,Usage\n")
        done = 0
        for block in varied_faces(rows, seed):
            chunk = slice(done, done + len(block))
            lines = zip(labels[chunk].tolist(), pixel_fields(block), usage[chunk].tolist())
            out.write(b"".join(b"%d,%s,%s\n" % (label, field, name.encode()) for label, field, name in lines))
            done += len(block)


def write_image_folder(root: str | os.PathLike, images: int, seed: int = 0) -> None:
    """Write ``images`` synthetic faces as JPEGs in ``root/train/<class>/``, in the Kaggle release's class mix."""
    root = Path(root)
    per_class = scaled(FOLDER_CLASS_IMAGES.values(), images)
    names = [name for name, count in zip(FOLDER_CLASS_IMAGES, per_class) for _ in range(count)]
    for name in FOLDER_CLASS_IMAGES:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
    index = 0
    for block in varied_faces(images, seed):
        for face in block:
            _, encoded = cv2.imencode(".jpg", face.reshape(48, 48), [cv2.IMWRITE_JPEG_QUALITY, 90])
            (root / "train" / names[index] / f"Training_{index:08d}.jpg").write_bytes(encoded.tobytes())
            index += 1
