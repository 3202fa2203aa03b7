"""Numbers and pictures that describe a dataset: class counts, pixel histograms, mean faces, samples.

What the Dataset and Augmentation pages show, computed here on plain arrays so
the pages only draw. Faces follow :mod:`fertools.constants`: ``uint8``
``(N, 48, 48)``; labels index ``dataset.classes``.

FER2013 holds 35,887 faces (80 MB of pixels), so anything that touches every
pixel works on chunks of faces instead of widening the whole array at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fertools.data import Dataset

# Faces per chunk when every pixel is visited: keeps int64 / float64 temporaries near 40 MB.
_CHUNK = 2048


@dataclass(frozen=True)
class Imbalance:
    """The most and least frequent class of a split (or of the whole dataset)."""

    largest: str
    largest_count: int
    smallest: str
    smallest_count: int

    @property
    def ratio(self) -> float:
        """``largest_count / smallest_count``; ``inf`` when a class has no faces at all."""
        return self.largest_count / self.smallest_count if self.smallest_count else float("inf")


@dataclass(frozen=True)
class ClassCounts:
    """Faces per split and class: ``counts[s, c]`` is the number of ``classes[c]`` faces in ``splits[s]``."""

    classes: tuple[str, ...]
    splits: tuple[str, ...]
    counts: np.ndarray  # int64 (len(splits), len(classes))

    @property
    def totals(self) -> np.ndarray:
        """Faces per class over every split: ``int64`` (C,)."""
        return self.counts.sum(axis=0)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {name: int(row.sum()) for name, row in zip(self.splits, self.counts)}

    def imbalance(self, split: str | None = None) -> Imbalance | None:
        """Largest vs smallest class of ``split`` (default: ``train`` if present, else every split).

        ``train`` is the default because it is what the loss sees: FER2013's training
        split has 7,215 happy faces and 436 disgusted ones (16.5x). None if empty.
        """
        if split is None:
            split = "train" if "train" in self.splits else None
        row = self.totals if split is None else self.counts[self.splits.index(split)]
        if row.size == 0 or row.sum() == 0:
            return None
        big, small = int(row.argmax()), int(row.argmin())
        return Imbalance(self.classes[big], int(row[big]), self.classes[small], int(row[small]))

    def rows(self) -> list[dict]:
        """Long-form records ``{split, class, count, share}``; ``share`` is the fraction of its split."""
        records = []
        for name, row in zip(self.splits, self.counts):
            size = max(int(row.sum()), 1)
            for cls, count in zip(self.classes, row):
                records.append({"split": name, "class": cls, "count": int(count), "share": int(count) / size})
        return records


def class_counts(dataset: Dataset) -> ClassCounts:
    """Faces per split and class of ``dataset``; every class appears, zeros included."""
    splits = tuple(dataset.splits)
    counts = np.zeros((len(splits), len(dataset.classes)), dtype=np.int64)
    for row, name in enumerate(splits):
        counts[row] = np.bincount(dataset.labels[dataset.split == name], minlength=len(dataset.classes))
    return ClassCounts(tuple(dataset.classes), splits, counts)


def pixel_histograms(
    images: np.ndarray, groups: np.ndarray, n_groups: int, bins: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-intensity histograms per group (class or split).

    ``images`` is ``uint8`` (N, H, W), ``groups`` integer (N,) in ``0..n_groups-1``;
    ``bins`` must divide 256. Returns ``(edges, fractions)``: ``edges`` ``float64``
    (bins + 1,) from 0 to 256, and ``fractions`` ``float64`` (n_groups, bins), each
    row summing to 1 (all zeros for an empty group). Raises ``ValueError`` on a bad ``bins``.
    """
    if bins <= 0 or 256 % bins:
        raise ValueError(f"bins must divide 256, got {bins}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 faces, got {images.dtype}")
    levels = np.zeros((n_groups, 256), dtype=np.int64)
    for group in range(n_groups):
        members = np.flatnonzero(groups == group)
        for start in range(0, len(members), _CHUNK):
            levels[group] += np.bincount(images[members[start : start + _CHUNK]].ravel(), minlength=256)
    binned = levels.reshape(n_groups, bins, 256 // bins).sum(axis=2).astype(np.float64)
    sums = binned.sum(axis=1, keepdims=True)
    fractions = np.divide(binned, sums, out=np.zeros_like(binned), where=sums > 0)
    return np.linspace(0.0, 256.0, bins + 1), fractions


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of every pixel of ``uint8`` faces, without a float copy of them all.

    Counted from the 256-level histogram: ``images.std()`` on FER2013 would allocate 660 MB.
    """
    if images.size == 0:
        return 0.0, 0.0
    levels = np.zeros(256, dtype=np.int64)
    flat = images.reshape(len(images), -1)
    for start in range(0, len(flat), _CHUNK):
        levels += np.bincount(flat[start : start + _CHUNK].ravel(), minlength=256)
    total = levels.sum()
    values = np.arange(256, dtype=np.float64)
    mean = float(levels @ values / total)
    variance = float(levels @ (values - mean) ** 2 / total)
    return mean, variance**0.5


def mean_faces(images: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The average face of each class.

    Returns ``(means, counts)``: ``means`` ``float32`` (n_classes, H, W) in 0..255
    (zeros for a class with no faces) and ``counts`` ``int64`` (n_classes,).
    """
    means = np.zeros((n_classes, *images.shape[1:]), dtype=np.float32)
    counts = np.bincount(labels, minlength=n_classes).astype(np.int64)[:n_classes]
    for label in range(n_classes):
        members = np.flatnonzero(labels == label)
        if len(members) == 0:
            continue
        total = np.zeros(images.shape[1:], dtype=np.float64)
        for start in range(0, len(members), _CHUNK):
            total += images[members[start : start + _CHUNK]].sum(axis=0, dtype=np.float64)
        means[label] = total / len(members)
    return means, counts


def difference_faces(means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each class's mean face minus the mean over all faces, as ``uint8`` pictures (mid-grey = no change).

    The difference is stretched so the largest change in any class reaches black or white;
    what stands out is what makes a class's average face unlike the others'.
    """
    weights = counts / max(int(counts.sum()), 1)
    overall = np.tensordot(weights, means.astype(np.float64), axes=1)
    difference = means - overall
    difference[counts == 0] = 0.0
    scale = np.abs(difference).max()
    if scale > 0:
        difference = difference * (127.0 / scale)
    return np.clip(np.rint(128.0 + difference), 0, 255).astype(np.uint8)


def sample_page(
    labels: np.ndarray,
    label: int | None,
    page: int,
    per_page: int,
    seed: int = 0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Row indices of one page of faces of class ``label`` (None: every class), in a seeded random order.

    The order depends only on ``seed`` (a new seed reshuffles), so paging through
    never repeats a face. ``mask`` (boolean (N,)) restricts the rows, e.g. to one
    split. Returns ``(indices, pages)``; ``page`` is clamped to ``0..pages-1`` and
    ``pages`` is at least 1 (an empty class gives an empty page). Raises
    ``ValueError`` if ``per_page`` is not positive.
    """
    if per_page <= 0:
        raise ValueError(f"per_page must be positive, got {per_page}")
    chosen = np.ones(len(labels), dtype=bool) if label is None else labels == label
    if mask is not None:
        chosen &= mask
    rows = np.random.default_rng(seed).permutation(np.flatnonzero(chosen))
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(page, 0), pages - 1)
    return rows[page * per_page : (page + 1) * per_page], pages


def upscale(face: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge a face by an integer ``factor`` with nearest-neighbour pixels (no smoothing, nothing invented)."""
    return np.repeat(np.repeat(face, factor, axis=0), factor, axis=1)


def montage(
    faces: np.ndarray, columns: int, scale: int = 2, pad: int = 2, background: int = 255
) -> np.ndarray:
    """Tile faces (N, H, W) row by row into one ``uint8`` picture, each face upscaled by ``scale``.

    Empty cells of the last row are left as ``background``. An empty input gives a
    ``(0, 0)`` array.
    """
    count = len(faces)
    if count == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    height, width = faces.shape[1] * scale, faces.shape[2] * scale
    sheet = np.full(
        (rows * height + (rows + 1) * pad, columns * width + (columns + 1) * pad), background, dtype=np.uint8
    )
    for index, face in enumerate(faces):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        sheet[top : top + height, left : left + width] = upscale(face, scale)
    return sheet


def beside(originals: np.ndarray, variants: np.ndarray, scale: int = 2, pad: int = 2) -> np.ndarray:
    """One ``uint8`` picture: each original (N, H, W) in the first column, a blank gap, then its
    variants (N, K, H, W) in the same row, so rows stay aligned at any display width."""
    count, height, width = originals.shape
    blank = np.full((count, 1, height, width), 255, dtype=np.uint8)
    grid = np.concatenate([originals[:, np.newaxis], blank, variants.astype(np.uint8)], axis=1)
    return montage(grid.reshape(-1, height, width), grid.shape[1], scale=scale, pad=pad)
