"""Training: one config dataclass, one function, one run folder.

:func:`train` reads top to bottom like a recipe: split, build the model from
the registry, compile, fit with the callbacks that make a run resumable and
observable, evaluate the best epoch, and save everything a user needs into the
run folder::

    run_dir/
      config.json        the TrainConfig
      status.json        state (running, finished, failed, cancelled), reason, timings
      history.csv        one row per finished epoch, appended as training goes
      progress.json      batch-level progress, rewritten about twice a second
      checkpoint/        BackupAndRestore state: a rerun resumes from the last epoch
      model/             the best epoch as a model folder (model.keras + card.json)
      metrics.json       validation accuracy, per-class report, confusion matrix
      val_predictions.npz  validation faces, labels and probabilities (for galleries)
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fertools import models
from fertools.augment import AugmentConfig, build_augmenter
from fertools.data import Dataset
from fertools.evaluate import evaluate
from fertools.modelcard import ModelCard, hardware_description, save_model_dir

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced", "sqrt")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run."""

    architecture: str = "default"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    #: SGD momentum (Nesterov); also RMSprop's momentum.
    momentum: float = 0.9
    #: Decoupled weight decay for adamw and sgd; 0 turns it off.
    weight_decay: float = 0.0
    schedule: str = "constant"
    #: Epochs of linear warm-up for the cosine schedule (at the start of every cycle).
    warmup_epochs: int = 0
    #: Cosine with warm restarts (SGDR): the epochs of each cycle, summing to ``epochs``.
    #: Empty means one cycle over all epochs.
    cycle_epochs: tuple[int, ...] = ()
    #: With two or more cosine cycles: the final model averages the best epoch of every cycle
    #: (a snapshot ensemble, Huang et al. 2017: several models for the training cost of one).
    snapshot_ensemble: bool = False
    #: Stochastic weight averaging (Izmailov et al. 2018): average the weights of the final
    #: ``average_epochs`` epochs, recompute the batch-norm statistics, and keep the average
    #: when it scores better on validation than the best single epoch. 0 turns it off.
    average_epochs: int = 0
    label_smoothing: float = 0.0
    #: "balanced" weighs classes by n / (k * n_c), "sqrt" by its square root (gentler).
    class_weights: str = "none"
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    #: Mixup's Beta(alpha, alpha); 0 turns mixup off.
    mixup: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    #: Patience in epochs on validation accuracy; 0 turns early stopping off.
    early_stopping: int = 0
    #: "auto" uses mixed float16 on a GPU and float32 on a CPU.
    mixed_precision: str = "auto"
    #: Extra keyword arguments for the architecture's builder.
    model_kwargs: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` with one sentence for a setting that cannot work."""
        if self.architecture not in models.list_models():
            raise ValueError(
                f"unknown architecture {self.architecture!r}; choose one of {models.list_models()}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, not {self.class_weights!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1")
        if not 0 < self.learning_rate < 10:
            raise ValueError(f"learning rate {self.learning_rate} is out of range (0, 10)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("the validation fraction must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label smoothing must be in [0, 1)")
        if not 0 <= self.average_epochs <= self.epochs:
            raise ValueError(f"average_epochs must be between 0 and the {self.epochs} epochs")
        if self.snapshot_ensemble and (self.schedule != "cosine" or len(self.cycle_epochs) < 2):
            raise ValueError("a snapshot ensemble needs the cosine schedule with two or more cycles")
        if self.cycle_epochs and (sum(self.cycle_epochs) != self.epochs or min(self.cycle_epochs) < 1):
            raise ValueError(
                f"the cosine cycles {list(self.cycle_epochs)} must be positive and sum to the {self.epochs} epochs"
            )

    def to_dict(self) -> dict:
        values = asdict(self)
        values["augment"] = self.augment.to_dict() if self.augment else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if known.get("augment") is not None and not isinstance(known["augment"], AugmentConfig):
            known["augment"] = AugmentConfig.from_dict(known["augment"])
        if "cycle_epochs" in known:
            known["cycle_epochs"] = tuple(int(n) for n in known["cycle_epochs"])
        return cls(**known)


#: Named configurations; ``default`` reproduces the shipped model.
PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(
        architecture="default",
        epochs=245,
        cycle_epochs=(30, 50, 45, 60, 60),
        average_epochs=20,
        batch_size=64,
        learning_rate=1e-3,
        optimizer="adamw",
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=1,
        label_smoothing=0.1,
        class_weights="sqrt",
        augment=AugmentConfig(
            rotation=10,
            zoom=0.1,
            width_shift=0.1,
            height_shift=0.1,
            horizontal_flip=True,
            brightness=0.1,
            contrast=0.1,
            erasing=0.25,
        ),
        val_fraction=0.1,
        seed=0,
    ),
    "quick": TrainConfig(architecture="default", epochs=3, batch_size=64, augment=None),
    "internship": TrainConfig(architecture="internship_cnn", epochs=100, batch_size=64, optimizer="adam"),
}


@dataclass(frozen=True)
class Progress:
    """What the progress callback reports, at batch ends and epoch ends."""

    epoch: int  # 1-based epoch in progress (or just finished)
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    elapsed: float  # seconds since this training session started
    eta: float | None  # seconds to the end, estimated
    images_per_second: float | None
    logs: dict
    epoch_end: bool = False

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) + (self.batch / self.batches if self.batches else 0)
        return min(1.0, done / self.epochs)


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    status: str  # finished, failed or cancelled
    reason: str
    metrics: dict
    epochs_done: int


# --- helpers ------------------------------------------------------------------------------


def class_weight_vector(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """Per-class loss weights (mean 1 over samples) for ``mode`` none, balanced or sqrt."""
    counts = np.bincount(labels, minlength=num_classes).astype("float64")
    if mode == "none":
        return np.ones(num_classes, dtype="float32")
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    weights /= (weights[labels]).mean()
    return weights.astype("float32")


def make_dataset(
    faces: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    sample_weights: np.ndarray | None = None,
    mixup: float = 0.0,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of (float32 pixels (B,48,48,1), one-hot labels[, weights]).

    Arrays are held in memory once (``cache``), shuffled each epoch with a
    seed, batched, mixed up when asked, and prefetched so the accelerator is
    never waiting on the input.
    """
    x = faces.reshape(len(faces), faces.shape[1], faces.shape[2], 1)
    y = keras.utils.to_categorical(labels, num_classes).astype("float32")
    parts = (x, y) if sample_weights is None else (x, y, sample_weights.astype("float32"))
    ds = tf.data.Dataset.from_tensor_slices(parts).cache()
    if shuffle:
        ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=shuffle and len(faces) > batch_size)

    def to_float(*batch):
        return (tf.cast(batch[0], tf.float32), *batch[1:])

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if mixup > 0:
        ds = ds.map(_mixup_fn(mixup, seed), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mixup_fn(alpha: float, seed: int):
    generator = tf.random.Generator.from_seed(seed)

    def mix(x, y, *weights):
        batch = tf.shape(x)[0]
        seeds = generator.make_seeds(2)
        a = tf.random.stateless_gamma([batch], seed=seeds[:, 0], alpha=alpha)
        b = tf.random.stateless_gamma([batch], seed=seeds[:, 1], alpha=alpha)
        lam = a / (a + b)  # Beta(alpha, alpha)
        lam = tf.maximum(lam, 1.0 - lam)  # keep the original image dominant
        order = tf.argsort(generator.uniform([batch]))
        lx, ly = tf.reshape(lam, [-1, 1, 1, 1]), tf.reshape(lam, [-1, 1])
        mixed = (x * lx + tf.gather(x, order) * (1 - lx), y * ly + tf.gather(y, order) * (1 - ly))
        if weights:
            w = weights[0]
            mixed += (w * lam + tf.gather(w, order) * (1 - lam),)
        return mixed

    return mix


@keras.saving.register_keras_serializable(package="fertools")
class CosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay in cycles (SGDR), each cycle starting with a linear warm-up.

    ``cycle_steps`` are the lengths of the cycles in optimizer steps. Within a
    cycle the rate climbs linearly from ``peak / 10`` to ``peak`` over
    ``warmup_steps``, then follows a cosine down to ``alpha * peak``. With one
    cycle this is plain warm-up + cosine. The rate depends only on the step, so
    a resumed run (``BackupAndRestore`` restores the step) continues exactly.
    """

    def __init__(self, peak: float, cycle_steps: Sequence[int], warmup_steps: int = 0, alpha: float = 0.01):
        self.peak = float(peak)
        self.cycle_steps = [int(n) for n in cycle_steps]
        self.warmup_steps = int(warmup_steps)
        self.alpha = float(alpha)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        ends = tf.constant(np.cumsum(self.cycle_steps), tf.float32)
        lengths = tf.constant(self.cycle_steps, tf.float32)
        index = tf.minimum(tf.reduce_sum(tf.cast(step >= ends, tf.int32)), len(self.cycle_steps) - 1)
        length = lengths[index]
        t = tf.minimum(step - (ends[index] - length), length)  # step within the cycle
        warmup = tf.minimum(tf.constant(float(self.warmup_steps)), length - 1)
        rising = self.peak / 10 + (self.peak - self.peak / 10) * t / tf.maximum(warmup, 1.0)
        progress = (t - warmup) / tf.maximum(length - warmup, 1.0)
        falling = self.peak * (self.alpha + (1 - self.alpha) * 0.5 * (1 + tf.cos(np.pi * progress)))
        return tf.where(t < warmup, rising, falling)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "cycle_steps": self.cycle_steps,
            "warmup_steps": self.warmup_steps,
            "alpha": self.alpha,
        }


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    if config.schedule == "cosine":
        cycles = config.cycle_epochs or (config.epochs,)
        lr = CosineRestarts(
            config.learning_rate,
            [max(1, n * steps_per_epoch) for n in cycles],
            warmup_steps=config.warmup_epochs * steps_per_epoch,
        )
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay or 1e-4)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True, weight_decay=decay)
    return keras.optimizers.RMSprop(lr, momentum=config.momentum if config.momentum < 1 else 0.0)


def batchnorm_momentum(steps_per_epoch: int, default: float = 0.99) -> float:
    """A BatchNorm momentum whose moving statistics forget their initial values within one epoch.

    Inference uses the moving mean and variance, which start at 0 and 1 and
    keep ``momentum ** steps`` of that start. With Keras' 0.99 that is still 60 %
    after 50 steps (a few epochs of the built-in set), and the errors compound
    layer after layer: validation accuracy sits at chance, the "best" epoch is
    the first one, and that is the model saved. Long runs keep ``default``.
    """
    return min(default, 0.01 ** (1 / max(1, steps_per_epoch)))


def fit_batchnorm_momentum(model: keras.Model, steps_per_epoch: int) -> None:
    """Lower (never raise) every BatchNormalization's momentum to :func:`batchnorm_momentum`."""
    momentum = batchnorm_momentum(steps_per_epoch)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum > momentum:
            layer.momentum = momentum


def _even_batch(size: int, batch: int, replicas: int) -> int:
    """A batch size that splits evenly over ``replicas``, and no larger than ``size`` allows.

    Under a distribution strategy Keras 3 builds the model from the mean of the
    first batch's per-replica parts, which fails when they differ in size, and
    BatchNormalization fails on a replica that gets no faces at all.
    """
    if replicas <= 1:
        return batch
    batch = max(replicas, batch - batch % replicas)
    return batch if size >= batch else max(replicas, size - size % replicas)


def default_strategy() -> tf.distribute.Strategy:
    """``MirroredStrategy`` over all GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class _ProgressCallback(keras.callbacks.Callback):
    """Turns Keras's batch and epoch events into :class:`Progress` reports and progress.json."""

    def __init__(
        self,
        run_dir: Path,
        epochs: int,
        batches: int,
        batch_size: int,
        report: ProgressFn | None,
        should_stop: Callable[[], bool] | None,
    ):
        super().__init__()
        self.run_dir, self.epochs, self.batches, self.batch_size = run_dir, epochs, batches, batch_size
        self.report, self.should_stop = report, should_stop
        self.cancelled = False
        self._last_write = 0.0
        self._epoch = 0
        self._start = time.monotonic()
        self._epoch_start = self._start
        self._epochs_timed: list[float] = []

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
        progress = Progress(
            self._epoch, self.epochs, batch, self.batches, now - self._start, eta, rate, clean_logs, epoch_end
        )
        _write_json(
            self.run_dir / "progress.json",
            {**asdict(progress), "fraction": progress.fraction, "time": time.time()},
        )
        if self.report is not None:
            self.report(progress)


def _write_json(path: Path, values: dict) -> None:
    """Write JSON atomically, so a reader in another process never sees half a file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(values, indent=2, default=_json_default))
    os.replace(partial, path)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """history.csv as a list of dicts of floats (empty if no epoch has finished)."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
        ]


def write_status(run_dir: Path, state: str, **extra) -> None:
    path = run_dir / "status.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(extra, state=state, updated=time.time())
    _write_json(path, current)


def seconds_trained(run_dir: str | os.PathLike) -> float:
    """Training time of a run over all its sessions (a resumed run adds up), up to its last activity."""
    run_dir = Path(run_dir)
    path = run_dir / "status.json"
    status = json.loads(path.read_text()) if path.exists() else {}
    started = status.get("started")
    if started is None:
        return 0.0
    ends = [status.get("updated", started)]
    if status.get("finished", 0) >= started:
        ends.append(status["finished"])
    if (run_dir / "history.csv").exists():
        ends.append((run_dir / "history.csv").stat().st_mtime)
    return float(status.get("earlier_seconds", 0.0)) + max(0.0, max(ends) - started)


# --- the recipe -----------------------------------------------------------------------------


def train(
    dataset: Dataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    strategy: tf.distribute.Strategy | None = None,
    command: str = "",
) -> TrainResult:
    """Train ``config.architecture`` on ``dataset`` and write the run folder ``run_dir``.

    Rerunning with the same ``run_dir`` after an interruption resumes from the
    last finished epoch. ``should_stop`` is polled every batch; when it returns
    True the run stops cleanly and is marked cancelled (its best epoch so far is
    still saved). A run whose loss becomes NaN is marked failed with the reason.
    """
    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "config.json", config.to_dict())
    # A resumed session draws new shuffles and augmentations: reseeding as at the start would
    # replay the first session's first epoch, image for image, after every interruption.
    session_seed = config.seed + len(read_history(run_dir))
    keras.utils.set_random_seed(session_seed)

    # 1. Data: the train split, and a stratified seeded validation split if the source has none.
    data = dataset.with_validation(config.val_fraction, config.seed)
    train_set, val_set = data.subset("train"), data.subset("val")
    if len(train_set) == 0:
        raise ValueError("the dataset has no training rows")
    num_classes = len(data.classes)
    weights = class_weight_vector(train_set.labels, num_classes, config.class_weights)
    sample_weights = weights[train_set.labels] if config.class_weights != "none" else None

    # 2. Device set-up: mixed precision on GPU, a distribution strategy over what is there.
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    use_mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and on_gpu)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    strategy = strategy or default_strategy()
    replicas = strategy.num_replicas_in_sync
    global_batch = _even_batch(len(train_set), config.batch_size, replicas)
    # Per-epoch validation over a whole number of faces per replica (the final metrics use every face).
    val_rows = len(val_set) - len(val_set) % replicas
    val_batch = _even_batch(val_rows, 256, replicas)
    steps = max(1, len(train_set) // global_batch)

    earlier = seconds_trained(run_dir)  # the sessions before this one, when resuming
    started = time.time()
    write_status(
        run_dir,
        "running",
        started=started,
        earlier_seconds=earlier,
        pid=os.getpid(),
        reason="",
        command=command,
        train_size=len(train_set),
        val_size=len(val_set),
    )
    try:
        with strategy.scope():
            model = models.create(
                config.architecture, num_classes, (*data.images.shape[1:], 1), **config.model_kwargs
            )
            fit_batchnorm_momentum(model, steps)
            trainer = _with_augmentation(model, config.augment, session_seed)
            trainer.compile(
                optimizer=make_optimizer(config, steps),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=on_gpu,
            )
        train_ds = make_dataset(
            train_set.images,
            train_set.labels,
            num_classes,
            global_batch,
            True,
            session_seed,
            sample_weights,
            config.mixup,
        )
        val_ds = (
            make_dataset(
                val_set.images[:val_rows],
                val_set.labels[:val_rows],
                num_classes,
                val_batch,
                False,
                config.seed,
            )
            if val_rows
            else None
        )

        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        tracker = _ProgressCallback(run_dir, config.epochs, steps, global_batch, progress, should_stop)
        best_path = run_dir / "best.weights.h5"
        fit_callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.BackupAndRestore(str(run_dir / "checkpoint"), delete_checkpoint=False),
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            _BestWeights(model, best_path, monitor),
            *_weight_averagers(model, config, run_dir),
            *_snapshot_trackers(model, config, run_dir, monitor),
            tracker,
        ]
        if config.schedule == "plateau":
            fit_callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss" if val_ds is not None else "loss", factor=0.5, patience=3, min_lr=1e-6
                )
            )
        if config.early_stopping > 0:
            fit_callbacks.append(
                keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping, mode="max")
            )
        fit_callbacks.extend(callbacks)
        # shuffle=False: train_ds shuffles itself; Keras would only warn that it cannot.
        trainer.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=fit_callbacks,
            verbose=0,
            shuffle=False,
        )
    except Exception as error:
        write_status(run_dir, "failed", reason=f"{type(error).__name__}: {error}", finished=time.time())
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    # 3. Outcome: NaN, cancelled or finished; the best epoch becomes the run's model.
    history = read_history(run_dir)
    epochs_done = len(history)
    losses = [row.get("loss", math.nan) for row in history]
    if trainer.stop_training and (not losses or not np.isfinite(losses[-1])) and not tracker.cancelled:
        # Keras ends (and CSVLogger logs) the epoch that went NaN before stopping: it is the last row.
        nan_epoch = int(history[-1]["epoch"]) + 1 if history else 1
        reason = (
            f"the loss became NaN in epoch {nan_epoch}: the learning rate "
            f"({config.learning_rate}) is probably too high"
        )
        write_status(run_dir, "failed", reason=reason, finished=time.time())
        return TrainResult(run_dir, "failed", reason, {}, epochs_done)
    if config.average_epochs and not tracker.cancelled and len(val_set):
        with strategy.scope():
            candidate = models.create(
                config.architecture, num_classes, (*data.images.shape[1:], 1), **config.model_kwargs
            )
        finish_weight_average(candidate, config, run_dir, train_set.images, val_set)
    if best_path.exists():
        model.load_weights(final_weights(run_dir))
    model = snapshot_ensemble(config, run_dir, num_classes, (*data.images.shape[1:], 1)) or model
    metrics = _finish(
        model,
        data,
        val_set if len(val_set) else train_set,
        config,
        run_dir,
        earlier + time.time() - started,
        epochs_done,
        command,
    )
    state = "cancelled" if tracker.cancelled else "finished"
    reason = "cancelled by the user" if tracker.cancelled else ""
    write_status(run_dir, state, reason=reason, finished=time.time(), accuracy=metrics["accuracy"])
    return TrainResult(run_dir, state, reason, metrics, epochs_done)


def _with_augmentation(model: keras.Model, augment: AugmentConfig | None, seed: int) -> keras.Model:
    """The model to fit: augmentation layers (training only) in front of ``model``.

    Augmenting inside the graph runs it on the device with the model, and the
    saved ``model`` stays free of training-only layers.
    """
    if augment is None or augment.is_identity:
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    augmenter = build_augmenter(augment, seed=seed)
    return keras.Model(inputs, model(augmenter(inputs)), name=f"{model.name}_train")


class _BestWeights(keras.callbacks.Callback):
    """Save the inner model's weights whenever the monitored metric improves.

    With BackupAndRestore a resumed run does not know the best score of the
    epochs before it, so the score is kept next to the weights.
    """

    def __init__(self, model: keras.Model, path: Path, monitor: str, epochs: range | None = None):
        super().__init__()
        self.inner, self.path, self.monitor, self.epochs = model, path, monitor, epochs
        self.score_path = path.with_suffix(".json")
        self.best = json.loads(self.score_path.read_text())["score"] if self.score_path.exists() else -np.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.epochs is not None and epoch not in self.epochs:
            return
        score = (logs or {}).get(self.monitor)
        if score is not None and np.isfinite(score) and score > self.best:
            self.best = float(score)
            self.inner.save_weights(self.path)
            _write_json(self.score_path, {"score": self.best, "epoch": epoch + 1})


class _WeightAverage(keras.callbacks.Callback):
    """The running mean of the inner model's weights over ``epochs`` (0-based), kept on disk.

    ``average.npz`` holds the mean and the epochs in it, written atomically
    after every epoch it takes in, so a resumed run carries on with it and
    never counts an epoch twice. It is read once, at the first averaged epoch
    of a session; after that the mean lives in memory. A run extended by
    another cycle averages its new final epochs afresh.
    """

    def __init__(self, model: keras.Model, path: Path, epochs: range):
        super().__init__()
        self.inner, self.path, self.epochs = model, path, epochs
        self.counted: list[int] | None = None  # epochs (1-based) in the mean; None until read
        self.mean: list[np.ndarray] = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch not in self.epochs:
            return
        if self.counted is None:
            self.counted, self.mean = read_weight_average(self.path)
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
        partial = self.path.with_name(self.path.stem + ".partial.npz")
        np.savez(partial, epochs=np.array(self.counted), **{f"w{i}": w for i, w in enumerate(current)})
        os.replace(partial, self.path)


def _weight_averagers(
    model: keras.Model, config: TrainConfig, run_dir: Path
) -> list[keras.callbacks.Callback]:
    if not config.average_epochs:
        return []
    return [
        _WeightAverage(
            model, run_dir / "average.npz", range(config.epochs - config.average_epochs, config.epochs)
        )
    ]


def read_weight_average(path: str | os.PathLike) -> tuple[list[int], list[np.ndarray]]:
    """The epochs (1-based) in a running weight average and its weights; empty lists if there is none."""
    path = Path(path)
    if not path.exists():
        return [], []
    with np.load(path) as saved:
        count = len(saved.files) - 1
        return saved["epochs"].tolist(), [saved[f"w{i}"] for i in range(count)]


def recompute_batchnorm(
    model: keras.Model,
    images: np.ndarray,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> None:
    """Set every BatchNormalization's moving mean and variance to their average over ``images``.

    Averaged weights need statistics of their own: the moving averages of the
    epochs they came from describe other networks. One pass in training mode
    (through the training augmentation, when given) with a cumulative momentum
    gives every batch the same weight.
    """
    norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    augmenter = build_augmenter(augment, seed=seed) if augment and not augment.is_identity else None
    try:
        for index, start in enumerate(range(0, len(images), batch_size)):
            for layer in norms:
                layer.momentum = index / (index + 1)  # 0 first: the start values are forgotten
            x = tf.convert_to_tensor(images[start : start + batch_size, ..., None], tf.float32)
            if augmenter is not None:
                x = augmenter(x, training=True)
            model(x, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested models (a transfer backbone) included."""
    found, pending = [], list(model.layers)
    while pending:
        layer = pending.pop()
        found.append(layer)
        pending.extend(getattr(layer, "layers", []))
    return found


def finish_weight_average(
    model: keras.Model, config: TrainConfig, run_dir: Path, train_images: np.ndarray, val_set: Dataset
) -> dict | None:
    """Turn a run's running average into ``average.weights.h5``, scored on the validation faces.

    ``model`` is a fresh network of the run's architecture; it ends up holding
    the average. Returns ``{"score", "epochs"}`` (also written to
    ``average.weights.json``), or None when fewer than two epochs were averaged.
    """
    epochs, mean = read_weight_average(run_dir / "average.npz")
    if len(epochs) < 2:
        return None
    model.set_weights(mean)
    recompute_batchnorm(model, train_images, config.augment, config.seed)
    score = evaluate(model, val_set.images, val_set.labels, val_set.classes).accuracy
    model.save_weights(run_dir / "average.weights.h5")
    summary = {"score": score, "epochs": epochs}
    _write_json(run_dir / "average.weights.json", summary)
    return summary


def final_weights(run_dir: str | os.PathLike) -> Path:
    """The weights a run ships: its weight average where that beat the best epoch, else the best epoch."""
    run_dir = Path(run_dir)
    best, average = run_dir / "best.weights.json", run_dir / "average.weights.json"
    if average.exists():
        best_score = json.loads(best.read_text())["score"] if best.exists() else -np.inf
        if json.loads(average.read_text())["score"] > best_score:
            return run_dir / "average.weights.h5"
    return run_dir / "best.weights.h5"


def _cycles(config: TrainConfig) -> list[range]:
    """The epochs (0-based) of each cosine cycle."""
    bounds = np.cumsum([0, *(config.cycle_epochs or (config.epochs,))])
    return [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _snapshot_trackers(
    model: keras.Model, config: TrainConfig, run_dir: Path, monitor: str
) -> list[keras.callbacks.Callback]:
    """One best-weights tracker per cosine cycle, saving ``snapshots/cycle<k>.weights.h5``."""
    if not (config.snapshot_ensemble and config.schedule == "cosine" and len(config.cycle_epochs) > 1):
        return []
    (run_dir / "snapshots").mkdir(exist_ok=True)
    return [
        _BestWeights(model, run_dir / "snapshots" / f"cycle{k}.weights.h5", monitor, epochs)
        for k, epochs in enumerate(_cycles(config), start=1)
    ]


def snapshot_ensemble(
    config: TrainConfig, run_dir: str | os.PathLike, num_classes: int, input_shape: tuple[int, ...]
) -> keras.Model | None:
    """The model averaging the best epoch of every finished cycle; None unless there are two or more.

    Each snapshot is a full ``config.architecture`` network nested in one
    functional model (``snapshot1``, ``snapshot2``, ...), so the result saves,
    loads (``safe_mode=True``) and converts like any other model.
    """
    paths = sorted((Path(run_dir) / "snapshots").glob("cycle*.weights.h5"))
    if not config.snapshot_ensemble or len(paths) < 2:
        return None
    members = []
    for index, path in enumerate(paths, start=1):
        member = models.create(config.architecture, num_classes, tuple(input_shape), **config.model_kwargs)
        member.load_weights(path)
        member.name = f"snapshot{index}"
        members.append(member)
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    average = keras.layers.Average(name="snapshot_average")([member(inputs) for member in members])
    return keras.Model(inputs, average, name=f"{config.architecture}_snapshot_ensemble")


def snapshot_scores(run_dir: str | os.PathLike) -> list[dict]:
    """``{"cycle", "epoch", "score"}`` of each saved snapshot (epochs 1-based)."""
    found = sorted((Path(run_dir) / "snapshots").glob("cycle*.weights.json"))
    return [{"cycle": int(path.name[5:].split(".")[0]), **json.loads(path.read_text())} for path in found]


def _finish(
    model: keras.Model,
    data: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    run_dir: Path,
    seconds: float,
    epochs_done: int,
    command: str,
    model_dir: Path | None = None,
    notes: list[str] | None = None,
    epochs_run: int | None = None,
) -> dict:
    plain = evaluate(model, val_set.images, val_set.labels, data.classes)
    flipped = evaluate(model, val_set.images, val_set.labels, data.classes, tta=True)
    metrics = {
        **plain.to_dict(),
        "accuracy_flip_tta": flipped.accuracy,
        "split": "val",
        "epochs": epochs_done,
        "train_seconds": round(seconds, 1),
    }
    _write_json(run_dir / "metrics.json", metrics)
    np.savez_compressed(
        run_dir / "val_predictions.npz",
        images=val_set.images,
        labels=val_set.labels,
        probabilities=plain.probabilities,
        classes=np.array(data.classes),
    )
    card = ModelCard(
        name=model_dir.name if model_dir else run_dir.name,
        architecture=config.architecture,
        classes=list(data.classes),
        input_shape=list(model.input_shape[1:]),
        parameters=int(model.count_params()),
        training={
            "config": config.to_dict(),
            "command": command,
            "epochs": epochs_done,
            "seconds": round(seconds, 1),
            "hardware": hardware_description(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        metrics={
            k: metrics[k]
            for k in ("accuracy", "accuracy_flip_tta", "macro_f1", "per_class", "confusion", "n", "split")
        },
        dataset={
            "source": data.source,
            "synthetic": data.synthetic,
            "classes": list(data.classes),
            "sizes": {name: int((data.split == name).sum()) for name in data.splits},
            "split": "; ".join(data.notes) or "as given by the source",
        },
    )
    card.notes = list(notes or [])
    if model.name.endswith("_snapshot_ensemble"):
        card.training["snapshots"] = snapshot_scores(run_dir)
        card.notes.append(
            f"A snapshot ensemble: the average of {len(card.training['snapshots'])} `{config.architecture}` "
            "networks, the best epoch of each cosine cycle of one run."
        )
    average = _average_summary(run_dir)
    if average is not None:
        card.training["weight_average"] = average
        if average["shipped"]:
            first, last = min(average["epochs"]), max(average["epochs"])
            card.notes.append(
                f"The weights are the average of epochs {first}-{last} (stochastic weight averaging), with "
                f"batch-norm statistics recomputed on the training faces: {average['score']:.2%} on validation, "
                f"against {average['best_epoch_score']:.2%} for the best single epoch ({average['best_epoch']})."
            )
    if epochs_run is not None:
        card.training["epochs_run"] = epochs_run
        card.training["best_epoch"] = epochs_done
    save_model_dir(model, card, model_dir or run_dir / "model")
    return metrics


def _average_summary(run_dir: Path) -> dict | None:
    """What a run's weight average scored against its best epoch, and whether it is the one shipped."""
    path = run_dir / "average.weights.json"
    if not path.exists():
        return None
    best_path = run_dir / "best.weights.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else {}
    return {
        **json.loads(path.read_text()),
        "best_epoch": best.get("epoch"),
        "best_epoch_score": best.get("score"),
        "shipped": final_weights(run_dir).name.startswith("average"),
    }


def resume_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a run was started with (to resume it)."""
    return TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))


__all__ = [
    "PRESETS",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "class_weight_vector",
    "final_weights",
    "finish_weight_average",
    "make_dataset",
    "read_history",
    "read_weight_average",
    "recompute_batchnorm",
    "resume_config",
    "snapshot_ensemble",
    "snapshot_scores",
    "seconds_trained",
    "train",
]


def export_best(
    run_dir: str | os.PathLike,
    dataset: Dataset,
    out_dir: str | os.PathLike | None = None,
    *,
    note: str = "",
    command: str = "",
    about: dict | None = None,
) -> dict:
    """Evaluate a run's best epoch so far and save it as a model folder (default ``run_dir/model``).

    Works while the run is still going or after it was interrupted: the model is
    rebuilt from ``config.json`` and ``best.weights.h5``, evaluated on the same
    seeded validation split, and written with a full card, which also records
    the inference engine's accuracy and speed and, from ``about``, the data's
    origin and terms (e.g. :data:`fertools.constants.FER2013_ABOUT`). Returns
    the metrics.
    """
    run_dir = Path(run_dir)
    config = resume_config(run_dir)
    best = json.loads((run_dir / "best.weights.json").read_text())
    data = dataset.with_validation(config.val_fraction, config.seed)
    model = models.create(
        config.architecture, len(data.classes), (*data.images.shape[1:], 1), **config.model_kwargs
    )
    model.load_weights(final_weights(run_dir))
    model = snapshot_ensemble(config, run_dir, len(data.classes), (*data.images.shape[1:], 1)) or model
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    history = read_history(run_dir)
    seconds = seconds_trained(run_dir)
    command = command or status.get("command", "")
    target = Path(out_dir) if out_dir else run_dir / "model"
    metrics = _finish(
        model,
        data,
        data.subset("val"),
        config,
        run_dir,
        seconds,
        int(best["epoch"]),
        command,
        model_dir=target,
        notes=[note] if note else [],
        epochs_run=len(history),
    )
    # The card also records how the Recognizer will run this model, measured on the same faces.
    from fertools.engine import measure_engine
    from fertools.modelcard import CARD_FILE, read_card

    val_set = data.subset("val")
    card = read_card(target)
    card.inference = measure_engine(model, val_set.images, val_set.labels)
    card.dataset.update(about or {})
    (target / CARD_FILE).write_text(card.to_json())
    metrics["inference"] = card.inference
    return metrics
