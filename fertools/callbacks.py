"""The Keras callbacks a training run uses, one concern each.

Keras' own do the rest: ``BackupAndRestore`` (resume), ``CSVLogger`` (history.csv),
``ReduceLROnPlateau`` and ``EarlyStopping``. Every file these write goes through
:class:`fertools.runs.RunDir`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras
import numpy as np

from fertools.runs import RunDir, atomic_file


@dataclass(frozen=True)
class Progress:
    """What the progress callback reports, at batch ends and epoch ends."""

    epoch: int  # 1-based epoch in progress (or just finished)
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    elapsed: float  # seconds since this training session started
    eta: float | None  # seconds to the end of training, estimated (evaluation not included)
    images_per_second: float | None
    logs: dict
    epoch_end: bool = False

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) + (self.batch / self.batches if self.batches else 0)
        return min(1.0, done / self.epochs)


ProgressFn = Callable[[Progress], None]

#: Most points of the per-batch curve kept in progress.json; past it every other point is dropped.
MAX_CURVE_POINTS = 400


class ProgressReport(keras.callbacks.Callback):
    """Batch and epoch events as :class:`Progress`: to progress.json and to ``report``; polls ``should_stop``.

    progress.json also carries ``curve``: ``{"x", "loss", "accuracy"}`` at batch ends (``x`` in
    epochs, fractional), at most :data:`MAX_CURVE_POINTS` spread over the run, so the first
    epoch already draws a training curve.

    Example:
        ``model.fit(..., callbacks=[ProgressReport(run, epochs, steps, 64, print)])``
    """

    def __init__(
        self,
        run: RunDir,
        epochs: int,
        batches: int,
        batch_size: int,
        report: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        super().__init__()
        self.run, self.epochs, self.batches, self.batch_size = run, epochs, batches, batch_size
        self.report, self.should_stop = report, should_stop
        self.cancelled = False
        self._last_write = 0.0
        self._epoch = 0
        self._start = time.monotonic()
        self._epoch_start = self._start
        self._epochs_timed: list[float] = []
        self._curve: list[dict] = []
        self._curve_step = 1  # keep every n-th batch end; doubles whenever the curve is full
        self._batch_ends = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._epoch_start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
            self.model.stop_training = True
        now = time.monotonic()
        if now - self._last_write >= 0.5 or batch + 1 == self.batches:
            self._last_write = now
            self._emit(batch + 1, logs or {}, epoch_end=False)

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_timed.append(time.monotonic() - self._epoch_start)
        self._emit(self.batches, logs or {}, epoch_end=True)

    def _emit(self, batch: int, logs: dict, epoch_end: bool) -> None:
        now = time.monotonic()
        in_epoch = now - self._epoch_start
        rate = batch * self.batch_size / in_epoch if in_epoch > 0 and batch else None
        if self._epochs_timed:
            per_epoch = float(np.median(self._epochs_timed))
        elif batch:
            per_epoch = in_epoch / batch * self.batches
        else:
            per_epoch = None
        done = (self._epoch - 1) + batch / max(1, self.batches)
        eta = per_epoch * (self.epochs - done) if per_epoch is not None else None
        clean_logs = {
            k: float(v) for k, v in logs.items() if np.isscalar(v) or getattr(v, "shape", None) == ()
        }
        if not epoch_end:
            self._add_curve_point(done, clean_logs)
        progress = Progress(
            self._epoch, self.epochs, batch, self.batches, now - self._start, eta, rate, clean_logs, epoch_end
        )
        self.run.write_progress(
            {**asdict(progress), "fraction": progress.fraction, "time": time.time(), "curve": self._curve}
        )
        if self.report is not None:
            self.report(progress)

    def _add_curve_point(self, x: float, logs: dict) -> None:
        self._batch_ends += 1
        if self._batch_ends % self._curve_step:
            return
        point = {
            "x": round(x, 4),
            **{k: logs[k] for k in ("loss", "accuracy") if math.isfinite(logs.get(k, math.nan))},
        }
        self._curve.append(point)
        if len(self._curve) > MAX_CURVE_POINTS:
            self._curve = self._curve[1::2]
            self._curve_step *= 2


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' ``TerminateOnNaN`` that also says where: ``nan_epoch`` (1-based), or None.

    Example:
        ``stop = StopOnNaN(); model.fit(..., callbacks=[stop]); failed = stop.nan_epoch is not None``
    """

    def __init__(self):
        super().__init__()
        self.nan_epoch: int | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_epoch = self._epoch
        super().on_batch_end(batch, logs)


class BestWeights(keras.callbacks.Callback):
    """Save ``model``'s weights whenever ``monitor`` improves (with its score and epoch beside them).

    ``model`` is the network inside the fitted one (without the augmentation layers). With
    ``BackupAndRestore`` a resumed session does not know the best score of the earlier epochs,
    so the score is kept on disk next to the weights.

    Example:
        ``BestWeights(network, run, "val_accuracy")``
    """

    def __init__(self, model: keras.Model, run: RunDir, monitor: str):
        super().__init__()
        self.inner, self.run, self.monitor = model, run, monitor
        saved = run.best_score() or {}
        self.best = float(saved.get("score", -math.inf))

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get(self.monitor)
        if score is not None and math.isfinite(score) and score > self.best:
            self.best = float(score)
            with atomic_file(self.run.best_weights, suffix=".weights.h5") as partial:
                self.inner.save_weights(partial)
            self.run.write_best_score(self.best, epoch + 1)


class WeightAverage(keras.callbacks.Callback):
    """The running mean of ``model``'s weights over ``epochs`` (0-based), kept in ``average.npz``.

    The mean and the epochs in it are written atomically after every epoch it takes in, so a
    resumed run carries on with it and never counts an epoch twice. It is read once, at the
    first averaged epoch of a session; after that the mean lives in memory. A run extended by
    another cycle averages its new final epochs afresh. (Keras' ``use_ema`` keeps an exponential
    average of every step instead: a different estimator, with no resumable state on disk.)

    Example:
        ``WeightAverage(network, run, range(config.epochs - 20, config.epochs))``
    """

    def __init__(self, model: keras.Model, run: RunDir, epochs: range):
        super().__init__()
        self.inner, self.run, self.epochs = model, run, epochs
        self.counted: list[int] | None = None  # epochs (1-based) in the mean; None until read
        self.mean: list[np.ndarray] = []

    def on_epoch_end(self, epoch, logs=None):
        from fertools.averaging import read_weight_average

        if epoch not in self.epochs:
            return
        if self.counted is None:
            self.counted, self.mean = read_weight_average(self.run.running_average)
            if any(done - 1 not in self.epochs for done in self.counted):
                # The average of a run since extended by another cycle (--cycles): start afresh.
                self.counted, self.mean = [], []
        if epoch + 1 in self.counted:
            return
        current = self.inner.get_weights()
        if self.counted:
            n = len(self.counted)
            current = [
                m + (w - m) / (n + 1) if w.dtype.kind == "f" else w for m, w in zip(self.mean, current)
            ]
        self.counted, self.mean = [*self.counted, epoch + 1], current
        with atomic_file(self.run.running_average, suffix=".npz") as partial:
            np.savez(partial, epochs=np.array(self.counted), **{f"w{i}": w for i, w in enumerate(current)})
