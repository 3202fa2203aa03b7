"""How fast datasets load: a FER2013 CSV cold and cached, an image folder, ``convert``, and the baselines.

The baselines are the two notebook parsers FER Lab replaces, re-typed plainly: the GR5243
per-pixel loop and ``np.array(row.split())`` per row. They are timed once each (they are slow),
on the whole file or, in quick mode, on its first rows.
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fertools.bench.generated import write_fer2013_csv, write_image_folder
from fertools.bench.sizes import Progress, Sizes
from fertools.timing import call_seconds, per_second, seconds


def bench_loading(
    sizes: Sizes,
    csv_path: str | os.PathLike | None,
    folder: str | os.PathLike | None,
    work: Path,
    baselines: bool,
    say: Progress,
) -> dict:
    """CSV cold and cached, folder, conversion and (with ``baselines``) the notebook parsers.

    ``csv_path`` and ``folder`` are real data to time; None: generated into ``work``.
    Raises :class:`fertools.data.DatasetError` for a file that is no dataset.
    """
    from fertools import data

    if csv_path is None:
        csv_file = work / "fer2013.csv"
        say(f"loading: writing a {sizes.csv_rows:,}-row FER2013-format CSV")
        write_fer2013_csv(csv_file, sizes.csv_rows)
    else:
        csv_file = Path(csv_path)
    megabytes = csv_file.stat().st_size / 1e6

    say("loading: CSV, cold")
    # A fresh, empty cache folder: nothing cached can leak into the cold numbers.
    with environment_variable("FERLAB_CACHE_DIR", str(work / "cache-unused")):
        dataset = data.load(csv_file, use_cache=False)  # the warm-up load
        cold = seconds(call_seconds(lambda: data.load(csv_file, use_cache=False), sizes.repeats))
    rows = len(dataset) + len(dataset.rejected)
    say("loading: CSV, through the on-disk cache")
    with environment_variable("FERLAB_CACHE_DIR", str(work / "cache")):
        start = time.perf_counter()
        data.load(csv_file)
        first = time.perf_counter() - start
        cached = seconds(call_seconds(lambda: data.load(csv_file), sizes.repeats))
    csv_report = {
        "source": str(csv_path) if csv_path else "generated",
        "rows": rows,
        "faces": len(dataset),
        "megabytes": round(megabytes, 1),
        "cold": {**cold, "rows_per_s": per_second(rows, cold["median_s"])},
        "first_cached_load_s": round(first, 4),
        "cached": {**cached, "rows_per_s": per_second(rows, cached["median_s"])},
        "note": "cold: parse with use_cache=False; first_cached_load_s: parse plus cache write; "
        "cached: later loads read the cache (.npz)",
    }
    del dataset

    if folder is None:
        folder_path = work / "images"
        say(f"loading: writing {sizes.folder_images:,} JPEGs into train/<class>/")
        write_image_folder(folder_path, sizes.folder_images)
    else:
        folder_path = Path(folder)
    say("loading: image folder")
    images = data.load(folder_path)  # the warm-up load
    count = len(images) + len(images.rejected)
    del images
    folder_stats = seconds(call_seconds(lambda: data.load(folder_path), sizes.repeats))

    def convert() -> None:  # what `python -m fertools convert FOLDER OUT.npz` does
        data.save_npz(data.load(folder_path), work / "converted.npz")

    say("loading: folder -> .npz conversion")
    converted = seconds(call_seconds(convert, sizes.repeats))
    report = {
        "csv": csv_report,
        "folder": {
            "source": str(folder) if folder else "generated",
            "images": count,
            **folder_stats,
            "images_per_s": per_second(count, folder_stats["median_s"]),
        },
        "convert": {
            **converted,
            "images_per_s": per_second(count, converted["median_s"]),
            "note": "folder -> .npz, as `python -m fertools convert` does",
        },
    }
    if baselines:
        report["baselines"] = csv_baselines(csv_file, rows, sizes, csv_report, say)
    return report


@contextlib.contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """Set ``name`` to ``value`` inside the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


# --- the baselines FER Lab replaces ----------------------------------------------------------------


def csv_baselines(csv_file: Path, rows: int, sizes: Sizes, csv_report: dict, say: Progress) -> dict:
    """Each notebook parser's rows/s on ``csv_file``, extrapolated to the file, against FER Lab's."""
    with open(csv_file, newline="") as handle:
        header = handle.readline().lower()
    if "pixels" not in header:
        return {"note": "the notebook parsers read emotion,pixels CSVs only; not timed on this file"}
    results = {}
    limit = sizes.baseline_rows if sizes.baseline_rows and sizes.baseline_rows < rows else None
    for name, parser in (("notebook_loop", notebook_csv_loop), ("numpy_per_row", numpy_per_row)):
        say(f"loading: baseline {name}" + (f" on {limit} rows" if limit else " on the whole file"))
        start = time.perf_counter()
        _, labels = parser(csv_file, limit)
        elapsed = time.perf_counter() - start
        rate = len(labels) / max(elapsed, 1e-9)
        results[name] = {
            "rows_timed": len(labels),
            "subset": limit is not None,
            "seconds": round(elapsed, 4),
            "rows_per_s": round(rate, 1),
            "seconds_for_file": round(rows / rate, 3),
            # How many times faster FER Lab is: its rows/s over the baseline's.
            "ratio_cold": round(csv_report["cold"]["rows_per_s"] / rate, 2),
            "ratio_cached": round(csv_report["cached"]["rows_per_s"] / rate, 2),
        }
    results["note"] = (
        "one timed run each; "
        + (
            f"timed on the first {limit} rows and extrapolated to the file (quick mode)"
            if limit
            else "timed on the whole file"
        )
        + "; ratios are FER Lab rows/s over baseline rows/s (how many times faster)"
    )
    return results


def notebook_csv_loop(path: str | os.PathLike, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The GR5243 notebook's loader, re-typed plainly: a Python int per pixel, one big array at the end.

    Reads ``emotion,pixels[,Usage]`` rows with the ``csv`` module; ``limit``
    stops after that many rows. Returns float32 (N, 48, 48, 1) images, as the
    notebook fed them to Keras, and int labels.
    """
    images = []
    labels = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)  # the header row
        for row in reader:
            if limit is not None and len(labels) >= limit:
                break
            emotion, pixel_string = row[0], row[1]
            pixels = [int(p) for p in pixel_string.split(" ")]
            images.append(pixels)
            labels.append(int(emotion))
    x = np.array(images, dtype="float32").reshape(-1, 48, 48, 1)
    y = np.array(labels)
    return x, y


def numpy_per_row(path: str | os.PathLike, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The common faster notebook loader: ``np.array(pixels.split(), dtype="float32")`` for each row."""
    images = []
    labels = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if limit is not None and len(labels) >= limit:
                break
            images.append(np.array(row[1].split(), dtype="float32").reshape(48, 48, 1))
            labels.append(int(row[0]))
    return np.stack(images), np.array(labels)
