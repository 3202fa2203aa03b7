"""``python -m fertools bench``: how fast FER Lab loads, recognises and trains, beside the baselines.

:func:`run` measures, in one process, and returns a JSON-serialisable report:

* **loading**: a FER2013-format CSV parsed cold and through the on-disk cache,
  an image folder, folder -> ``.npz`` conversion (what ``python -m fertools
  convert`` does), and the two notebook parsers FER Lab replaces: the GR5243
  per-pixel loop and ``np.array(row.split())`` per row;
* **recognition**: ``Recognizer.analyze`` on 640x480 frames with 0, 1 and 3
  faces, the model alone at batch 1 and 256, and the ``fer`` package's
  ``detect_emotions`` on the same frames when it is installed;
* **training**: images/s of three architectures through the same compile/fit
  path as :func:`fertools.train.train`, and the input pipeline alone.

Every number is a median over repeats after a warm-up, except the notebook
parsers (one run each: they are slow). Ratios beside a baseline say how many
times faster FER Lab is (its rate over the baseline's). Data that is not given
is generated into a temporary folder that is deleted afterwards: a CSV of
synthetic faces with FER2013's size, class mix and ``Usage`` split, and JPEGs in
the layout of the Kaggle image release. The files are freshly written, so the
operating system has them in memory: the load times are parsing and decoding
times, not disk times. The issue's targets are judged only in full mode;
``quick`` (for CI) shrinks every size and reports numbers without judging them.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from fertools import synthetic
from fertools.constants import DEFAULT_MODEL_DIR, FER2013_CLASSES, INPUT_SHAPE, NUM_PIXELS
from fertools.data import DatasetError

#: Sections ``skip`` may name; ``baselines`` skips the notebook parsers and the ``fer`` package.
SECTIONS = ("loading", "recognition", "training", "baselines")

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
#: Training images in one epoch, for the seconds-per-epoch extrapolation.
EPOCH_IMAGES = FER2013_USAGE["Training"]
#: Architectures whose training speed is compared.
TRAIN_ARCHITECTURES = ("gr5243_improved", "internship_cnn", "default")
#: Quick mode (CI) times only the pair that the target compares: each model's first step
#: costs about ten CPU-seconds of graph building.
QUICK_TRAIN_ARCHITECTURES = ("gr5243_improved", "default")
FRAME_SIZE = (640, 480)  # width, height

#: The issue's targets: (key, what, limit, unit, direction, GPU only).
TARGETS = (
    ("csv_cold", "CSV load, cold", 1.5, "s", "<=", False),
    ("csv_cached", "CSV load, cached", 0.2, "s", "<=", False),
    ("folder_load", "folder load", 5.0, "s", "<=", False),
    ("analyze_one_face", "analyze, 1 face, median", 15.0, "ms", "<=", False),
    ("model_one_face", "model alone, 1 face, median", 2.0, "ms", "<=", False),
    ("default_vs_gr5243", "default / gr5243_improved images/s", 1.0, "x", ">=", False),
    ("gpu_default_epoch", "one default epoch on GPU", 3.0, "s", "<=", True),
)

Progress = Callable[[str], None]


class BenchInputError(ValueError):
    """A bad argument to :func:`run` (a missing file, an unknown section); one sentence."""


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    csv_rows: int
    folder_images: int
    #: Timed repeats of each load (after one warm-up load).
    repeats: int
    #: Rows the notebook parsers are timed on; None: the whole file (one run, they are slow).
    baseline_rows: int | None
    #: Timed ``analyze`` calls per frame.
    frames: int
    #: Timed model calls at batch 1; batch 256 gets a tenth of them (at least 3).
    classify_calls: int
    train_warmup: int
    train_steps: int
    #: Synthetic faces per class behind the training batches (the dataset repeats).
    train_faces_per_class: int


FULL = Sizes(
    csv_rows=35_887,
    folder_images=28_709,
    repeats=3,
    baseline_rows=None,
    frames=50,
    classify_calls=100,
    train_warmup=5,
    train_steps=30,
    train_faces_per_class=300,
)
QUICK = Sizes(
    csv_rows=3_000,
    folder_images=1_000,
    repeats=2,
    baseline_rows=300,
    frames=10,
    classify_calls=20,
    train_warmup=1,
    train_steps=3,
    train_faces_per_class=40,
)
#: On a GPU a step takes milliseconds, so full mode times more of them.
GPU_TRAIN_WARMUP, GPU_TRAIN_STEPS = 10, 100


# --- the entry points -------------------------------------------------------------------------


def run(
    quick: bool = False,
    csv_path: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    skip: Iterable[str] = (),
    progress: Progress | None = None,
    model_dir: str | os.PathLike = DEFAULT_MODEL_DIR,
) -> dict:
    """Measure everything not in ``skip`` and return the report (plain dicts, lists, numbers, strings).

    ``csv_path`` and ``folder`` replace the generated CSV and image folder with
    real ones; ``model_dir`` is the model folder recognition times (an
    untrained ``default`` stands in if it cannot be loaded: speed does not
    depend on the weights). Raises :class:`BenchInputError` for a missing file,
    a file that is no dataset, or an unknown section name.
    """
    skip = set(skip)
    unknown = skip - set(SECTIONS)
    if unknown:
        raise BenchInputError(f"bench: unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    for given, kind in ((csv_path, "CSV"), (folder, "folder")):
        if given is not None and not Path(given).exists():
            raise BenchInputError(f"bench: the {kind} {given} does not exist")
    say = progress or (lambda text: None)
    sizes = QUICK if quick else FULL
    started, cpu_started = time.perf_counter(), time.process_time()
    report: dict = {
        "meta": {
            "quick": quick,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "skipped": sorted(skip),
            "sizes": sizes.__dict__.copy(),
        },
        "environment": environment(),
    }
    baselines = "baselines" not in skip
    sections: dict[str, Callable[[Path], dict]] = {
        "loading": lambda work: bench_loading(sizes, csv_path, folder, work, baselines, say),
        "recognition": lambda work: bench_recognition(sizes, model_dir, baselines, say),
        "training": lambda work: bench_training(sizes, quick, say),
    }
    report["meta"]["sections"] = {}
    with tempfile.TemporaryDirectory(prefix="ferlab-bench-") as scratch:
        for name, measure in sections.items():
            if name in skip:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                report[name] = measure(Path(scratch))
            except DatasetError as error:  # a given CSV or folder that is no dataset
                raise BenchInputError(f"bench: {error}") from None
            report["meta"]["sections"][name] = {
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
    report["targets"] = judge_targets(report, quick)
    report["meta"]["seconds"] = round(time.perf_counter() - started, 2)
    # CPU seconds of this process: on a busy machine they stay near what a quiet one would take.
    report["meta"]["cpu_s"] = round(time.process_time() - cpu_started, 2)
    return report


def environment() -> dict:
    """Hardware, library versions and thread settings of this process."""
    import keras
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        gpus.append(str(details.get("device_name", device.name)))
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "hardware": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": usable,
            "memory_gib": round(memory_gib, 1) if memory_gib else None,
            "gpus": gpus,
        },
        # Numbers measured on a busy machine are slower: the load says how busy it was.
        "load_average": [round(value, 2) for value in load] if load else None,
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        },
        "threads": {
            # 0 means TensorFlow picks (about one thread per core).
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cv2": cv2.getNumThreads(),
        },
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- timing helpers ----------------------------------------------------------------------------


def _timed(function: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[dict, object]:
    """Seconds statistics of ``repeats`` calls after ``warmup`` untimed ones, and the last result."""
    result = None
    for _ in range(warmup):
        result = function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return _seconds_stats(seconds), result


def _seconds_stats(seconds: list[float]) -> dict:
    return {
        "median_s": round(float(np.median(seconds)), 6),
        "p90_s": round(float(np.percentile(seconds, 90)), 6),
        "min_s": round(float(np.min(seconds)), 6),
        "repeats": len(seconds),
    }


def _ms_stats(seconds: list[float]) -> dict:
    milliseconds = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.median(milliseconds)), 3),
        "p90_ms": round(float(np.percentile(milliseconds, 90)), 3),
        "calls": len(seconds),
    }


def _per_second(count: float, seconds: float) -> float:
    return round(count / max(seconds, 1e-9), 1)


@contextlib.contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _scaled(counts: Iterable[int], total: int) -> list[int]:
    """``counts`` scaled to sum to ``total`` (largest remainders get the leftovers)."""
    counts = list(counts)
    exact = np.asarray(counts, dtype=float) * total / sum(counts)
    scaled = np.floor(exact).astype(int)
    for index in np.argsort(scaled - exact)[: total - int(scaled.sum())]:
        scaled[index] += 1
    return scaled.tolist()


# --- generated data -------------------------------------------------------------------------------

# Each pixel value as its decimal digits and a space, zero-padded to 4 bytes:
# indexing this table with a block of faces gives the CSV text of the block at once.
_TOKENS = np.zeros((256, 4), dtype=np.uint8)
for _value in range(256):
    _text = f"{_value} ".encode()
    _TOKENS[_value, : len(_text)] = np.frombuffer(_text, dtype=np.uint8)


def _pixel_fields(block: np.ndarray) -> list[bytes]:
    """The space-separated pixel field of each ``uint8`` row of ``block`` (N, 2304)."""
    tokens = _TOKENS[block]  # (N, 2304, 4)
    last = tokens[:, -1]
    last[last == ord(" ")] = 0  # no space after a row's last pixel
    keep = tokens != 0
    lengths = keep.reshape(len(block), -1).sum(axis=1)
    text = tokens[keep].tobytes()
    ends = np.cumsum(lengths)
    return [text[start:end] for start, end in zip((ends - lengths).tolist(), ends.tolist())]


def _varied_faces(count: int, seed: int) -> Iterator[np.ndarray]:
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


def write_fer2013_csv(path: str | os.PathLike, rows: int, seed: int = 0) -> None:
    """Write a FER2013-format CSV (``emotion,pixels,Usage``) of ``rows`` synthetic faces.

    Classes follow FER2013's mix and ``Usage`` its 28,709 / 3,589 / 3,589 split
    (scaled to ``rows``), Training rows first as in the real file.
    """
    rng = np.random.default_rng(seed)
    usage = np.repeat(list(FER2013_USAGE), _scaled(FER2013_USAGE.values(), rows))
    labels = np.repeat(np.arange(len(FER2013_CLASSES)), _scaled(FER2013_CLASS_ROWS, rows))
    labels = rng.permutation(labels)
    with open(path, "wb") as out:
        out.write(b"emotion,pixels,Usage\n")
        done = 0
        for block in _varied_faces(rows, seed):
            chunk = slice(done, done + len(block))
            lines = zip(labels[chunk].tolist(), _pixel_fields(block), usage[chunk].tolist())
            out.write(b"".join(b"%d,%s,%s\n" % (label, field, name.encode()) for label, field, name in lines))
            done += len(block)


def write_image_folder(root: str | os.PathLike, images: int, seed: int = 0) -> None:
    """Write ``images`` synthetic faces as JPEGs in ``root/train/<class>/``, in the Kaggle release's class mix."""
    root = Path(root)
    per_class = _scaled(FOLDER_CLASS_IMAGES.values(), images)
    names = [name for name, count in zip(FOLDER_CLASS_IMAGES, per_class) for _ in range(count)]
    for name in FOLDER_CLASS_IMAGES:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
    index = 0
    for block in _varied_faces(images, seed):
        for face in block:
            _, encoded = cv2.imencode(".jpg", face.reshape(48, 48), [cv2.IMWRITE_JPEG_QUALITY, 90])
            (root / "train" / names[index] / f"Training_{index:08d}.jpg").write_bytes(encoded.tobytes())
            index += 1


# --- the baselines FER Lab replaces ----------------------------------------------------------------


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


# --- loading ---------------------------------------------------------------------------------------


def bench_loading(
    sizes: Sizes,
    csv_path: str | os.PathLike | None,
    folder: str | os.PathLike | None,
    work: Path,
    baselines: bool,
    say: Progress,
) -> dict:
    """CSV cold and cached, folder, conversion and the notebook parsers (see the module docstring)."""
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
    with _environment_variable("FERLAB_CACHE_DIR", str(work / "cache-unused")):
        cold, dataset = _timed(lambda: data.load(csv_file, use_cache=False), sizes.repeats)
    rows = len(dataset) + len(dataset.rejected)
    say("loading: CSV, through the on-disk cache")
    with _environment_variable("FERLAB_CACHE_DIR", str(work / "cache")):
        start = time.perf_counter()
        data.load(csv_file)
        first = time.perf_counter() - start
        cached, _ = _timed(lambda: data.load(csv_file), sizes.repeats, warmup=0)
    csv_report = {
        "source": str(csv_path) if csv_path else "generated",
        "rows": rows,
        "faces": len(dataset),
        "megabytes": round(megabytes, 1),
        "cold": {**cold, "rows_per_s": _per_second(rows, cold["median_s"])},
        "first_cached_load_s": round(first, 4),
        "cached": {**cached, "rows_per_s": _per_second(rows, cached["median_s"])},
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
    folder_stats, images = _timed(lambda: data.load(folder_path), sizes.repeats)
    count = len(images) + len(images.rejected)
    del images

    def convert() -> None:  # what `python -m fertools convert FOLDER OUT.npz` does
        data.save_npz(data.load(folder_path), work / "converted.npz")

    say("loading: folder -> .npz conversion")
    converted, _ = _timed(convert, sizes.repeats, warmup=0)
    report = {
        "csv": csv_report,
        "folder": {
            "source": str(folder) if folder else "generated",
            "images": count,
            **folder_stats,
            "images_per_s": _per_second(count, folder_stats["median_s"]),
        },
        "convert": {
            **converted,
            "images_per_s": _per_second(count, converted["median_s"]),
            "note": "folder -> .npz, as `python -m fertools convert` does",
        },
    }
    if baselines:
        report["baselines"] = _csv_baselines(csv_file, rows, sizes, csv_report, say)
    return report


def _csv_baselines(csv_file: Path, rows: int, sizes: Sizes, csv_report: dict, say: Progress) -> dict:
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
        seconds = time.perf_counter() - start
        rate = len(labels) / max(seconds, 1e-9)
        results[name] = {
            "rows_timed": len(labels),
            "subset": limit is not None,
            "seconds": round(seconds, 4),
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


# --- recognition -------------------------------------------------------------------------------------


def _load_recognizer(model_dir: str | os.PathLike):
    from fertools.modelcard import ModelCard, ModelLoadError
    from fertools.recognize import Recognizer

    # NOTE: mirror averaging on, whatever this machine's default: the bench times both the
    # two-pass path and the single pass, so the report says whether the two fit the budget.
    try:
        return Recognizer.load(model_dir, tta=True), f"{model_dir}"
    except ModelLoadError as error:
        from fertools import models

        card = ModelCard(
            name="untrained",
            architecture="default",
            classes=list(FER2013_CLASSES),
            input_shape=list(INPUT_SHAPE),
        )
        recognizer = Recognizer(models.create("default", len(FER2013_CLASSES)), card, tta=True)
        return recognizer, f"untrained default ({error})"


def _paste(frame: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> None:
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    frame[y : y + side, x : x + side] = big[..., None]


def make_test_frames(detector) -> dict[int, tuple[np.ndarray, int]]:
    """640x480 BGR frames with 0, 1 and 3 synthetic faces, as ``{intended: (frame, detected)}``.

    The Haar cascade finds about two in three randomly posed synthetic faces, so
    faces are chosen from a seeded pool one slot at a time, keeping a face only
    if the detector then finds exactly the faces placed so far. ``detected`` is
    the detector's count on the final frame (equal to the intended count unless
    no pool face fitted a slot).
    """
    width, height = FRAME_SIZE
    rng = np.random.default_rng(0)
    # A lit-from-the-side grey wall with sensor noise, not a flat colour.
    ramp = np.linspace(70, 170, width, dtype=np.float32)[None, :] + np.linspace(-20, 20, height)[:, None]
    wall = np.clip(ramp + rng.normal(0, 4, (height, width)), 0, 255).astype(np.uint8)
    background = np.repeat(wall[..., None], 3, axis=2)
    neutral = synthetic.render_face(synthetic.FaceParams(), np.random.default_rng(0))
    pool, _ = synthetic.generate(n_per_class=8, seed=1)
    candidates = [neutral, *pool]
    layouts = {0: [], 1: [(220, 140, 200)], 3: [(20, 160, 180), (230, 150, 180), (440, 160, 180)]}
    frames = {}
    for intended, slots in layouts.items():
        frame = background.copy()
        used: set[int] = set()
        for placed, (x, y, side) in enumerate(slots, start=1):
            for index, face in enumerate(candidates):
                if index in used:
                    continue
                trial = frame.copy()
                _paste(trial, face, x, y, side)
                if len(detector.detect(trial)) == placed:
                    frame = trial
                    used.add(index)
                    break
        frames[intended] = (frame, len(detector.detect(frame)))
    return frames


def bench_recognition(sizes: Sizes, model_dir: str | os.PathLike, baselines: bool, say: Progress) -> dict:
    """``Recognizer.analyze`` per frame, the model alone, and the ``fer`` package if installed."""
    say("recognition: loading the model and building test frames")
    recognizer, model_source = _load_recognizer(model_dir)
    frames = make_test_frames(recognizer.detector)
    per_frame = {}
    for intended, (frame, detected) in frames.items():
        say(f"recognition: analyze, {intended} face(s)")
        for _ in range(3):
            found = recognizer.analyze(frame)
        analyze = _call_times(lambda frame=frame: recognizer.analyze(frame), sizes.frames)
        detect = _call_times(lambda frame=frame: recognizer.detector.detect(frame), sizes.frames)
        per_frame[str(intended)] = {
            "intended_faces": intended,
            "detected_faces": detected,
            "analyzed_faces": len(found),
            "detection_ok": detected == intended == len(found),
            "analyze": analyze,
            "detect_only": detect,
        }

    say("recognition: the model alone")
    faces, _ = synthetic.generate(n_per_class=37, seed=2)  # 259 faces
    from fertools.engine import KerasEngine

    # First the path the app runs (the Recognizer's classify, mirror averaging included where it
    # is on by default), then the engine's single pass and, for comparison, the Keras call.
    name = recognizer.engine.name
    engines = {f"{name} (Recognizer's{', flip TTA' if recognizer.tta else ''})": recognizer.classify}
    if recognizer.tta:
        engines[f"{name}, one pass"] = recognizer.engine
    if name != "keras":
        engines["keras (compiled tf.function)"] = KerasEngine(recognizer.model)
    alone = {name: _model_alone(classify, faces, sizes) for name, classify in engines.items()}
    first = next(iter(alone.values()))
    report = {
        "model": model_source,
        "frame_size": list(FRAME_SIZE),
        "frames": per_frame,
        "engine": recognizer.engine.name,
        "classify_batch1": first["batch1"],
        "classify_batch256": first["batch256"],
        "engines": alone,
        "note": f"analyze = Haar detection + crop + one batched call to the {recognizer.engine.name} engine",
    }
    if baselines:
        report["fer_package"] = _fer_baseline(frames, per_frame, sizes, say)
    return report


def _model_alone(classify: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, sizes: Sizes) -> dict:
    """One engine's time for one face and for a batch of 256, after a warm-up."""
    one, batch = faces[:1], faces[:256]
    for _ in range(3):
        classify(one)
    batch1 = _call_times(lambda: classify(one), sizes.classify_calls)
    classify(batch)
    batch256 = _call_times(lambda: classify(batch), max(3, sizes.classify_calls // 10))
    return {
        "batch1": {**batch1, "faces_per_s": _per_second(1, batch1["p50_ms"] / 1000)},
        "batch256": {**batch256, "faces_per_s": _per_second(256, batch256["p50_ms"] / 1000)},
    }


def _call_times(function: Callable[[], object], calls: int) -> dict:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return _ms_stats(seconds)


def _fer_baseline(frames: dict, per_frame: dict, sizes: Sizes, say: Progress) -> dict:
    if importlib.util.find_spec("fer") is None:
        return {"note": "the fer package is not installed; not timed (FER Lab does not install it)"}
    say("recognition: baseline fer.FER().detect_emotions")
    try:
        from fer import FER

        detector = FER()
        results = {}
        for intended, (frame, _) in frames.items():
            found = detector.detect_emotions(frame)
            times = _call_times(lambda frame=frame: detector.detect_emotions(frame), sizes.frames)
            ours = per_frame[str(intended)]["analyze"]["p50_ms"]
            results[str(intended)] = {
                **times,
                "detected_faces": len(found),
                "ratio": round(times["p50_ms"] / max(ours, 1e-9), 2),
            }
        results["note"] = "ratio: fer ms over FER Lab ms per frame (how many times faster FER Lab is)"
        return results
    except Exception as error:  # noqa: BLE001 - a third-party package's failure becomes a note, not a lost report
        return {"note": f"fer failed: {type(error).__name__}: {error}"}


# --- training ----------------------------------------------------------------------------------------


def bench_training(sizes: Sizes, quick: bool, say: Progress) -> dict:
    """Training images/s per architecture, and the input pipeline alone."""
    import keras
    import tensorflow as tf

    from fertools import train as training
    from fertools.config import PRESETS

    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    warmup, steps = sizes.train_warmup, sizes.train_steps
    if on_gpu and not quick:
        warmup, steps = GPU_TRAIN_WARMUP, GPU_TRAIN_STEPS
    config = PRESETS["default"]
    images, labels = synthetic.generate(n_per_class=sizes.train_faces_per_class, seed=0)
    num_classes = len(FER2013_CLASSES)
    weights = training.class_weight_vector(labels, num_classes, config.class_weights)

    def dataset() -> tf.data.Dataset:
        return training.make_dataset(
            images, labels, num_classes, config.batch_size, True, config.seed, weights[labels], config.mixup
        ).repeat()

    say("training: the input pipeline alone")
    iterator = iter(dataset())
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    data_seconds = time.perf_counter() - start

    # What train() does: float32 on a CPU; mixed float16 and XLA on a GPU (float32 shown beside it).
    variants = [("float32", False)] + ([("mixed_float16", True)] if on_gpu else [])
    runs = []
    for architecture in QUICK_TRAIN_ARCHITECTURES if quick else TRAIN_ARCHITECTURES:
        for policy, xla in variants:
            say(f"training: {architecture} ({policy}{', XLA' if xla else ''}), {warmup} + {steps} steps")
            try:
                runs.append(_training_speed(architecture, policy, xla, dataset, config, warmup, steps))
            except Exception as error:  # noqa: BLE001 - one failed variant (say XLA) must not lose the report
                message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
                runs.append(
                    {
                        "architecture": architecture,
                        "precision": policy,
                        "xla": xla,
                        "error": f"{type(error).__name__}: {message}",
                    }
                )
            keras.backend.clear_session()
    return {
        "device": "GPU" if on_gpu else "CPU",
        "batch_size": config.batch_size,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "epoch_images": EPOCH_IMAGES,
        "input_pipeline": {
            "ms_per_batch": round(data_seconds / steps * 1000, 3),
            "images_per_s": _per_second(steps * config.batch_size, data_seconds),
        },
        "runs": runs,
        "note": "preset 'default' settings (optimizer, schedule, augmentation, class weights) for every "
        "architecture, compiled and fitted as fertools.train does; epoch_s extrapolates images/s "
        f"to {EPOCH_IMAGES:,} images",
    }


def _training_speed(
    architecture: str, policy: str, xla: bool, dataset: Callable, config, warmup: int, steps: int
) -> dict:
    import keras

    from fertools import train as training

    keras.utils.set_random_seed(config.seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        # The very trainer train() fits: the registry's network behind the augmentation layers.
        built = training.build_trainer(
            replace(config, architecture=architecture),
            len(FER2013_CLASSES),
            INPUT_SHAPE,
            EPOCH_IMAGES,
            seed=config.seed,
            jit_compile=xla,
        )
        trainer, model = built.fitted, built.model
        timer = _step_timer(warmup, warmup + steps)
        started = time.perf_counter()
        trainer.fit(
            dataset(), epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer], shuffle=False
        )  # shuffle=False: the dataset shuffles itself; Keras would only warn
    finally:
        keras.mixed_precision.set_global_policy(previous)
    seconds = timer.end - timer.start
    rate = steps * config.batch_size / seconds
    return {
        "architecture": architecture,
        "precision": policy,
        "xla": xla,
        "parameters": int(model.count_params()),
        "warmup_s": round(timer.start - started, 3),
        "step_ms": round(seconds / steps * 1000, 3),
        "images_per_s": round(rate, 1),
        "epoch_s": round(EPOCH_IMAGES / rate, 2),
    }


def _step_timer(warmup: int, total: int):
    """A callback that reads the clock after the warm-up steps (``.start``) and the last step (``.end``).

    Keras hands this (not async-safe) callback each step's logs as Python
    numbers, so the device has finished the step when the clock is read.
    Built here so that importing this module does not import TensorFlow.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = self.end = 0.0

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == warmup:
                self.start = time.perf_counter()
            elif batch + 1 == total:
                self.end = time.perf_counter()

    return StepTimer()


# --- targets and the report ------------------------------------------------------------------------------


def _target_value(report: dict, key: str) -> float | None:
    loading, recognition, training = (report.get(k) for k in ("loading", "recognition", "training"))
    if key == "csv_cold" and loading:
        return loading["csv"]["cold"]["median_s"]
    if key == "csv_cached" and loading:
        return loading["csv"]["cached"]["median_s"]
    if key == "folder_load" and loading:
        return loading["folder"]["median_s"]
    if key == "analyze_one_face" and recognition:
        return recognition["frames"]["1"]["analyze"]["p50_ms"]
    if key == "model_one_face" and recognition:
        return recognition["classify_batch1"]["p50_ms"]
    if not training:
        return None
    # The variant train() would use on this device: the last one listed per architecture.
    rates = {run["architecture"]: run for run in training["runs"]}
    default, gr5243 = rates.get("default", {}), rates.get("gr5243_improved", {})
    if key == "default_vs_gr5243" and "images_per_s" in default and "images_per_s" in gr5243:
        return round(default["images_per_s"] / gr5243["images_per_s"], 3)
    if key == "gpu_default_epoch" and training["device"] == "GPU" and "epoch_s" in default:
        return default["epoch_s"]
    return None


def judge_targets(report: dict, quick: bool) -> list[dict]:
    """Each target of the issue with its measured value and a status.

    Status is ``pass`` or ``fail`` in full mode, ``not judged (quick)`` in quick
    mode, ``not measured`` for a skipped section, and ``not applicable (no GPU)``
    for GPU targets on a CPU.
    """
    on_gpu = bool(report["environment"]["hardware"]["gpus"])
    judged = []
    for key, what, limit, unit, direction, gpu_only in TARGETS:
        value = _target_value(report, key)
        if gpu_only and not on_gpu:
            status = "not applicable (no GPU)"
        elif value is None:
            status = "not measured"
        elif key == "analyze_one_face" and not report["recognition"]["frames"]["1"]["detection_ok"]:
            status = (
                f"not judged (detector found {report['recognition']['frames']['1']['detected_faces']} faces)"
            )
        elif quick:
            status = "not judged (quick)"
        else:
            met = value <= limit if direction == "<=" else value >= limit
            status = "pass" if met else "fail"
        judged.append(
            {
                "key": key,
                "target": f"{what} {direction} {limit:g} {unit}",
                "value": value,
                "unit": unit,
                "status": status,
            }
        )
    return judged


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    return [_row(*header), _row(*("---" for _ in header)), *(_row(*row) for row in rows), ""]


def format_report(report: dict) -> str:
    """The report as Markdown-style text: environment, one table per section, then the targets."""
    meta, env = report["meta"], report["environment"]
    hardware, versions, threads = env["hardware"], env["versions"], env["threads"]
    mode = "quick (CI sizes; targets not judged)" if meta["quick"] else "full"
    lines = [
        f"# FER Lab benchmark ({mode})",
        "",
        f"- started {meta['started']}, took {meta.get('seconds', '?')} s ({meta.get('cpu_s', '?')} CPU s)"
        + (f"; skipped: {', '.join(meta['skipped'])}" if meta["skipped"] else ""),
        (
            f"- CPU: {hardware['cpu']}, {hardware['cores']} cores ({hardware['usable_cores']} usable), "
            f"{hardware['memory_gib']} GiB; GPU: {', '.join(hardware['gpus']) or 'none'}"
        ),
        f"- load average at start: {env['load_average']}",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        "- threads: " + ", ".join(f"{name} {value}" for name, value in threads.items()),
        "",
    ]
    if "loading" in report:
        lines += _format_loading(report["loading"])
    if "recognition" in report:
        lines += _format_recognition(report["recognition"])
    if "training" in report:
        lines += _format_training(report["training"])
    if meta.get("sections"):
        lines += [
            "Time per section: "
            + ", ".join(
                f"{name} {t['wall_s']} s ({t['cpu_s']} CPU s)" for name, t in meta["sections"].items()
            )
            + ".",
            "",
        ]
    lines += ["## Targets", ""]
    lines += _table(
        ("target", "measured", "status"),
        [
            (t["target"], "-" if t["value"] is None else f"{t['value']:.3g} {t['unit']}", t["status"])
            for t in report["targets"]
        ],
    )
    return "\n".join(lines).rstrip() + "\n"


def _format_loading(loading: dict) -> list[str]:
    csv_report, folder, convert = loading["csv"], loading["folder"], loading["convert"]
    lines = [
        "## Loading",
        "",
        (
            f"CSV: {csv_report['source']}, {csv_report['rows']:,} rows, {csv_report['megabytes']} MB. "
            f"Folder: {folder['source']}, {folder['images']:,} images."
        ),
        "",
    ]
    rows = [
        (
            "CSV, cold (use_cache=False)",
            f"{csv_report['cold']['median_s']:.3f}",
            f"{csv_report['cold']['rows_per_s']:,.0f} rows/s",
            csv_report["cold"]["repeats"],
        ),
        ("CSV, first load (parse + cache write)", f"{csv_report['first_cached_load_s']:.3f}", "", 1),
        (
            "CSV, cached",
            f"{csv_report['cached']['median_s']:.3f}",
            f"{csv_report['cached']['rows_per_s']:,.0f} rows/s",
            csv_report["cached"]["repeats"],
        ),
        (
            "image folder",
            f"{folder['median_s']:.3f}",
            f"{folder['images_per_s']:,.0f} images/s",
            folder["repeats"],
        ),
        (
            "folder -> .npz (convert)",
            f"{convert['median_s']:.3f}",
            f"{convert['images_per_s']:,.0f} images/s",
            convert["repeats"],
        ),
    ]
    lines += _table(("FER Lab", "median s", "rate", "repeats"), rows)
    baselines = loading.get("baselines")
    if baselines:
        names = {"notebook_loop": "GR5243 per-pixel loop", "numpy_per_row": "np.array(row.split()) per row"}
        rows = [
            (
                names[key],
                f"{b['rows_timed']:,}",
                f"{b['seconds']:.3f}",
                f"{b['rows_per_s']:,.0f}",
                f"{b['seconds_for_file']:.2f}",
                f"{b['ratio_cold']:.1f}x",
                f"{b['ratio_cached']:.1f}x",
            )
            for key, b in baselines.items()
            if key in names
        ]
        if rows:
            lines += _table(
                (
                    "baseline (same CSV)",
                    "rows timed",
                    "s",
                    "rows/s",
                    "s for the file",
                    "FER Lab cold is",
                    "FER Lab cached is",
                ),
                rows,
            )
        lines += [f"Baselines: {baselines['note']}.", ""]
    return lines


def _format_recognition(recognition: dict) -> list[str]:
    width, height = recognition["frame_size"]
    lines = ["## Recognition", "", f"Model: {recognition['model']}. Frames {width}x{height}.", ""]
    fer = recognition.get("fer_package", {})
    rows = []
    for key, frame in recognition["frames"].items():
        baseline = fer.get(key)
        rows.append(
            (
                frame["intended_faces"],
                f"{frame['detected_faces']}" + ("" if frame["detection_ok"] else " (MISMATCH)"),
                f"{frame['analyze']['p50_ms']:.2f}",
                f"{frame['analyze']['p90_ms']:.2f}",
                f"{frame['detect_only']['p50_ms']:.2f}",
                f"{baseline['p50_ms']:.1f}" if baseline else "-",
                f"{baseline['ratio']:.1f}x" if baseline else "-",
            )
        )
    lines += _table(
        (
            "faces",
            "detected",
            "analyze p50 ms",
            "p90 ms",
            "detector alone p50 ms",
            "fer p50 ms",
            "FER Lab is",
        ),
        rows,
    )
    rows = []
    for name, timing in recognition["engines"].items():
        for size, key in (("1", "batch1"), ("256", "batch256")):
            t = timing[key]
            rows.append((name, size, f"{t['p50_ms']:.2f}", f"{t['p90_ms']:.2f}", f"{t['faces_per_s']:,.0f}"))
    lines += _table(("model alone (engine)", "batch", "p50 ms", "p90 ms", "faces/s"), rows)
    if "note" in fer:
        lines += [f"fer package: {fer['note']}.", ""]
    return lines


def _format_training(training: dict) -> list[str]:
    pipeline = training["input_pipeline"]
    lines = [
        "## Training",
        "",
        (
            f"Device {training['device']}, batch {training['batch_size']}, {training['warmup_steps']} warm-up + "
            f"{training['timed_steps']} timed steps; {training['note']}."
        ),
        "",
    ]
    rows = []
    for run in training["runs"]:
        variant = (run["architecture"], run["precision"], "yes" if run["xla"] else "no")
        if "error" in run:
            rows.append((*variant, f"failed: {run['error']}", "", "", "", "", ""))
            continue
        rows.append(
            (
                *variant,
                f"{run['images_per_s']:,.0f}",
                f"{run['step_ms']:.1f}",
                f"{pipeline['ms_per_batch']:.1f}",
                f"{run['epoch_s']:.1f}",
                f"{run['warmup_s']:.1f}",
                f"{run['parameters']:,}",
            )
        )
    header = (
        "architecture",
        "precision",
        "XLA",
        "images/s",
        "step ms",
        "data ms/batch",
        "epoch s",
        "warm-up s",
        "params",
    )
    lines += _table(header, rows)
    lines += [
        (
            f"Input pipeline alone: {pipeline['ms_per_batch']:.2f} ms per batch "
            f"({pipeline['images_per_s']:,.0f} images/s)."
        ),
        "",
    ]
    return lines
