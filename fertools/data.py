"""Loading FER datasets from every format FER Lab knows, fast and without losing rows silently.

:func:`load` takes a source and returns a :class:`Dataset`:

* ``fer2013.csv`` (``emotion,pixels,Usage``) and Kaggle's ``train.csv`` (``emotion,pixels``);
* the wide CSV (``label,p0,...,p2303`` with string labels, header row optional);
* image folders ``root/<split>/<class>/*`` or ``root/<class>/*``, and a ``.zip`` of them;
* ``.npz`` files written by :func:`save_npz`;
* ``"builtin"``: the synthetic faces of :mod:`fertools.synthetic`.

Bad rows and unreadable files are skipped and listed in ``Dataset.rejected``
with their reason; a file that is no dataset at all raises :class:`DatasetError`.

Parsing the 300 MB ``fer2013.csv`` row by row in Python takes many seconds, so
pixel fields are parsed by a vectorised numpy kernel (:func:`_parse_block`)
over chunks of rows, in threads while the rows are still being scanned, and
the result is cached on disk keyed by the file's path, size and modification
time.

Sources are untrusted (a hosted FER Lab takes uploads from a whole class), so
every loader checks what a file declares against :mod:`fertools.limits`
before it allocates: a zip's member count, directory and member sizes and
compression ratios, an ``.npz`` array's shape and dtype, a CSV's line lengths
and row count, an image's dimensions. Zip members are read with a bounded
read, so a lying header gets no further than its limit. A refusal is a
:class:`DatasetError` whose one sentence names the limit and its value.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import io
import json
import math
import mmap
import os
import struct
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fertools import limits
from fertools.constants import FER2013_CLASSES, IMAGE_SIZE, NUM_PIXELS, SPLITS, cache_dir, class_names_problem
from fertools.images import ImageError, ImageTooLarge
from fertools.images import decode as decode_image
from fertools.limits import describe_bytes
from fertools.preprocess import to_face

#: Bumped whenever parsing changes, so stale cache entries are ignored.
_CACHE_VERSION = "2"
_USAGE_TO_SPLIT = {b"training": "train", b"publictest": "val", b"privatetest": "test"}
_SPLIT_DIRS = {"train": "train", "training": "train", "test": "test", "validation": "val", "val": "val"}
#: Files one decoding task reads (see :func:`_decode_all`).
_FILES_PER_TASK = 512
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif"}
#: Rows per kernel call: small enough that a chunk's index arrays stay in the CPU cache.
_ROWS_PER_CHUNK = 64

FORMATS_HELP = (
    "fer2013.csv (emotion,pixels[,Usage]), a wide CSV (label,p0..p2303), "
    "an image folder (<split>/<class>/* or <class>/*), a .zip of such folders, "
    "an .npz written by FER Lab, or 'builtin'"
)

ProgressFn = Callable[[float, str], None]


class DatasetError(ValueError):
    """A source that cannot be read as a dataset; the message is one sentence for the user."""


@dataclass(frozen=True)
class Rejection:
    """One skipped row or file: where it was and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    """Faces with labels and splits.

    ``images`` is ``uint8`` (N, 48, 48); ``labels`` is ``int64`` (N,) indexing
    ``classes``; ``split`` is a string array (N,) of ``train``, ``val`` or ``test``.
    """

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    classes: tuple[str, ...]
    rejected: tuple[Rejection, ...] = ()
    source: str = ""
    synthetic: bool = False
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problem = class_names_problem(self.classes)
        if problem:
            raise DatasetError(
                f"{self.source or 'The dataset'} has {problem}, so FER Lab cannot train on it."
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def splits(self) -> list[str]:
        """Split names present, in train, val, test order."""
        present = set(np.unique(self.split).tolist())
        return [name for name in ("train", "val", "test") if name in present]

    def subset(self, split: str | Sequence[str]) -> Dataset:
        """Only the rows of one split (or several)."""
        names = [split] if isinstance(split, str) else list(split)
        return self.select(np.isin(self.split, names))

    def select(self, mask_or_index: np.ndarray) -> Dataset:
        """Rows chosen by a boolean mask or an index array."""
        return replace(
            self,
            images=self.images[mask_or_index],
            labels=self.labels[mask_or_index],
            split=self.split[mask_or_index],
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}`` with every class present (zeros included)."""
        table: dict[str, dict[str, int]] = {}
        for name in self.splits:
            labels = self.labels[self.split == name]
            per_class = np.bincount(labels, minlength=len(self.classes))
            table[name] = {cls: int(n) for cls, n in zip(self.classes, per_class)}
        return table

    def rejected_counts(self) -> dict[str, int]:
        """How many rows or files were skipped, per reason."""
        return dict(Counter(item.reason for item in self.rejected).most_common())

    def with_validation(self, fraction: float = 0.1, seed: int = 0) -> Dataset:
        """Carve a stratified, seeded validation split out of ``train`` if there is none."""
        if "val" in self.splits or fraction <= 0:
            return self
        split = self.split.copy()
        train_rows = np.flatnonzero(split == "train")
        val_rows = stratified_sample(self.labels[train_rows], fraction, seed)
        split[train_rows[val_rows]] = "val"
        note = f"validation: stratified {fraction:.0%} of train, seed {seed}"
        return replace(self, split=split, notes=(*self.notes, note))

    def describe(self) -> str:
        """One line: size, splits and classes."""
        sizes = ", ".join(f"{name} {int((self.split == name).sum()):,}" for name in self.splits)
        kind = " (synthetic)" if self.synthetic else ""
        return f"{len(self):,} faces{kind}: {sizes}; {len(self.classes)} classes"


def stratified_sample(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a seeded sample of ``fraction`` of each class (at least one per class of 2+)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = int(round(len(rows) * fraction))
        if take == 0 and len(rows) > 1:
            take = 1
        chosen.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


# --- entry point ------------------------------------------------------------------


def load(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Load a dataset from a path, ``"builtin"``, or the bytes of an uploaded file.

    ``name`` is the upload's file name (its suffix tells CSV from zip). Raises
    :class:`DatasetError` with a one-sentence message if the source is missing, is
    no dataset, or exceeds one of the limits of :mod:`fertools.limits` (an upload
    over ``limits.MAX_UPLOAD_BYTES`` is refused before anything else).
    """
    if isinstance(source, bytes):
        if len(source) > limits.MAX_UPLOAD_BYTES:
            raise DatasetError(
                f"{name or 'The upload'} is {describe_bytes(len(source))}, above FER Lab's limit of "
                f"{describe_bytes(limits.MAX_UPLOAD_BYTES)} for an upload."
            )
        return _load_bytes(source, name or "upload", progress)
    if str(source) == "builtin":
        return load_builtin()
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist; expected {FORMATS_HELP}.")
    if path.is_dir():
        return load_folder(path, progress=progress)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            file = open(path, "rb")
        except OSError as error:
            raise DatasetError(f"{path} cannot be read ({error.strerror or error}).") from None
        with file, _open_zip(file, str(path)) as archive:
            return load_zip(archive, str(path), progress)
    if suffix == ".npz":
        return load_npz(path)
    if use_cache:
        return _cached(path, lambda: _load_csv_file(path, progress))
    return _load_csv_file(path, progress)


def _load_csv_file(path: Path, progress: ProgressFn | None) -> Dataset:
    """A CSV file, parsed from a memory map: the 300 MB are never copied as a whole."""
    with open(path, "rb") as file:
        try:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return load_csv_bytes(b"", str(path), progress)
    with mapped:
        return load_csv_bytes(mapped, str(path), progress)


def _load_bytes(data: bytes, name: str, progress: ProgressFn | None) -> Dataset:
    suffix = Path(name).suffix.lower()
    if suffix == ".npz":  # an .npz is a zip too, so this comes first
        return load_npz(io.BytesIO(data), name)
    if suffix == ".zip" or data[:4] == b"PK\x03\x04":
        with _open_zip(io.BytesIO(data), name) as archive:
            return load_zip(archive, name, progress)
    return load_csv_bytes(data, name, progress)


# --- built-in synthetic set --------------------------------------------------------


def load_builtin(n_per_class: int = 600, seed: int = 0) -> Dataset:
    """The built-in synthetic dataset: train / val / test of 80 / 10 / 10 %, stratified."""
    from fertools import synthetic

    images, labels = synthetic.generate(n_per_class=n_per_class, seed=seed)
    split = np.full(len(labels), "train", dtype="<U5")
    held_out = stratified_sample(labels, 0.2, seed)
    split[held_out] = "val"
    # Halve the held-out rows per class too: every other sorted index is not stratified.
    split[held_out[stratified_sample(labels[held_out], 0.5, seed)]] = "test"
    return Dataset(
        images=images,
        labels=labels.astype(np.int64),
        split=split,
        classes=FER2013_CLASSES,
        source="builtin",
        synthetic=True,
        notes=(synthetic.SYNTHETIC_NOTE,),
    )


# --- CSV -----------------------------------------------------------------------------


def load_csv_bytes(data: bytes | mmap.mmap, name: str, progress: ProgressFn | None = None) -> Dataset:
    """Parse a FER2013-style or wide CSV held in memory (bytes or a memory-mapped file).

    Raises :class:`DatasetError` for a file that is no FER dataset, or one with a line longer
    than ``limits.MAX_CSV_LINE_BYTES`` or more than ``limits.MAX_CSV_ROWS`` rows.
    """
    lines = _line_spans(data, name)
    if not lines:
        raise DatasetError(f"{name} is empty; expected {FORMATS_HELP}.")
    first = data[lines[0][0] : lines[0][1]]
    header = _header_columns(first)
    if header is not None:
        lines = lines[1:]
    sample = data[lines[0][0] : lines[0][1]] if lines else first
    layout = _detect_layout(header, sample, name)
    if layout == "fer2013":
        return _load_fer2013(data, lines, name, header is not None, progress)
    return _load_wide(data, lines, name, header is not None, progress)


def _line_spans(data: bytes, name: str) -> list[tuple[int, int]]:
    """(start, end) of each non-empty line, without the line break; the CSV limits checked on the way.

    Lines are counted blank ones included, so a file of line breaks costs no more than the
    limit's worth of scanning; the search for a line's end stops one byte past the longest
    line allowed, so one huge line is refused without being scanned.
    """
    max_line, max_lines = limits.MAX_CSV_LINE_BYTES, limits.MAX_CSV_ROWS + 1  # + the header
    spans = []
    start, size, count = 0, len(data), 0
    # A UTF-8 byte order mark (Excel's "CSV UTF-8") is no part of the first line.
    if data[:3] == b"\xef\xbb\xbf":
        start = 3
    while start < size:
        count += 1
        if count > max_lines:
            raise DatasetError(
                f"{name} has more than {limits.MAX_CSV_ROWS:,} rows, FER Lab's limit for a CSV "
                f"(fer2013.csv has 35,887)."
            )
        end = data.find(b"\n", start, start + max_line + 2)  # room for the line, a \r and the \n
        if end < 0:
            end = size
        stop = end - 1 if end > start and data[end - 1] == 13 else end  # strip \r
        if stop - start > max_line:
            raise DatasetError(
                f"{name} has a line longer than {describe_bytes(max_line)} (line {count}), FER Lab's limit "
                f"for a CSV line; a FER2013 row is under 10 KiB."
            )
        if stop > start:
            spans.append((start, stop))
        start = end + 1
    return spans


_HEADER_FIRST_FIELDS = (b"emotion", b"label", b"labels", b"class", b"emotions")


def _header_columns(line: bytes) -> list[str] | None:
    """Column names if ``line`` is a header row, else None.

    A wide CSV's data rows also start with a word (``angry``), so a header is
    recognised by its first column's name or a ``pixels`` column.
    """
    columns = [part.strip().strip(b'"').lower() for part in line.split(b",")]
    if columns[0] in _HEADER_FIRST_FIELDS or b"pixels" in columns:
        return [column.decode("ascii", "replace") for column in columns]
    return None


def _detect_layout(header: list[str] | None, sample: bytes, name: str) -> str:
    if header is not None and "pixels" in header:
        return "fer2013"
    commas = sample.count(b",")
    if commas >= NUM_PIXELS // 2:
        return "wide"
    if 1 <= commas <= 2 and sample.count(b" ") >= NUM_PIXELS // 2:
        return "fer2013"
    raise DatasetError(f"{name} is not a FER dataset; expected {FORMATS_HELP}.")


def _load_fer2013(
    data: bytes,
    lines: list[tuple[int, int]],
    name: str,
    has_header: bool,
    progress: ProgressFn | None,
) -> Dataset:
    line_offset = 2 if has_header else 1
    labels: list[int] = []
    splits: list[str] = []
    rejected: list[Rejection] = []
    parser = _FieldParser(data, len(lines), b" ", progress)
    for number, (start, end) in enumerate(lines):
        first = data.find(b",", start, end)
        last = data.rfind(b",", start, end)
        if first < 0:
            rejected.append(Rejection(f"line {number + line_offset}", "missing pixel column"))
            continue
        emotion = _FAST_LABELS.get(data[start:first])
        if emotion is None:
            emotion = data[start:first].strip().strip(b'"')
            emotion = int(emotion) if emotion.isdigit() and int(emotion) < len(FER2013_CLASSES) else -1
        if last == first:  # Kaggle's train.csv: no Usage column
            split, last = "train", end
        else:
            usage = data[last + 1 : end]
            split = _FAST_USAGE.get(usage) or _USAGE_TO_SPLIT.get(usage.strip().strip(b'"').lower(), "")
            if not split:
                rejected.append(Rejection(f"line {number + line_offset}", "unknown Usage value"))
                continue
        if emotion < 0:
            rejected.append(Rejection(f"line {number + line_offset}", "unknown label"))
            continue
        labels.append(emotion)
        splits.append(split)
        parser.add(first + 1, last, number + line_offset)
    images, keep, pixel_rejects = parser.finish()
    rejected.extend(pixel_rejects)
    rejected.sort(key=lambda item: int(item.where.split()[-1]))
    return Dataset(
        images=images,
        labels=np.asarray(labels, dtype=np.int64)[keep],
        split=np.asarray(splits, dtype="<U5")[keep],
        classes=FER2013_CLASSES,
        rejected=tuple(rejected),
        source=name,
    )


def _load_wide(
    data: bytes,
    lines: list[tuple[int, int]],
    name: str,
    has_header: bool,
    progress: ProgressFn | None,
) -> Dataset:
    line_offset = 2 if has_header else 1
    lookup = {cls: index for index, cls in enumerate(FER2013_CLASSES)}
    labels: list[int] = []
    rejected: list[Rejection] = []
    parser = _FieldParser(data, len(lines), b",", progress)
    for number, (start, end) in enumerate(lines):
        comma = data.find(b",", start, end)
        label = data[start:comma].strip().strip(b'"').decode("utf-8", "replace").lower()
        index = lookup.get(label)
        if index is None and label.isdigit() and int(label) < len(FER2013_CLASSES):
            index = int(label)
        if comma < 0 or index is None:
            rejected.append(Rejection(f"line {number + line_offset}", "unknown label"))
            continue
        labels.append(index)
        parser.add(comma + 1, end, number + line_offset)
    images, keep, pixel_rejects = parser.finish()
    rejected.extend(pixel_rejects)
    rejected.sort(key=lambda item: int(item.where.split()[-1]))
    return Dataset(
        images=images,
        labels=np.asarray(labels, dtype=np.int64)[keep],
        split=np.full(int(keep.sum()), "train", dtype="<U5"),
        classes=FER2013_CLASSES,
        rejected=tuple(rejected),
        source=name,
    )


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def _keep_scratch_memory() -> None:
    """Keep the parser's scratch arrays in glibc's heap instead of mapping them anew per chunk.

    Each chunk allocates a few arrays of 0.1-1.2 MB. By default glibc maps
    arrays that size with ``mmap`` and trims freed heap tops, so every chunk
    pays its page faults (and, with two threads, the ``munmap`` TLB
    shootdowns) again: the full FER2013 CSV took 1.2-1.6 s against 0.78 s
    with fixed thresholds, measured back to back here. Process-wide but
    bounded (at most 32 MB held back per heap); nothing happens off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 32 << 20)
    except (OSError, AttributeError):
        pass


#: The exact bytes of the common label and Usage fields, looked up before any normalising.
_FAST_LABELS = {str(index).encode(): index for index in range(len(FER2013_CLASSES))}
_FAST_USAGE = {b"Training": "train", b"PublicTest": "val", b"PrivateTest": "test"}


class _FieldParser:
    """Parses pixel fields into faces in worker threads while the caller is still scanning rows.

    The caller hands over each row's pixel field as ``(start, end)`` offsets
    into ``data`` with :meth:`add`; every ``_ROWS_PER_CHUNK`` rows go to a
    thread running the vectorised kernel (:func:`_parse_block`, numpy releases
    the GIL). A chunk that is not clean is
    parsed again row by row, which also finds each bad row's reason.
    :meth:`finish` returns the faces of the good rows, a mask over the added
    rows of those kept, and the rejections; progress is reported from the
    calling thread only.
    """

    def __init__(self, data: bytes, capacity: int, sep: bytes, progress: ProgressFn | None):
        _keep_scratch_memory()
        self.data, self.sep, self.progress = data, sep, progress
        self.pixels = np.empty((capacity, NUM_PIXELS), dtype=np.uint8)
        self.keep = np.ones(capacity, dtype=bool)
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.rows: list[int] = []
        self.submitted = 0
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        self.futures: list = []

    def add(self, start: int, end: int, row: int) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.rows.append(row)
        if len(self.starts) - self.submitted == _ROWS_PER_CHUNK:
            self._submit()

    def _submit(self) -> None:
        lo, hi = self.submitted, len(self.starts)
        if hi > lo:
            self.futures.append(self.pool.submit(self._parse_chunk, lo, hi))
            self.submitted = hi

    def _parse_chunk(self, lo: int, hi: int) -> list[Rejection]:
        view = memoryview(self.data)  # slices of a memoryview are not copies
        parts = [view[start:end] for start, end in zip(self.starts[lo:hi], self.ends[lo:hi])]
        block = _parse_block(parts, self.sep)
        if block is not None:
            self.pixels[lo:hi] = block
            return []
        problems = []
        for i, part in zip(range(lo, hi), parts):
            # Most rows of a chunk with one bad row are clean: try the kernel on each first.
            clean = _parse_block([part], self.sep)
            if clean is not None:
                self.pixels[i] = clean[0]
                continue
            row, reason = _parse_row_slowly(bytes(part), self.sep)
            if row is None:
                self.keep[i] = False
                problems.append(Rejection(f"line {self.rows[i]}", reason))
            else:
                self.pixels[i] = row
        return problems

    def finish(self) -> tuple[np.ndarray, np.ndarray, list[Rejection]]:
        self._submit()
        count = len(self.starts)
        rejected: list[Rejection] = []
        with self.pool:
            every = max(1, len(self.futures) // 100)  # at most about 100 progress updates
            for done, future in enumerate(self.futures, start=1):
                rejected.extend(future.result())
                if self.progress is not None and (done % every == 0 or done == len(self.futures)):
                    rows = min(done * _ROWS_PER_CHUNK, count)
                    self.progress(done / len(self.futures), f"parsed {rows} of {count} rows")
        keep = self.keep[:count]
        pixels = self.pixels[:count] if keep.all() else self.pixels[:count][keep]
        return pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), keep, rejected


@functools.lru_cache(maxsize=4)
def _token_table(sep: int) -> np.ndarray:
    """Value and digit count of the decimal token ending a 3-byte window.

    Indexed by ``b[e-2] | b[e-1] << 8 | b[e] << 16`` for a token ending at byte
    ``e``: the value in the low 10 bits and the number of digits (1-3) in bits
    10-11 where those bytes end a 1-3 digit token after ``sep`` (a 3-digit
    window may also end a longer token: :func:`_parse_block` checks lengths);
    0xFFFF otherwise.
    """
    table = np.full((256, 256, 256), 0xFFFF, dtype=np.uint16)  # [b[e], b[e-1], b[e-2]]
    digits = np.arange(10, dtype=np.uint16)
    zero = ord("0")
    table[zero : zero + 10, sep, :] = digits[:, None] | 1 << 10
    table[zero : zero + 10, zero : zero + 10, sep] = (digits[:, None] + 10 * digits[None, :]) | 2 << 10
    table[zero : zero + 10, zero : zero + 10, zero : zero + 10] = (
        digits[:, None, None] + 10 * digits[None, :, None] + 100 * digits[None, None, :]
    ) | 3 << 10
    return table.reshape(-1)


def _parse_block(parts: list[bytes], sep: bytes) -> np.ndarray | None:
    """Rows of exactly 2,304 clean tokens as ``uint8`` (rows, 2304); None if any row is not clean.

    The vectorised kernel: find the separators, read the 4 bytes before each
    as one little-endian word (its top 3 bytes end a token), and look the
    token's value and digit count up in :func:`_token_table`. No Python runs
    per number. A token longer than 3 bytes is caught by the digit counts not
    adding up to the bytes between the separators.
    """
    # 4 spare bytes, 3 separators of padding (every token then has 3 bytes before
    # its end), the rows joined by separators, and a separator after the last token.
    text = b"\0\0\0\0" + sep * 3 + sep.join(parts) + sep
    raw = np.frombuffer(text, dtype=np.uint8, offset=4)
    separators = np.flatnonzero(raw == raw[0])[3:]  # the one after each token
    if len(separators) != NUM_PIXELS * len(parts):
        return None
    # Each row's 2,304th token must end where the row ends (no row short, none long).
    row_ends = np.cumsum([len(part) + 1 for part in parts]) + 2
    if not np.array_equal(separators[NUM_PIXELS - 1 :: NUM_PIXELS], row_ends):
        return None
    # Element s of this unaligned view is the word of raw[s - 4 : s], the spare bytes
    # making it start 4 bytes early; ``take`` gathers faster than fancy indexing.
    words = np.ndarray(shape=(len(raw),), dtype="<u4", buffer=text, strides=(1,)).take(separators)
    entries = _token_table(int(raw[0])).take(words >> 8)
    values = entries & 0x3FF
    if values.max() > 255:  # also every invalid window (0xFFFF)
        return None
    if int((entries >> 10).sum(dtype=np.int64)) != len(raw) - 3 - len(separators):
        return None  # a token of 4 or more digits
    return values.astype(np.uint8).reshape(len(parts), NUM_PIXELS)


def _parse_row_slowly(field: bytes, sep: bytes) -> tuple[np.ndarray | None, str]:
    tokens = field.replace(b'"', b"").strip().split(sep if sep != b" " else None)
    if len(tokens) != NUM_PIXELS:
        return None, f"wrong pixel count (expected {NUM_PIXELS})"
    try:
        values = np.array([int(token) for token in tokens], dtype=np.int64)
    except ValueError:
        try:
            values = np.array([float(token) for token in tokens])
        except ValueError:
            return None, "non-numeric pixel value"
        if not np.isfinite(values).all():
            return None, "non-numeric pixel value"
        if (values != np.round(values)).any():  # "12.0" from a float export is fine, "1.5" is not
            return None, "non-integer pixel value"
    if values.min() < 0 or values.max() > 255:
        return None, "pixel value outside 0..255"
    return values.astype(np.uint8), ""


# --- image folders and zips -------------------------------------------------------------


def _match_class(name: str) -> str:
    return name.strip().lower()


def _layout_entries(
    paths: Iterable[tuple[Sequence[str], object]], source: str
) -> tuple[list[tuple[str, str, object]], list[Rejection]]:
    """Map (relative parts, handle) of image files to (split, class, handle).

    Accepts ``<split>/<class>/file`` and ``<class>/file``, below any number of
    leading folders that are the same for every file (a zip's top folder).
    """
    entries = [(tuple(parts), handle) for parts, handle in paths]
    rejected: list[Rejection] = []
    if not entries:
        raise DatasetError(f"{source} holds no image files; expected {FORMATS_HELP}.")
    # Drop leading folders shared by every file, keeping at least <class>/file.
    while True:
        heads = {parts[0] for parts, _ in entries if len(parts) > 2}
        if len(heads) != 1 or any(len(parts) <= 2 for parts, _ in entries):
            break
        head = heads.pop()
        if head.lower() in _SPLIT_DIRS:
            break
        entries = [(parts[1:], handle) for parts, handle in entries]
    result = []
    for parts, handle in entries:
        cls = _match_class(parts[-2]) if len(parts) >= 2 else ""
        if not cls:  # no folder, or one whose name is blank (" "): no class to learn
            rejected.append(Rejection("/".join(parts), "image outside a class folder"))
        elif len(parts) >= 3 and parts[-3].lower() in _SPLIT_DIRS:
            result.append((_SPLIT_DIRS[parts[-3].lower()], cls, handle))
        else:
            result.append(("train", cls, handle))
    return result, rejected


def _class_order(names: Iterable[str]) -> tuple[str, ...]:
    """FER2013 order for FER2013 class names, then any others alphabetically."""
    present = set(names)
    known = [cls for cls in FER2013_CLASSES if cls in present]
    return tuple(known + sorted(present - set(known)))


def _check_image_count(count: int, source: str) -> None:
    if count > limits.MAX_FACES:
        raise DatasetError(
            f"{source} holds {count:,} images, above FER Lab's limit of {limits.MAX_FACES:,} faces "
            "for a dataset."
        )


def _decode_all(
    entries: list[tuple[str, str, object]],
    read: Callable[[object], bytes],
    describe: Callable[[object], str],
    source: str,
    progress: ProgressFn | None,
    rejected: list[Rejection],
    name_of: Callable[[object], str] | None = None,
) -> Dataset:
    """Decode every entry's image to a face, in two threads.

    Unreadable, truncated and damaged images are skipped with their reason;
    one above the image limits refuses the whole source (:class:`DatasetError`):
    a FER dataset holds no 30000x30000 picture, so it is a hostile file, not a
    bad row. ``name_of`` names an entry in that message (default ``describe``).
    """
    name_of = name_of or describe
    classes = _class_order(cls for _, cls, _ in entries)
    if len(classes) > limits.MAX_CLASSES:
        raise DatasetError(
            f"{source} has {len(classes):,} class folders, above FER Lab's limit of "
            f"{limits.MAX_CLASSES:,} classes."
        )
    index = {cls: i for i, cls in enumerate(classes)}
    images = np.zeros((len(entries), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    ok = np.zeros(len(entries), dtype=bool)
    reasons: dict[int, str] = {}
    refusals: list[DatasetError] = []
    decoded = [0]  # pixels decoded so far, both threads together (under ``counting``)
    counting = threading.Lock()

    def decode(lo: int) -> None:
        # One task per chunk of files: a task per file costs more in thread hand-offs
        # (and GIL convoys around each small read) than the decoding itself.
        for i in range(lo, min(lo + _FILES_PER_TASK, len(entries))):
            if refusals:  # the source is refused: the other thread stops too
                return
            handle = entries[i][2]
            try:
                image = decode_image(read(handle), gray=True, name=name_of(handle))
            except ImageTooLarge as error:
                refusals.append(DatasetError(str(error)))
                return
            except ImageError as error:
                reasons[i] = error.reason
                continue
            except OSError:
                reasons[i] = "unreadable image"
                continue
            except DatasetError as error:  # a damaged zip member
                refusals.append(error)
                return
            with counting:
                decoded[0] += image.size
                over = decoded[0] > limits.MAX_DATASET_PIXELS
            if over:
                refusals.append(
                    DatasetError(
                        f"{source}'s images hold more than {limits.MAX_DATASET_PIXELS:,} pixels in all, "
                        "FER Lab's limit for one dataset: shrink them to face size (48x48 is enough)."
                    )
                )
                return
            images[i] = to_face(image)
            ok[i] = True

    starts = range(0, len(entries), _FILES_PER_TASK)
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(decode, starts), start=1):
            if progress is not None and not refusals:
                count = min(done * _FILES_PER_TASK, len(entries))
                progress(count / len(entries), f"decoded {count} of {len(entries)} images")
    if refusals:
        raise refusals[0]
    for i in np.flatnonzero(~ok):
        rejected.append(Rejection(describe(entries[i][2]), reasons.get(int(i), "unreadable image")))
    labels = np.array([index[cls] for _, cls, _ in entries], dtype=np.int64)
    split = np.array([s for s, _, _ in entries], dtype="<U5")
    return Dataset(
        images=images[ok],
        labels=labels[ok],
        split=split[ok],
        classes=classes,
        rejected=tuple(rejected),
        source=source,
    )


def load_folder(root: Path, progress: ProgressFn | None = None) -> Dataset:
    """Image folders ``root/<split>/<class>/*`` or ``root/<class>/*``."""
    files = _list_files(root)
    images = [
        (parts, path) for parts, path in files if os.path.splitext(parts[-1])[1].lower() in _IMAGE_SUFFIXES
    ]
    if not images:
        csvs = [path for parts, path in files if parts[-1].lower().endswith(".csv")]
        if len(csvs) == 1:
            return load(csvs[0], progress=progress)
    _check_image_count(len(images), str(root))
    entries, rejected = _layout_entries(images, str(root))
    return _decode_all(entries, _read_file, str, str(root), progress, rejected)


def _list_files(root: Path) -> list[tuple[tuple[str, ...], str]]:
    """(parts relative to ``root``, path) of every file below it, hidden ones left out, sorted by parts."""
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        parts = Path(folder).relative_to(root).parts
        files.extend(
            (parts + (name,), os.path.join(folder, name)) for name in names if not name.startswith(".")
        )
    files.sort()
    return files


def _read_file(path: str) -> bytes:
    """The file's bytes, one past the image file limit at most (the decoder refuses those)."""
    return limits.read_file(path, limits.MAX_IMAGE_FILE_BYTES)


def load_zip(archive: zipfile.ZipFile, source: str, progress: ProgressFn | None = None) -> Dataset:
    """A zip of image folders (what a browser upload sends), or of one CSV.

    Its members are checked against the zip limits (:func:`_check_members`) and
    each image member's declared size against ``limits.MAX_IMAGE_FILE_BYTES``
    before any is read. Raises :class:`DatasetError`.
    """
    _check_members(archive, source)
    members = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not any(p.startswith((".", "__MACOSX")) for p in info.filename.split("/"))
    ]
    images = [m for m in members if Path(m.filename).suffix.lower() in _IMAGE_SUFFIXES]
    if not images:
        csvs = [m for m in members if m.filename.lower().endswith(".csv")]
        if len(csvs) == 1:
            name = f"{source}:{csvs[0].filename}"
            content = _read_member(archive, csvs[0], limits.MAX_UPLOAD_BYTES, name, "a CSV")
            return load_csv_bytes(content, name, progress)
        raise DatasetError(f"{source} holds no images or CSV; expected {FORMATS_HELP}.")
    _check_image_count(len(images), source)
    for info in images:
        _check_declared_size(info, limits.MAX_IMAGE_FILE_BYTES, f"{source}:{info.filename}", "one image file")
    entries, rejected = _layout_entries(((m.filename.split("/"), m) for m in images), source)
    return _decode_all(
        entries,
        lambda info: _read_member(
            archive, info, limits.MAX_IMAGE_FILE_BYTES, f"{source}:{info.filename}", "one image file"
        ),
        lambda info: info.filename,
        source,
        progress,
        rejected,
        name_of=lambda info: f"{source}:{info.filename}",
    )


# --- zips: bounded before they are opened and read ------------------------------------------

#: The zip end records (APPNOTE 4.3.16, 4.3.14, 4.3.15): the member count and directory size
#: are fields 4 and 5 of the first, 7 and 8 of the zip64 one, found by the locator before it.
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
#: What zipfile, zlib and the file raise on a damaged archive (ValueError: a negative seek).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    struct.error,
)


def _zip_directory_extent(file) -> tuple[int, int]:
    """(members, central directory bytes) that a zip's end record declares; (0, 0) if it has none.

    ``zipfile.ZipFile`` parses the whole central directory when it opens a zip,
    ~0.5 KB of objects per member, so this is read first. Both the count and the
    directory size are checked: zipfile parses as many entries as the declared
    directory size holds, whatever the count says.
    """
    file.seek(0, os.SEEK_END)
    size = file.tell()
    tail_start = max(0, size - _END_RECORD.size - 0xFFFF)  # the record, then a comment of up to 64 KiB
    file.seek(tail_start)
    tail = file.read()
    at = len(tail) - _END_RECORD.size
    if at < 0 or tail[at : at + 4] != b"PK\x05\x06":  # a zip with a comment: search as zipfile does
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _END_RECORD.size:
            file.seek(0)
            return 0, 0
    record = _END_RECORD.unpack_from(tail, at)
    members, directory = record[4], record[5]
    zip64_at = tail_start + at - _ZIP64_LOCATOR.size - _ZIP64_END_RECORD.size
    if zip64_at >= 0:
        file.seek(zip64_at)
        head = file.read(_ZIP64_END_RECORD.size + _ZIP64_LOCATOR.size)
        if head[:4] == b"PK\x06\x06" and head[_ZIP64_END_RECORD.size :][:4] == b"PK\x06\x07":
            zip64 = _ZIP64_END_RECORD.unpack_from(head)
            members, directory = max(members, zip64[7]), max(directory, zip64[8])
    file.seek(0)
    return members, directory


def _open_zip(file, name: str, what: str = "") -> zipfile.ZipFile:
    """A ``ZipFile`` over an open binary file, once its end record is within the zip limits.

    ``what`` completes "{name} is not ..." when the bytes are no readable zip.
    Raises :class:`DatasetError`; the caller closes the archive (a context manager).
    """
    what = what or f"a readable zip file; expected {FORMATS_HELP}"
    try:
        members, directory = _zip_directory_extent(file)
    except OSError as error:
        raise DatasetError(f"{name} cannot be read ({error.strerror or error}).") from None
    if members > limits.MAX_ZIP_MEMBERS:
        raise DatasetError(
            f"{name} declares {members:,} members, above FER Lab's limit of {limits.MAX_ZIP_MEMBERS:,} "
            "for a zip."
        )
    if directory > limits.MAX_ZIP_DIRECTORY_BYTES:
        raise DatasetError(
            f"{name} declares a directory of {describe_bytes(directory)}, above FER Lab's limit of "
            f"{describe_bytes(limits.MAX_ZIP_DIRECTORY_BYTES)} for a zip."
        )
    try:
        return zipfile.ZipFile(file)
    except _ZIP_ERRORS:
        raise DatasetError(f"{name} is not {what}.") from None


def _check_members(archive: zipfile.ZipFile, source: str) -> None:
    """Refuse a zip whose members exceed the zip limits, are encrypted or use another compression.

    Only stored and deflated members are read: zipfile inflates bzip2 and LZMA
    one whole read at a time, without the output bound its deflate reader has,
    so a few KB of them could inflate to gigabytes before any check. Every
    member counts, read or not: a FER zip has nothing to hide in the others.
    """
    infos = archive.infolist()
    if len(infos) > limits.MAX_ZIP_MEMBERS:  # the end record undercounted
        raise DatasetError(
            f"{source} holds {len(infos):,} members, above FER Lab's limit of {limits.MAX_ZIP_MEMBERS:,} "
            "for a zip."
        )
    total = 0
    for info in infos:
        if info.is_dir():
            continue
        where = f"{source}:{info.filename}"
        if info.flag_bits & 0x1:
            raise DatasetError(f"{where} is encrypted; FER Lab reads zips made without a password.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DatasetError(
                f"{where} uses zip compression method {info.compress_type}, which FER Lab does not read; "
                "make the zip again with the usual deflate compression."
            )
        _check_declared_size(info, limits.MAX_ZIP_TOTAL_BYTES, where, "a zip")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.COMPRESSION_RATIO_MIN_BYTES and ratio > limits.MAX_COMPRESSION_RATIO:
            raise DatasetError(
                f"{where} inflates {ratio:,.0f} times ({describe_bytes(info.compress_size)} to "
                f"{describe_bytes(info.file_size)}), above FER Lab's limit of "
                f"{limits.MAX_COMPRESSION_RATIO}x for a zip member."
            )
        total += info.file_size
    if total > limits.MAX_ZIP_TOTAL_BYTES:
        raise DatasetError(
            f"{source} declares {describe_bytes(total)} uncompressed in all, above FER Lab's limit of "
            f"{describe_bytes(limits.MAX_ZIP_TOTAL_BYTES)} for a zip."
        )


def _check_declared_size(info: zipfile.ZipInfo, limit: int, where: str, what: str) -> None:
    if info.file_size > limit:
        raise DatasetError(
            f"{where} declares {describe_bytes(info.file_size)} uncompressed, above FER Lab's limit of "
            f"{describe_bytes(limit)} for {what}."
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: str, what: str) -> bytes:
    """A member's bytes, reading at most ``limit`` + 1 of them: a lying header gets no further.

    Raises :class:`DatasetError` for a member above ``limit`` or a damaged one
    (bad CRC, truncated or corrupt compressed data).
    """
    _check_declared_size(info, limit, where, what)
    try:
        with archive.open(info) as member:
            content = member.read(limit + 1)
    except _ZIP_ERRORS as error:
        raise DatasetError(f"{where} is damaged and cannot be read ({_why(error)}).") from None
    if len(content) > limit:
        raise DatasetError(
            f"{where} holds more than its header declares and than FER Lab's limit of "
            f"{describe_bytes(limit)} for {what}."
        )
    return content


def _why(error: BaseException) -> str:
    return str(error) or {EOFError: "its data ends early"}.get(type(error), type(error).__name__)


# --- npz, export and the cache ---------------------------------------------------------------


def save_npz(dataset: Dataset, path: str | os.PathLike | io.BytesIO) -> None:
    """Write the dataset (images, labels, split, classes, rejections) to an ``.npz``."""
    np.savez(
        path,
        images=dataset.images,
        labels=dataset.labels,
        split=dataset.split,
        classes=np.array(dataset.classes),
        meta=np.array(
            json.dumps(
                {
                    "source": dataset.source,
                    "synthetic": dataset.synthetic,
                    "notes": list(dataset.notes),
                    "rejected": [[r.where, r.reason] for r in dataset.rejected],
                }
            )
        ),
    )


#: The arrays of a FER Lab ``.npz``: the dtype kinds and number of dimensions each may have.
_NPZ_ARRAYS = {
    "images": ("u", 3),
    "labels": ("iu", 1),
    "split": ("U", 1),
    "classes": ("U", 1),
    "meta": ("U", 0),
}


def load_npz(path: str | os.PathLike | io.BytesIO, name: str | None = None) -> Dataset:
    """Read an ``.npz`` written by :func:`save_npz` (or with at least images and labels).

    Nothing is loaded before its header is checked: the zip limits, then each
    array's shape and dtype (``allow_pickle=False``; no object arrays; at most
    ``limits.MAX_NPZ_ARRAY_BYTES``, ``meta`` at most ``limits.MAX_NPZ_META_BYTES``;
    images ``uint8`` (N, 48, 48); labels and split of length N; classes at most
    ``limits.MAX_CLASSES``). Then labels must index the classes and split names
    be train, val or test. Raises :class:`DatasetError`.
    """
    label = str(name or path)
    try:
        file = path if isinstance(path, io.IOBase) else open(path, "rb")
    except OSError as error:
        raise DatasetError(f"{label} cannot be read ({error.strerror or error}).") from None
    with contextlib.ExitStack() as stack:
        if file is not path:
            stack.enter_context(file)
        archive = stack.enter_context(_open_zip(file, label, "a FER Lab .npz (it is no readable zip file)"))
        _check_members(archive, label)
        members = {info.filename: info for info in archive.infolist()}
        arrays = {
            key: _read_npy(archive, members[f"{key}.npy"], key, label)
            for key in _NPZ_ARRAYS
            if f"{key}.npy" in members
        }
    if "images" not in arrays or "labels" not in arrays:
        raise DatasetError(f"{label} is not a FER Lab .npz (it has no images and labels arrays).")
    images, labels = arrays["images"], arrays["labels"]
    count = len(images)
    classes = tuple(arrays["classes"].tolist()) if "classes" in arrays else FER2013_CLASSES
    problem = class_names_problem(classes)
    if problem:
        raise DatasetError(f"{label} has {problem}.")
    if len(labels) != count:
        raise DatasetError(f"{label} has {len(labels):,} labels for {count:,} images.")
    if count and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise DatasetError(
            f"{label} has labels outside 0..{len(classes) - 1}, the indices of its {len(classes)} classes."
        )
    if "split" in arrays:
        split = arrays["split"]
        if len(split) != count:
            raise DatasetError(f"{label} has {len(split):,} split names for {count:,} images.")
        if not set(np.unique(split).tolist()) <= set(SPLITS):
            raise DatasetError(f"{label} has split names other than {', '.join(SPLITS)}.")
        split = split.astype("<U5")
    else:
        split = np.full(count, "train", "<U5")
    meta = _npz_meta(str(arrays["meta"]), label) if "meta" in arrays else {}
    return Dataset(
        images=images,
        labels=labels.astype(np.int64),
        split=split,
        classes=classes,
        rejected=meta.get("rejected", ()),
        source=meta.get("source", str(name or path)),
        synthetic=meta.get("synthetic", False),
        notes=meta.get("notes", ()),
    )


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, label: str) -> np.ndarray:
    """One array of an ``.npz``, loaded only once its header passes :func:`_npy_header_problem`."""
    where = f"{label}:{info.filename}"
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise DatasetError(
                    f"{where} is in .npy format {version[0]}.{version[1]}; FER Lab reads formats 1.0 and 2.0."
                )
    except DatasetError:
        raise
    except _ZIP_ERRORS as error:
        raise DatasetError(f"{label} is not a FER Lab .npz ({info.filename}: {_why(error)}).") from None
    problem = _npy_header_problem(key, shape, dtype)
    if problem:
        raise DatasetError(f"{where} {problem}.")
    try:
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except _ZIP_ERRORS as error:
        raise DatasetError(f"{where} is damaged and cannot be read ({_why(error)}).") from None


def _npy_header_problem(key: str, shape: tuple[int, ...], dtype: np.dtype) -> str:
    """What is wrong with an array header for the ``.npz`` member ``key``, as a clause; '' if nothing."""
    if dtype.hasobject:
        return "holds Python objects, which FER Lab never loads from a file"
    kinds, ndim = _NPZ_ARRAYS[key]
    if dtype.kind not in kinds or len(shape) != ndim or any(dim < 0 for dim in shape):
        return f"is a {dtype} array of shape {shape}, not what FER Lab writes there"
    size = math.prod(shape) * dtype.itemsize
    limit = limits.MAX_NPZ_META_BYTES if key == "meta" else limits.MAX_NPZ_ARRAY_BYTES
    if size > limit:
        return (
            f"declares a {dtype} array of shape {shape}, {describe_bytes(size)}, above FER Lab's "
            f"limit of {describe_bytes(limit)} for one array"
        )
    if key == "images" and (shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or dtype != np.uint8):
        return "does not hold uint8 48x48 images"
    if key == "classes" and shape[0] > limits.MAX_CLASSES:
        return f"declares {shape[0]:,} classes, above FER Lab's limit of {limits.MAX_CLASSES:,}"
    return ""


def _npz_meta(text: str, label: str) -> dict:
    """The ``meta`` record of :func:`save_npz`, as :class:`Dataset` fields."""
    try:
        meta = json.loads(text)
        return {
            "rejected": tuple(
                Rejection(str(where), str(reason)) for where, reason in meta.get("rejected", [])
            ),
            "source": str(meta.get("source", label)),
            "synthetic": bool(meta.get("synthetic", False)),
            "notes": tuple(str(note) for note in meta.get("notes", [])),
        }
    except (ValueError, TypeError, AttributeError, RecursionError):
        raise DatasetError(
            f"{label} has a damaged meta record (it is not the JSON FER Lab writes)."
        ) from None


def to_fer2013_csv(dataset: Dataset) -> bytes:
    """The dataset as FER2013-style CSV bytes (``emotion,pixels,Usage``).

    Labels are written as FER2013 indices when the classes are FER2013's;
    otherwise the CSV holds this dataset's own label indices.
    """
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    index = {cls: i for i, cls in enumerate(FER2013_CLASSES)}
    fer_labels = [index.get(cls, i) for i, cls in enumerate(dataset.classes)]
    flat = dataset.images.reshape(len(dataset), -1)
    lines = ["emotion,pixels,Usage"]
    for label, row, split in zip(dataset.labels, flat, dataset.split):
        lines.append(f"{fer_labels[label]},{' '.join(map(str, row.tolist()))},{usage[str(split)]}")
    return ("\n".join(lines) + "\n").encode("ascii")


def _cached(path: Path, parse: Callable[[], Dataset]) -> Dataset:
    stat = path.stat()
    key = hashlib.sha1(
        f"{_CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()[:20]
    cache_file = cache_dir() / f"{key}.npz"
    if cache_file.exists():
        try:
            return load_npz(cache_file)
        except DatasetError:
            cache_file.unlink(missing_ok=True)
    dataset = parse()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(".partial.npz")
        save_npz(dataset, partial)
        os.replace(partial, cache_file)
    except OSError:
        pass  # a read-only cache only costs speed
    return dataset


def discover(root: str | os.PathLike) -> list[Path]:
    """Dataset sources under ``root``: CSV, zip and npz files, and image-folder trees.

    A folder counts if it has class folders of images (``<class>/*``) or split
    folders of those; its sub-folders are then not listed again.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[Path] = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in (".csv", ".zip", ".npz"):
            found.append(path)
        elif path.is_dir():
            if _looks_like_image_tree(path):
                found.append(path)
            else:
                found.extend(discover(path))
    return found


def _looks_like_image_tree(folder: Path) -> bool:
    def has_images(directory: Path) -> bool:
        return any(p.suffix.lower() in _IMAGE_SUFFIXES for p in directory.iterdir() if p.is_file())

    children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(has_images(child) for child in children):
        return True
    return any(
        child.name.lower() in _SPLIT_DIRS and any(has_images(g) for g in child.iterdir() if g.is_dir())
        for child in children
    )
