"""``python -m fertools bench``: how fast FER Lab loads, recognises and trains, beside the baselines.

:func:`run` measures, in one process, and returns a JSON-serialisable report:

* **loading**: a FER2013-format CSV parsed cold and through the on-disk cache,
  an image folder, folder -> ``.npz`` conversion (what ``python -m fertools
  convert`` does), and the two notebook parsers FER Lab replaces: the GR5243
  per-pixel loop and ``np.array(row.split())`` per row;
* **recognition**: ``Recognizer.analyze`` on 640x480 frames with 0, 1 and 3
  faces, split into face detection and classification, the model alone at
  batch 1 and 256, and the ``fer`` package's ``detect_emotions`` on the same
  frames when it is installed;
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

One module per part, each read top to bottom: :mod:`~fertools.bench.sizes` (how much work),
:mod:`~fertools.bench.generated` (the generated CSV and folder), :mod:`~fertools.bench.loading`,
:mod:`~fertools.bench.recognition`, :mod:`~fertools.bench.training`, and
:mod:`~fertools.bench.report` (environment, targets, text). Every call is timed by
:mod:`fertools.timing`, the helper the inference engine uses too.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from fertools.bench.generated import write_fer2013_csv, write_image_folder
from fertools.bench.loading import bench_loading, notebook_csv_loop, numpy_per_row
from fertools.bench.recognition import bench_recognition, make_test_frames
from fertools.bench.report import TARGETS, environment, format_report, judge_targets
from fertools.bench.sizes import FULL, QUICK, Progress, Sizes
from fertools.bench.training import (
    EPOCH_IMAGES,
    QUICK_TRAIN_ARCHITECTURES,
    TRAIN_ARCHITECTURES,
    bench_training,
)
from fertools.constants import DEFAULT_MODEL_DIR
from fertools.data import DatasetError

#: Sections ``skip`` may name; ``baselines`` skips the notebook parsers and the ``fer`` package.
SECTIONS = ("loading", "recognition", "training", "baselines")


class BenchInputError(ValueError):
    """A bad argument to :func:`run` (a missing file, an unknown section); one sentence."""


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


__all__ = [
    "EPOCH_IMAGES",
    "FULL",
    "QUICK",
    "QUICK_TRAIN_ARCHITECTURES",
    "SECTIONS",
    "TARGETS",
    "TRAIN_ARCHITECTURES",
    "BenchInputError",
    "Sizes",
    "environment",
    "format_report",
    "judge_targets",
    "make_test_frames",
    "notebook_csv_loop",
    "numpy_per_row",
    "run",
    "write_fer2013_csv",
    "write_image_folder",
]
