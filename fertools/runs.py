"""The run folder: the one place that knows its file names, and how each file is read and written.

A training run lives in one folder, written by its worker process and read by every page view,
the job queue and the command line, often at the same moment::

    <run>/
      job.json             who queued it, with what dataset and config (runs started by the app)
      config.json          the TrainConfig
      status.json          state (queued, running, finished, failed, cancelled), reason, timings, pid
      progress.json        batch-level progress, rewritten about twice a second
      history.csv          one row per finished epoch (Keras' CSVLogger, appended)
      checkpoint/          BackupAndRestore state: a rerun resumes from the last epoch
      best.weights.h5      the best epoch's weights; best.weights.json its score and epoch (1-based)
      average.npz          the running weight average (stochastic weight averaging), if any;
      average.weights.h5   its finished form, with average.weights.json (score, epochs)
      metrics.json         validation accuracy, per-class report, confusion matrix
      val_predictions.npz  validation faces, labels and probabilities (for the mistakes gallery)
      teacher.npz          a distilled run's teacher probabilities for its training faces (a cache)
      model/               the weights the run ships, as a model folder (model.keras + card.json)
      export/model.tflite  the model folder converted for TFLite / LiteRT, made on request
      cancel               present once someone asked the run to stop
      worker.log           the worker's stdout and stderr

Writers replace files atomically (:func:`write_json`, :func:`atomic_file`), so a reader never
sees half a file. Readers never raise on a damaged file: they return what they can, and the
reason lands in :attr:`RunDir.damage`, so one broken run cannot lock a page for everyone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fertools import limits
from fertools.config import TrainConfig

#: TensorFlow's C++ start-up chatter (absl info and warning lines), left out of a log's tail.
_LOG_NOISE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl)")

JOB = "job.json"
CONFIG = "config.json"
STATUS = "status.json"
PROGRESS = "progress.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint"
BEST_WEIGHTS = "best.weights.h5"
BEST_SCORE = "best.weights.json"
RUNNING_AVERAGE = "average.npz"
AVERAGE_WEIGHTS = "average.weights.h5"
AVERAGE_SCORE = "average.weights.json"
METRICS = "metrics.json"
PREDICTIONS = "val_predictions.npz"
TEACHER = "teacher.npz"
MODEL = "model"
TFLITE = "export/model.tflite"
CANCEL = "cancel"
LOG = "worker.log"

ACTIVE_STATES = ("queued", "running")
DONE_STATES = ("finished", "failed", "cancelled")
#: A history.csv or predictions file larger than this is not one a run of ours wrote.
MAX_HISTORY_BYTES = 8 << 20
MAX_PREDICTIONS_BYTES = 512 << 20


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a partial path to write; on success it replaces ``path`` in one step.

    The partial name is per process, so two writers never rename each other's file away;
    ``suffix`` keeps an extension a writer insists on (Keras wants ``.weights.h5``).
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def write_json(path: Path, values: dict) -> None:
    """Write JSON atomically (numpy scalars and arrays, and paths, included)."""
    with atomic_file(path) as partial:
        partial.write_text(json.dumps(values, indent=2, default=_json_default))


def _finite(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RunDir:
    """One run folder. Cheap to make; every read goes to disk, so it is always current."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        #: Why a file of this run could not be read, one sentence each (filled in by the readers).
        self.damage: list[str] = []

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def id(self) -> str:
        return self.path.name

    def name(self) -> str:
        """The name the run was given when it was queued (job.json), else its folder's name."""
        return limits.clean_name((self.read_job() or {}).get("name")) or self.id

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL

    @property
    def tflite_path(self) -> Path:
        return self.path / TFLITE

    @property
    def tflite_fresh(self) -> bool:
        """Whether the exported TFLite file exists and is newer than the model it was made from."""
        from fertools.modelcard import MODEL_FILE

        model = self.model_dir / MODEL_FILE
        try:
            return model.exists() and self.tflite_path.stat().st_mtime >= model.stat().st_mtime
        except FileNotFoundError:
            return False

    def log_tail(self, lines: int = 40, max_bytes: int = 64 * 1024) -> list[str] | None:
        """The worker log's last ``lines`` lines, TensorFlow's start-up chatter left out; None: no log.

        Reads at most the last ``max_bytes``, however long the log has grown.
        """
        path = self.path / LOG
        try:
            with path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - max_bytes))
                text = log.read().decode(errors="replace")
        except OSError:
            return None
        kept = text.splitlines()[1:] if size > max_bytes else text.splitlines()  # drop a cut first line
        return [line for line in kept if not _LOG_NOISE.match(line)][-lines:]

    @property
    def has_history(self) -> bool:
        return (self.path / HISTORY).exists()

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # --- JSON files -------------------------------------------------------------------------

    def _read_json(self, name: str) -> dict | None:
        path = self.path / name
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self.damage.append(f"{name} cannot be read ({type(error).__name__})")
            return None
        if not isinstance(values, dict):
            self.damage.append(f"{name} holds no settings object")
            return None
        return values

    def read_job(self) -> dict | None:
        return self._read_json(JOB)

    def write_job(self, job: dict) -> None:
        write_json(self.path / JOB, job)

    def read_config(self) -> TrainConfig | None:
        """The run's config; None (and a damage note) when it is missing or unreadable."""
        values = self._read_json(CONFIG)
        if values is None:
            return None
        try:
            return TrainConfig.from_dict(values)
        except (TypeError, ValueError) as error:
            self.damage.append(f"{CONFIG} holds settings this version cannot use ({error})")
            return None

    def write_config(self, config: TrainConfig) -> None:
        write_json(self.path / CONFIG, config.to_dict())

    def read_status(self) -> dict:
        return self._read_json(STATUS) or {}

    def update_status(self, state: str, **extra: Any) -> None:
        """Merge ``extra`` into status.json and set its state (and when it was updated)."""
        current = self.read_status()
        current.update(extra, state=state, updated=time.time())
        write_json(self.path / STATUS, current)

    def read_progress(self) -> dict | None:
        return self._read_json(PROGRESS)

    def write_progress(self, progress: dict) -> None:
        write_json(self.path / PROGRESS, progress)

    def read_metrics(self) -> dict | None:
        metrics = self._read_json(METRICS)
        if metrics is not None and _finite(metrics.get("accuracy")) is None:
            self.damage.append(f"{METRICS} has no accuracy")
            return None
        return metrics

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def best_score(self) -> dict | None:
        """``{"score", "epoch"}`` of the best epoch so far (epoch 1-based), if any."""
        return self._read_json(BEST_SCORE)

    def write_best_score(self, score: float, epoch: int) -> None:
        write_json(self.path / BEST_SCORE, {"score": float(score), "epoch": int(epoch)})

    def average_score(self) -> dict | None:
        """``{"score", "epochs"}`` of the finished weight average, if any."""
        return self._read_json(AVERAGE_SCORE)

    def write_average_score(self, score: float, epochs: list[int]) -> None:
        write_json(self.path / AVERAGE_SCORE, {"score": float(score), "epochs": list(epochs)})

    # --- weights ------------------------------------------------------------------------------

    @property
    def best_weights(self) -> Path:
        return self.path / BEST_WEIGHTS

    @property
    def average_weights(self) -> Path:
        return self.path / AVERAGE_WEIGHTS

    @property
    def running_average(self) -> Path:
        return self.path / RUNNING_AVERAGE

    def average_ships(self) -> bool:
        """Whether the weight average beat the best single epoch (and so is what the run ships)."""
        average = self.average_score()
        if average is None or not self.average_weights.exists():
            return False
        best = self.best_score() or {}
        return float(average.get("score", -math.inf)) > float(best.get("score", -math.inf))

    def final_weights(self) -> Path:
        """The weights the run ships: the weight average where it beat the best epoch, else the best epoch."""
        return self.average_weights if self.average_ships() else self.best_weights

    # --- history -------------------------------------------------------------------------------

    def read_history(self) -> list[dict]:
        """history.csv as one dict of floats per finished epoch (``epoch`` 0-based, as Keras writes it).

        Keras writes ``NA`` for a metric it lacks (validation metrics of a run without validation
        faces): those keys are left out. Rows that are not numbers are dropped with a damage note.
        """
        path = self.path / HISTORY
        try:
            if path.stat().st_size > MAX_HISTORY_BYTES:
                self.damage.append(f"{HISTORY} is larger than any run writes")
                return []
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        except OSError as error:
            self.damage.append(f"{HISTORY} cannot be read ({type(error).__name__})")
            return []
        rows, bad = [], 0
        reader = csv.DictReader(io.StringIO(text))
        try:
            if text.strip() and "epoch" not in (reader.fieldnames or ()):
                self.damage.append(f"{HISTORY} has no epoch column")
                return []
            for row in reader:
                values = {
                    str(key): number
                    for key, value in row.items()
                    if key is not None and isinstance(value, str) and (number := _finite(value)) is not None
                }
                if "epoch" not in values or None in row:
                    bad += 1
                    continue
                rows.append(values)
        except csv.Error:
            bad += 1
        if bad:
            self.damage.append(f"{HISTORY} has {bad} unreadable row(s)")
        return rows

    def epochs_done(self) -> int:
        return len(self.read_history())

    # --- predictions -------------------------------------------------------------------------

    def write_predictions(
        self, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]
    ) -> None:
        with atomic_file(self.path / PREDICTIONS, suffix=".npz") as partial:
            np.savez_compressed(
                partial, images=images, labels=labels, probabilities=probabilities, classes=np.array(classes)
            )

    def read_predictions(self) -> dict | None:
        """Validation faces ``uint8`` (N, H, W), labels (N,), probabilities (N, C) and class names.

        None (and a damage note) unless every array is there with consistent shapes.
        """
        path = self.path / PREDICTIONS
        try:
            if path.stat().st_size > MAX_PREDICTIONS_BYTES:
                self.damage.append(f"{PREDICTIONS} is larger than any run writes")
                return None
            with np.load(path, allow_pickle=False) as saved:
                found = {key: saved[key] for key in ("images", "labels", "probabilities", "classes")}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            self.damage.append(f"{PREDICTIONS} cannot be read ({type(error).__name__})")
            return None
        images, labels, probabilities, classes = (
            found["images"],
            found["labels"],
            found["probabilities"],
            found["classes"],
        )
        consistent = (
            images.ndim == 3
            and images.dtype == np.uint8
            and labels.ndim == 1
            and labels.dtype.kind in "iu"
            and probabilities.ndim == 2
            and classes.ndim == 1
            and classes.dtype.kind == "U"
            and len(images) == len(labels) == len(probabilities)
            and probabilities.shape[1] == len(classes)
            and (len(labels) == 0 or (labels.min() >= 0 and labels.max() < len(classes)))
        )
        if not consistent:
            self.damage.append(f"{PREDICTIONS} holds arrays that do not fit together")
            return None
        return {
            "images": images,
            "labels": labels.astype(np.int64),
            "probabilities": probabilities.astype(np.float32),
            "classes": tuple(str(name) for name in classes),
        }

    def write_teacher_targets(self, key: str, probabilities: np.ndarray) -> None:
        with atomic_file(self.path / TEACHER, suffix=".npz") as partial:
            np.savez(partial, key=np.array(key), probabilities=probabilities.astype(np.float32))

    def read_teacher_targets(self, key: str) -> np.ndarray | None:
        """The cached teacher probabilities (N, C) computed under ``key``; None when absent, stale or damaged."""
        path = self.path / TEACHER
        try:
            if path.stat().st_size > MAX_PREDICTIONS_BYTES:
                return None
            with np.load(path, allow_pickle=False) as saved:
                found_key, probabilities = str(saved["key"]), saved["probabilities"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            return None  # a cache: recomputed, not reported
        if found_key != key or probabilities.ndim != 2 or not np.isfinite(probabilities).all():
            return None
        return probabilities.astype(np.float32)

    # --- cancelling and timing -----------------------------------------------------------------

    def request_cancel(self) -> None:
        (self.path / CANCEL).touch()

    @property
    def cancel_requested(self) -> bool:
        return (self.path / CANCEL).exists()

    def seconds_trained(self) -> float:
        """Training time over all the run's sessions (a resumed run adds up), up to its last activity."""
        status = self.read_status()
        started = _finite(status.get("started"))
        if started is None:
            return 0.0
        finished = _finite(status.get("finished"))
        if finished is not None and finished >= started:
            # A finished run ended then: a copied folder's file times say when it was copied.
            ends = [finished]
        else:
            ends = [_finite(status.get("updated")) or started]
            with contextlib.suppress(OSError):
                ends.append((self.path / HISTORY).stat().st_mtime)
        return float(_finite(status.get("earlier_seconds")) or 0.0) + max(0.0, max(ends) - started)
