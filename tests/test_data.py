"""Dataset loading: every format, malformed rows, the cache and the validation split.

All data is generated here; no test needs the real FER2013 files.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertools import data
from fertools.constants import FER2013_CLASSES, NUM_PIXELS
from fertools.data import FORMATS_HELP, Dataset, DatasetError

USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


# --- generators ----------------------------------------------------------------------------


def random_pixels(count: int, seed: int = 0) -> np.ndarray:
    """``uint8`` (count, 2304) random faces, flattened."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, NUM_PIXELS), dtype=np.uint8)


def joined(values, sep: str = " ") -> str:
    return sep.join(map(str, np.asarray(values).tolist()))


def big_fer2013(count: int, distinct: int = 16) -> tuple[np.ndarray, list[str]]:
    """``count`` fer2013.csv lines (no header) cycling through ``distinct`` random faces.

    Joining millions of numbers in Python is slower than parsing them; cycling
    keeps the test about the loader. Returns the pixels of every row and the lines.
    """
    pool = random_pixels(distinct, seed=11)
    texts = [joined(row) for row in pool]
    usage = ("Training", "PublicTest", "PrivateTest")
    lines = [f"{i % 7},{texts[i % distinct]},{usage[i % 3]}" for i in range(count)]
    return pool[np.arange(count) % distinct], lines


def fer2013_text(pixels: np.ndarray, labels, splits=None) -> str:
    """fer2013.csv (``emotion,pixels,Usage``), or Kaggle's train.csv when ``splits`` is None."""
    if splits is None:
        rows = [f"{label},{joined(row)}" for label, row in zip(labels, pixels)]
        return "emotion,pixels\n" + "\n".join(rows) + "\n"
    rows = [f"{label},{joined(row)},{USAGE[split]}" for label, row, split in zip(labels, pixels, splits)]
    return "emotion,pixels,Usage\n" + "\n".join(rows) + "\n"


def wide_text(pixels: np.ndarray, names, header: bool) -> str:
    """The wide CSV: ``label,p0,...,p2303`` with string labels."""
    lines = ["label," + ",".join(f"p{i}" for i in range(NUM_PIXELS))] if header else []
    lines += [f"{name},{joined(row, ',')}" for name, row in zip(names, pixels)]
    return "\n".join(lines) + "\n"


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def face_image(seed: int) -> np.ndarray:
    """A random 48x48 gray face (PNG keeps it exact)."""
    return random_pixels(1, seed).reshape(48, 48)


def make_folder(root: Path, layout: dict[str, dict[str, int]], seed: int = 0) -> dict[Path, np.ndarray]:
    """Write ``{split_dir or "": {class: count}}`` as PNGs under ``root``; returns path -> face."""
    written = {}
    for split_dir, per_class in layout.items():
        for cls, count in per_class.items():
            for i in range(count):
                path = root / split_dir / cls / f"{cls}_{i}.png"
                face = face_image(seed + len(written))
                write_png(path, face)
                written[path] = face
    return written


# --- fer2013.csv and Kaggle's train.csv ----------------------------------------------------------


def test_fer2013_csv_maps_usage_to_splits(tmp_path):
    pixels = random_pixels(9)
    labels = [0, 1, 2, 3, 4, 5, 6, 3, 3]
    splits = ["train", "train", "train", "val", "val", "test", "test", "test", "train"]
    path = tmp_path / "fer2013.csv"
    path.write_text(fer2013_text(pixels, labels, splits))

    dataset = data.load(path)

    assert len(dataset) == 9 and dataset.rejected == ()
    assert dataset.classes == FER2013_CLASSES
    assert dataset.images.dtype == np.uint8 and dataset.images.shape == (9, 48, 48)
    assert dataset.labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.images.reshape(9, -1), pixels)
    assert dataset.labels.tolist() == labels
    assert dataset.split.tolist() == splits
    assert dataset.splits == ["train", "val", "test"]
    assert dataset.counts()["test"] == {
        "angry": 0,
        "disgust": 0,
        "fear": 0,
        "happy": 1,
        "sad": 0,
        "surprise": 1,
        "neutral": 1,
    }


def test_kaggle_train_csv_without_usage_is_all_train(tmp_path):
    pixels = random_pixels(5, seed=1)
    path = tmp_path / "train.csv"
    path.write_text(fer2013_text(pixels, [6, 5, 4, 3, 2]))

    dataset = data.load(path)

    assert len(dataset) == 5 and dataset.splits == ["train"]
    assert dataset.labels.tolist() == [6, 5, 4, 3, 2]
    np.testing.assert_array_equal(dataset.images.reshape(5, -1), pixels)


def test_crlf_line_endings_and_quoted_pixels(tmp_path):
    pixels = random_pixels(2, seed=2)
    text = (
        'emotion,pixels,Usage\r\n0,"'
        + joined(pixels[0])
        + '",Training\r\n3,'
        + joined(pixels[1])
        + ",PublicTest\r\n"
    )
    path = tmp_path / "crlf.csv"
    path.write_bytes(text.encode())

    dataset = data.load(path)

    assert len(dataset) == 2 and dataset.rejected == ()
    np.testing.assert_array_equal(dataset.images.reshape(2, -1), pixels)
    assert dataset.split.tolist() == ["train", "val"]


# --- the wide CSV ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_wide_csv_string_labels_any_case(tmp_path, header):
    pixels = random_pixels(7, seed=3)
    names = ["angry", "Disgust", "FEAR", "happy", "Sad", "surprise", "NeUtRaL"]
    path = tmp_path / "wide.csv"
    path.write_text(wide_text(pixels, names, header))

    dataset = data.load(path)

    assert len(dataset) == 7 and dataset.rejected == ()
    assert dataset.labels.tolist() == list(range(7))
    assert dataset.splits == ["train"]
    np.testing.assert_array_equal(dataset.images.reshape(7, -1), pixels)


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_a_byte_order_mark_costs_no_face(tmp_path, header):
    # Excel's "CSV UTF-8" starts the file with one: the first row (or the header) stays whole.
    pixels = random_pixels(5, seed=4)
    names = ["angry", "fear", "happy", "sad", "neutral"]
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + wide_text(pixels, names, header).encode())

    dataset = data.load(path)

    assert len(dataset) == 5 and dataset.rejected == ()
    np.testing.assert_array_equal(dataset.images.reshape(5, -1), pixels)


# --- malformed rows ------------------------------------------------------------------------------


def _bad_fer2013_rows() -> tuple[str, int, dict[str, int]]:
    """A fer2013.csv with 5 good rows and 10 bad ones, and the expected count per reason."""
    good = random_pixels(6, seed=4)
    row = [str(v) for v in random_pixels(1, seed=5)[0]]

    def with_value(value: str) -> str:
        values = list(row)
        values[100] = value
        return " ".join(values)

    lines = ["emotion,pixels,Usage"]
    lines.append(f"0,{joined(good[0])},Training")
    lines.append(f"1,{' '.join(row[:-1])},Training")  # 2303 values
    lines.append(f"2,{' '.join(row + ['7'])},Training")  # 2305 values: cancels the 2303 in a chunk
    lines.append(f"3,{joined(good[1])},PublicTest")
    lines.append(f"4,{with_value('abc')},Training")
    lines.append(f"5,{with_value('256')},Training")
    lines.append(f"6,{with_value('-1')},PrivateTest")
    lines.append(f"3,{with_value('65636')},Training")  # wraps to 100 as int16
    lines.append(f"7,{joined(good[2])},Training")  # no class 7
    lines.append(f"x,{joined(good[2])},Training")
    lines.append(f"2,{joined(good[3])},Training")
    lines.append(f"4,{joined(good[4])},Holdout")  # unknown Usage
    lines.append(f"5,{joined(good[5])},PrivateTest")
    lines.append(f"6,{joined(good[0])},Training")
    lines.append(f"1,{with_value('nan')},Training")
    expected = {
        "wrong pixel count (expected 2304)": 2,
        "non-numeric pixel value": 2,
        "pixel value outside 0..255": 3,
        "unknown label": 2,
        "unknown Usage value": 1,
    }
    return "\n".join(lines) + "\n", 5, expected


def test_malformed_fer2013_rows_are_skipped_and_counted(tmp_path):
    text, good_rows, expected = _bad_fer2013_rows()
    path = tmp_path / "bad.csv"
    path.write_text(text)

    dataset = data.load(path)

    assert len(dataset) == good_rows
    assert dataset.rejected_counts() == expected
    assert len(dataset.rejected) == sum(expected.values())
    # Line numbers count the header as line 1, as an editor does.
    assert [r.where for r in dataset.rejected] == [f"line {n}" for n in (3, 4, 6, 7, 8, 9, 10, 11, 13, 16)]


def test_malformed_rows_exact_labels_and_pixels(tmp_path):
    text, _, _ = _bad_fer2013_rows()
    path = tmp_path / "bad.csv"
    path.write_text(text)
    good = random_pixels(6, seed=4)

    dataset = data.load(path)

    assert dataset.labels.tolist() == [0, 3, 2, 5, 6]
    assert dataset.split.tolist() == ["train", "val", "train", "test", "train"]
    np.testing.assert_array_equal(dataset.images.reshape(len(dataset), -1), good[[0, 1, 3, 5, 0]])


def test_malformed_rows_in_a_big_file_are_found_in_every_chunk(tmp_path):
    """Bad rows spread over many parser chunks are all found, and no bad number passes as a pixel."""
    pixels, rows = big_fer2013(1500)
    lines = ["emotion,pixels,Usage", *rows]
    # "1000" and "2550" end in a valid 3-digit pixel: the kernel must see the whole token.
    bad = {10: "short", 11: "long", 700: "256", 701: "1000", 702: "2550", 1400: "abc", 1401: "short"}
    for index, kind in bad.items():
        label, values, usage = lines[index + 1].split(",")
        values = values.split()
        if kind == "short":
            values = values[:-1]
        elif kind == "long":
            values = [*values, "1"]
        else:
            values[0] = kind
        lines[index + 1] = f"{label},{' '.join(values)},{usage}"
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")

    dataset = data.load(path)

    assert len(dataset) == 1500 - len(bad)
    assert dataset.rejected_counts() == {
        "wrong pixel count (expected 2304)": 3,
        "pixel value outside 0..255": 3,
        "non-numeric pixel value": 1,
    }
    keep = np.setdiff1d(np.arange(1500), list(bad))
    np.testing.assert_array_equal(dataset.images.reshape(len(dataset), -1), pixels[keep])
    np.testing.assert_array_equal(dataset.labels, keep % 7)


def test_malformed_wide_rows(tmp_path):
    pixels = random_pixels(5, seed=7)
    lines = [f"happy,{joined(pixels[0], ',')}"]
    lines.append(f"happy,{joined(pixels[1][:-1], ',')}")  # 2303 values
    lines.append(f"contempt,{joined(pixels[2], ',')}")  # not a FER class
    lines.append(f"sad,{joined(pixels[3], ',').replace('1', 'x', 1)}")
    lines.append(f"Neutral,{joined(pixels[4], ',')}")
    values = [str(v) for v in pixels[4]]
    values[7] = "300"
    lines.append("angry," + ",".join(values))
    path = tmp_path / "wide_bad.csv"
    path.write_text("\n".join(lines) + "\n")

    dataset = data.load(path)

    assert len(dataset) == 2
    assert dataset.labels.tolist() == [3, 6]
    assert dataset.rejected_counts() == {
        "wrong pixel count (expected 2304)": 1,
        "unknown label": 1,
        "non-numeric pixel value": 1,
        "pixel value outside 0..255": 1,
    }


# --- files that are no dataset ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"dear diary,\ntoday I trained a model\n"),
        ("table.csv", b"a,b,c\n1,2,3\n4,5,6\n"),
        ("empty.csv", b""),
        ("photo.png", cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()),
        ("broken.zip", b"PK\x03\x04 this is not really a zip"),
        ("broken.npz", b"not an npz"),
    ],
)
def test_a_file_that_is_no_dataset_raises_dataset_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DatasetError) as caught:
        data.load(path)

    message = str(caught.value)
    assert name in message
    assert "\n" not in message
    if name.endswith((".txt", ".csv", ".png")):
        assert FORMATS_HELP in message


def test_uploaded_bytes_that_are_no_dataset_raise_dataset_error():
    with pytest.raises(DatasetError, match="expected fer2013.csv"):
        data.load(b"hello,world\n", name="hello.csv")
    with pytest.raises(DatasetError, match="x.zip"):
        data.load(b"not a zip", name="x.zip")


def test_missing_path_raises_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        data.load(tmp_path / "nope.csv")


def test_a_folder_without_images_raises_dataset_error(tmp_path):
    (tmp_path / "empty" / "angry").mkdir(parents=True)
    (tmp_path / "empty" / "angry" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no image files"):
        data.load(tmp_path / "empty")


# --- image folders and zips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("val_dir"),
    ["validation", "val"],
)
def test_folder_with_split_folders(tmp_path, val_dir):
    root = tmp_path / "faces"
    written = make_folder(
        root,
        {
            "train": {"happy": 3, "angry": 2},
            val_dir: {"happy": 1, "angry": 1},
            "test": {"happy": 2, "angry": 1},
        },
    )

    dataset = data.load(root)

    assert len(dataset) == 10 and dataset.rejected == ()
    assert dataset.classes == ("angry", "happy")
    assert dataset.counts() == {
        "train": {"angry": 2, "happy": 3},
        "val": {"angry": 1, "happy": 1},
        "test": {"angry": 1, "happy": 2},
    }
    # Every image arrives unchanged with its own label.
    by_face = {face.tobytes(): path for path, face in written.items()}
    for image, label, split in zip(dataset.images, dataset.labels, dataset.split):
        path = by_face[image.tobytes()]
        assert dataset.classes[label] == path.parent.name
        assert split == {"validation": "val"}.get(path.parent.parent.name, path.parent.parent.name)


def test_folder_of_class_folders_is_all_train(tmp_path):
    root = tmp_path / "faces"
    make_folder(root, {"": {"sad": 2, "Surprise": 3}})

    dataset = data.load(root)

    assert dataset.classes == ("sad", "surprise")
    assert dataset.counts() == {"train": {"sad": 2, "surprise": 3}}


def test_hidden_files_are_skipped_but_a_hidden_parent_folder_is_not(tmp_path):
    root = tmp_path / ".cache" / "faces"  # e.g. a download cache: only paths below root count
    make_folder(root, {"": {"happy": 2, "sad": 1}})
    write_png(root / "happy" / ".thumbnail.png", face_image(99))
    write_png(root / ".previews" / "angry" / "a.png", face_image(98))
    (root / "sad" / ".DS_Store").write_bytes(b"\0\1junk")

    dataset = data.load(root)

    assert dataset.counts() == {"train": {"happy": 2, "sad": 1}}
    assert dataset.rejected == ()


def test_folder_of_many_files_keeps_sorted_order(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_FILES_PER_TASK", 4)  # many tasks over two threads
    written = make_folder(tmp_path, {"train": {"angry": 9, "happy": 6}, "test": {"angry": 5}})
    corrupt = tmp_path / "train" / "happy" / "happy_3.png"
    corrupt.write_bytes(b"not an image")
    del written[corrupt]

    dataset = data.load(tmp_path)

    expected = [written[path] for path in sorted(written, key=lambda p: p.relative_to(tmp_path).parts)]
    np.testing.assert_array_equal(dataset.images, np.stack(expected))
    assert [r.reason for r in dataset.rejected] == ["unreadable image"]
    assert dataset.counts() == {"train": {"angry": 9, "happy": 5}, "test": {"angry": 5, "happy": 0}}


def test_fewer_classes_keep_fer_order(tmp_path):
    """A Masked-FER2013-like set of 5 classes gives those classes, in FER2013 order."""
    root = tmp_path / "masked"
    # Written in an order that is neither alphabetical nor FER's.
    make_folder(root, {"train": {"surprise": 1, "neutral": 2, "angry": 1, "sad": 3, "happy": 1}})

    dataset = data.load(root)

    assert dataset.classes == ("angry", "happy", "sad", "surprise", "neutral")
    assert dataset.counts()["train"] == {"angry": 1, "happy": 1, "sad": 3, "surprise": 1, "neutral": 2}


def test_images_of_any_size_and_colour_become_48x48_gray(tmp_path):
    root = tmp_path / "mixed"
    colour = np.zeros((80, 100, 3), np.uint8)
    colour[:] = (10, 200, 50)  # BGR
    rgba = np.zeros((60, 60, 4), np.uint8)
    rgba[:] = (10, 200, 50, 0)  # transparent: composited onto white, as the Photo page shows it
    deep = np.full((30, 40), 40000, np.uint16)  # 16-bit gray
    gray_jpg = np.full((120, 90), 77, np.uint8)
    write_png(root / "happy" / "colour.png", colour)
    write_png(root / "happy" / "rgba.png", rgba)
    write_png(root / "sad" / "deep.png", deep)
    (root / "sad" / "gray.jpg").write_bytes(cv2.imencode(".jpg", gray_jpg)[1].tobytes())
    write_png(root / "sad" / "small.bmp", np.full((20, 20), 9, np.uint8))

    dataset = data.load(root)

    assert len(dataset) == 5 and dataset.rejected == ()
    assert dataset.images.shape == (5, 48, 48) and dataset.images.dtype == np.uint8
    expected_gray = round(0.299 * 50 + 0.587 * 200 + 0.114 * 10)  # 133
    means = sorted(round(float(image.mean())) for image in dataset.images)
    assert means == sorted([expected_gray, 255, 40000 >> 8, 77, 9])
    # Uniform pictures stay uniform (JPEG may wobble by a level or two).
    assert all(int(image.max()) - int(image.min()) <= 2 for image in dataset.images)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    root = tmp_path / "faces"
    make_folder(root, {"": {"happy": 3, "sad": 2}})
    (root / "happy" / "garbage.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    (root / "sad" / "empty.png").write_bytes(b"")
    (root / "sad" / "notes.txt").write_text("ignored: not an image suffix")

    dataset = data.load(root)

    assert len(dataset) == 5
    assert dataset.rejected_counts() == {"unreadable image": 2}
    assert sorted(Path(r.where).name for r in dataset.rejected) == ["empty.png", "garbage.jpg"]


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _png(seed: int) -> bytes:
    return cv2.imencode(".png", face_image(seed))[1].tobytes()


ZIP_FILES = {
    "fer_small/train/happy/a.png": _png(1),
    "fer_small/train/happy/b.png": _png(2),
    "fer_small/train/fear/c.png": _png(3),
    "fer_small/test/fear/d.png": _png(4),
    "fer_small/test/happy/broken.jpg": b"garbage",
    "__MACOSX/fer_small/train/happy/._a.png": b"resource fork",
    "fer_small/.DS_Store": b"finder",
}


def _check_zip_dataset(dataset: Dataset) -> None:
    assert dataset.classes == ("fear", "happy")
    assert dataset.counts() == {"train": {"fear": 1, "happy": 2}, "test": {"fear": 1, "happy": 0}}
    assert dataset.rejected_counts() == {"unreadable image": 1}
    assert dataset.rejected[0].where == "fer_small/test/happy/broken.jpg"
    faces = {image.tobytes() for image in dataset.images}
    assert faces == {face_image(seed).tobytes() for seed in (1, 2, 3, 4)}


def test_zip_of_folders_from_disk(tmp_path):
    path = tmp_path / "fer_small.zip"
    path.write_bytes(_zip_bytes(ZIP_FILES))
    _check_zip_dataset(data.load(path))


def test_zip_of_folders_uploaded_as_bytes():
    dataset = data.load(_zip_bytes(ZIP_FILES), name="x.zip")
    _check_zip_dataset(dataset)
    assert dataset.source == "x.zip"


def test_zip_holding_one_csv():
    pixels = random_pixels(3, seed=8)
    content = _zip_bytes(
        {"fer2013/fer2013.csv": fer2013_text(pixels, [0, 1, 2], ["train", "val", "test"]).encode()}
    )
    dataset = data.load(content, name="fer2013.zip")
    assert len(dataset) == 3 and dataset.splits == ["train", "val", "test"]


def test_uploaded_csv_bytes():
    pixels = random_pixels(2, seed=9)
    dataset = data.load(fer2013_text(pixels, [3, 4]).encode(), name="train.csv")
    assert dataset.labels.tolist() == [3, 4]


# --- npz, builtin, export ---------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    text, _, _ = _bad_fer2013_rows()
    source = tmp_path / "bad.csv"
    source.write_text(text)
    original = data.load(source).with_validation(0.5, seed=1)
    path = tmp_path / "set.npz"

    data.save_npz(original, path)
    loaded = data.load(path)

    np.testing.assert_array_equal(loaded.images, original.images)
    np.testing.assert_array_equal(loaded.labels, original.labels)
    np.testing.assert_array_equal(loaded.split, original.split)
    assert loaded.classes == original.classes
    assert loaded.rejected == original.rejected
    assert loaded.source == original.source
    assert loaded.notes == original.notes
    assert loaded.synthetic is False


def test_npz_round_trip_in_memory(tiny_builtin):
    buffer = io.BytesIO()
    data.save_npz(tiny_builtin, buffer)
    loaded = data.load(buffer.getvalue(), name="tiny.npz")
    np.testing.assert_array_equal(loaded.images, tiny_builtin.images)
    assert loaded.synthetic is True and loaded.notes == tiny_builtin.notes


def test_builtin_source():
    dataset = data.load("builtin")
    assert dataset.synthetic and dataset.classes == FER2013_CLASSES
    assert dataset.images.shape[1:] == (48, 48) and dataset.images.dtype == np.uint8
    assert dataset.splits == ["train", "val", "test"]
    sizes = {name: int((dataset.split == name).sum()) for name in dataset.splits}
    assert sizes["train"] == pytest.approx(0.8 * len(dataset), abs=7)
    assert sizes["val"] == pytest.approx(sizes["test"], abs=7)
    # Balanced in every split.
    for per_class in dataset.counts().values():
        assert max(per_class.values()) - min(per_class.values()) <= 1


def test_fer2013_csv_export_round_trip(tmp_path, tiny_builtin):
    path = tmp_path / "export.csv"
    path.write_bytes(data.to_fer2013_csv(tiny_builtin))
    loaded = data.load(path)
    np.testing.assert_array_equal(loaded.images, tiny_builtin.images)
    np.testing.assert_array_equal(loaded.labels, tiny_builtin.labels)
    np.testing.assert_array_equal(loaded.split, tiny_builtin.split)


# --- the on-disk cache ------------------------------------------------------------------------------


class ParseCounter:
    """Counts calls of data.load_csv_bytes (the expensive parse) while passing them through."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self._real = data.load_csv_bytes
        monkeypatch.setattr(data, "load_csv_bytes", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._real(*args, **kwargs)


def _same(a: Dataset, b: Dataset) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.split, b.split)
    assert (a.classes, a.rejected, a.source) == (b.classes, b.rejected, b.source)


def test_second_load_is_served_from_the_cache(tmp_path, monkeypatch, ferlab_dirs):
    text, _, _ = _bad_fer2013_rows()
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    parses = ParseCounter(monkeypatch)

    first = data.load(path)
    second = data.load(path)

    assert parses.calls == 1
    assert len(list(ferlab_dirs["cache"].glob("*.npz"))) == 1
    _same(first, second)


def test_a_changed_file_invalidates_the_cache(tmp_path, monkeypatch):
    pixels = random_pixels(4, seed=10)
    path = tmp_path / "fer2013.csv"
    path.write_text(fer2013_text(pixels, [0, 1, 2, 3]))
    parses = ParseCounter(monkeypatch)
    assert data.load(path).labels.tolist() == [0, 1, 2, 3]

    # Same size, new content and a new modification time.
    path.write_text(fer2013_text(pixels, [3, 2, 1, 0]))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert data.load(path).labels.tolist() == [3, 2, 1, 0]
    assert parses.calls == 2

    # A different size.
    path.write_text(fer2013_text(pixels[:2], [5, 5]))
    assert data.load(path).labels.tolist() == [5, 5]
    assert parses.calls == 3

    assert data.load(path, use_cache=False).labels.tolist() == [5, 5]
    assert data.load(path).labels.tolist() == [5, 5]
    assert parses.calls == 4


def test_a_corrupt_cache_entry_is_parsed_again(tmp_path, monkeypatch, ferlab_dirs):
    path = tmp_path / "fer2013.csv"
    path.write_text(fer2013_text(random_pixels(2), [0, 1]))
    parses = ParseCounter(monkeypatch)
    data.load(path)
    (entry,) = ferlab_dirs["cache"].glob("*.npz")
    entry.write_bytes(b"truncated")

    assert data.load(path).labels.tolist() == [0, 1]
    assert parses.calls == 2


# --- the validation split ----------------------------------------------------------------------------


def _train_only(counts: dict[int, int]) -> Dataset:
    labels = np.concatenate([np.full(n, label) for label, n in counts.items()]).astype(np.int64)
    labels = np.random.default_rng(0).permutation(labels)
    return Dataset(
        images=np.zeros((len(labels), 48, 48), np.uint8),
        labels=labels,
        split=np.full(len(labels), "train", "<U5"),
        classes=FER2013_CLASSES,
    )


def test_with_validation_is_stratified():
    dataset = _train_only({0: 50, 1: 30, 3: 200, 6: 3})

    carved = dataset.with_validation(0.1, seed=0)

    assert carved.splits == ["train", "val"]
    val = carved.counts()["val"]
    assert (val["angry"], val["disgust"], val["happy"], val["neutral"]) == (5, 3, 20, 1)
    assert carved.counts()["train"]["happy"] == 180
    assert carved.notes[-1] == "validation: stratified 10% of train, seed 0"


def test_with_validation_is_seeded():
    dataset = _train_only({0: 40, 2: 40, 4: 40})
    a = dataset.with_validation(0.25, seed=3).split
    b = dataset.with_validation(0.25, seed=3).split
    c = dataset.with_validation(0.25, seed=4).split
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_with_validation_keeps_an_existing_val_split(tiny_builtin):
    assert tiny_builtin.with_validation(0.5) is tiny_builtin
    dataset = _train_only({0: 10})
    assert dataset.with_validation(0.0) is dataset


# --- speed (a regression check, not the target) ---------------------------------------------------------


def test_loading_2000_rows_takes_under_2_seconds(tmp_path):
    """Parsing (no cache) 2,000 generated rows; about 0.3 s on an idle 2-core machine."""
    pixels, rows = big_fer2013(2000)
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")

    # Best of two: the CI machine is shared, and one slow run is noise, not a regression.
    seconds = np.inf
    for _ in range(2):
        started = time.perf_counter()
        dataset = data.load(path, use_cache=False)
        seconds = min(seconds, time.perf_counter() - started)

    assert len(dataset) == 2000 and dataset.rejected == ()
    np.testing.assert_array_equal(dataset.images.reshape(2000, -1), pixels)
    assert seconds < 2.0, f"loading 2,000 rows took {seconds:.2f} s"


def test_a_dataset_describes_itself_with_thousands_separators():
    dataset = data.load_builtin()
    assert dataset.describe().startswith(f"{len(dataset):,} faces (synthetic): train ")
    assert "4,200 faces" in dataset.describe() and "train 3,360" in dataset.describe()
