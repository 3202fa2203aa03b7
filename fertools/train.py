"""Training: one function that reads top to bottom like a recipe.

:func:`train` splits the data, builds the trainer (:func:`build_trainer`: the registry's
network, augmentation in its graph, the optimizer and schedule), fits it with the callbacks
that make a run resumable and observable (:mod:`fertools.callbacks`), chooses the weights to
ship (the best epoch, or the weight average where it scored higher) and writes the model
folder (:func:`fertools.publish.publish`). Everything lands in one run folder, whose layout
only :mod:`fertools.runs` knows; rerunning with the same folder resumes.

Settings and presets are in :mod:`fertools.config`, which needs no TensorFlow.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fertools import distill, models, runtime
from fertools.augment import build_augmenter
from fertools.averaging import all_layers, finish_weight_average
from fertools.callbacks import BestWeights, ProgressFn, ProgressReport, StopOnNaN, WeightAverage
from fertools.config import AugmentConfig, TrainConfig
from fertools.data import Dataset
from fertools.publish import publish
from fertools.runs import RunDir


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
    targets: np.ndarray | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of (float32 pixels (B,48,48,1), one-hot labels[, weights]).

    Arrays are held in memory once (``cache``), shuffled each epoch with a
    seed, batched, mixed up when asked, and prefetched so the accelerator is
    never waiting on the input. ``targets`` (N, classes), when given, replace the
    one-hot labels (a distilled run's soft targets, :mod:`fertools.distill`).
    """
    x = faces.reshape(len(faces), faces.shape[1], faces.shape[2], 1)
    if targets is None:
        y = keras.utils.to_categorical(labels, num_classes).astype("float32")
    else:
        y = np.asarray(targets, dtype="float32")
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
    for layer in all_layers(model):
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


def with_augmentation(model: keras.Model, augment: AugmentConfig | None, seed: int) -> keras.Model:
    """The model to fit: augmentation layers (active only in training) in front of ``model``.

    Augmenting inside the graph runs it on the device with the model, and the saved ``model``
    stays free of training-only layers.
    """
    if augment is None or augment.is_identity:
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    augmenter = build_augmenter(augment, seed=seed)
    return keras.Model(inputs, model(augmenter(inputs)), name=f"{model.name}_train")


def precision_policy(config: TrainConfig) -> str:
    """The Keras dtype policy a run trains under.

    Mixed precision computes in 16 bits and keeps the weights in float32: float16 on a GPU,
    bfloat16 on a CPU. "auto" turns it on where it pays: on a GPU, and on a CPU with bfloat16
    units (AMX or AVX-512 BF16) and oneDNN on, where its bfloat16 kernels train the registry's networks
    1.3x faster at the same accuracy (docs/BENCHMARKS.md); "on" forces it, "off" never.
    """
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    mixed = "mixed_float16" if on_gpu else "mixed_bfloat16"
    if config.mixed_precision == "on":
        return mixed
    if config.mixed_precision == "auto" and (on_gpu or (runtime.cpu_has_bf16() and runtime.onednn_enabled())):
        return mixed  # without oneDNN's kernels, bfloat16 would be emulated: slower, not faster
    return "float32"


@dataclass
class Trainer:
    """A compiled network ready to fit: ``model`` (what is saved) inside ``fitted`` (what trains)."""

    model: keras.Model
    fitted: keras.Model
    batch_size: int  # the global batch, over every replica
    steps: int  # optimizer steps per epoch


def load_start_weights(model: keras.Model, model_dir: str) -> None:
    """Give ``model`` the weights of the model folder ``model_dir`` (fine-tuning starts there).

    Raises:
        ValueError: the folder's network is not ``model``'s (another architecture, class count
            or input size), in one sentence.
    """
    from fertools.modelcard import load_model_dir

    source, card = load_model_dir(model_dir)
    try:
        model.set_weights(source.get_weights())
    except ValueError as error:
        raise ValueError(
            f"The model in {model_dir} ({card.architecture}, {len(card.classes)} classes) is not the network "
            f"being trained, so training cannot start from it."
        ) from error


def build_trainer(
    config: TrainConfig,
    num_classes: int,
    input_shape: tuple[int, int, int],
    train_size: int,
    *,
    seed: int,
    strategy: tf.distribute.Strategy | None = None,
    jit_compile: bool | None = None,
) -> Trainer:
    """The registry's ``config.architecture`` with augmentation, optimizer and loss, compiled.

    Call under the mixed-precision policy the run uses. ``jit_compile`` defaults to XLA on a GPU.
    Shared by :func:`train` and the training benchmark, so both time the same graph.
    """
    strategy = strategy or default_strategy()
    batch = _even_batch(train_size, config.batch_size, strategy.num_replicas_in_sync)
    steps = max(1, train_size // batch)
    if jit_compile is None:
        jit_compile = bool(tf.config.list_physical_devices("GPU"))
    with strategy.scope():
        model = models.create(config.architecture, num_classes, input_shape, **config.model_kwargs)
        if config.start_from:
            load_start_weights(model, config.start_from)
        fit_batchnorm_momentum(model, steps)
        fitted = with_augmentation(model, config.augment, seed)
        fitted.compile(
            optimizer=make_optimizer(config, steps),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=jit_compile,
        )
    return Trainer(model, fitted, batch, steps)


def _whole_epochs_only(
    callback: keras.callbacks.Callback, report: ProgressReport
) -> keras.callbacks.Callback:
    # NOTE: a cancel stops Keras after the current batch, but Keras still ends that epoch: without
    # this, a cancel at batch 15 of 52 would log, checkpoint and maybe ship a partial epoch.
    original = callback.on_epoch_end

    def on_epoch_end(epoch, logs=None):
        if not report.cancelled:
            original(epoch, logs)

    callback.on_epoch_end = on_epoch_end
    return callback


def _pipelines(
    trainer: Trainer,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    seed: int,
    sample_weights: np.ndarray | None,
    strategy: tf.distribute.Strategy,
    targets: np.ndarray | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """The shuffled, augmented training batches and the per-epoch validation batches (or None)."""
    replicas = strategy.num_replicas_in_sync
    train_ds = make_dataset(
        train_set.images,
        train_set.labels,
        len(train_set.classes),
        trainer.batch_size,
        True,
        seed,
        sample_weights,
        config.mixup,
        targets,
    )
    # Per-epoch validation over a whole number of faces per replica (the final metrics use every face).
    val_rows = len(val_set) - len(val_set) % replicas
    if not val_rows:
        return train_ds, None
    val_ds = make_dataset(
        val_set.images[:val_rows],
        val_set.labels[:val_rows],
        len(val_set.classes),
        _even_batch(val_rows, 256, replicas),
        False,
        config.seed,
    )
    return train_ds, val_ds


def _run_callbacks(
    config: TrainConfig, run: RunDir, trainer: Trainer, report: ProgressReport, *, validated: bool
) -> list[keras.callbacks.Callback]:
    """What makes a run resumable and observable, and the config's schedule and early stop."""
    monitor = "val_accuracy" if validated else "accuracy"
    whole_epochs = [
        keras.callbacks.BackupAndRestore(str(run.checkpoint_dir), delete_checkpoint=False),
        keras.callbacks.CSVLogger(str(run.file("history.csv")), append=True),
        BestWeights(trainer.model, run, monitor),
    ]
    if config.average_epochs:
        averaged = range(config.epochs - config.average_epochs, config.epochs)
        whole_epochs.append(WeightAverage(trainer.model, run, averaged))
    found = [_whole_epochs_only(callback, report) for callback in whole_epochs]
    if config.schedule == "plateau":
        found.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss" if validated else "loss", factor=0.5, patience=3, min_lr=1e-6
            )
        )
    if config.early_stopping > 0:
        found.append(
            keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping, mode="max")
        )
    return found


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

    Rerunning with the same ``run_dir`` after an interruption resumes from the last finished
    epoch. ``should_stop`` is polled every batch; when it returns True the run stops after that
    batch and is marked cancelled (its best whole epoch so far is still saved). A run whose loss
    becomes NaN is marked failed with the reason. Raises ``ValueError`` for a config that cannot
    work or a dataset without training faces.
    """
    config.validate()
    run = RunDir(run_dir).create()
    run.write_config(config)
    # A resumed session draws new shuffles and augmentations: reseeding as at the start would
    # replay the first session's first epoch, image for image, after every interruption.
    session_seed = config.seed + run.epochs_done()
    keras.utils.set_random_seed(session_seed)

    # 1. Data: the train split, and a stratified seeded validation split if the source has none.
    data = dataset.with_validation(config.val_fraction, config.seed)
    train_set, val_set = data.subset("train"), data.subset("val")
    if len(train_set) == 0:
        raise ValueError("the dataset has no training rows")
    num_classes, input_shape = len(data.classes), (*data.images.shape[1:], 1)
    weights = class_weight_vector(train_set.labels, num_classes, config.class_weights)
    sample_weights = weights[train_set.labels] if config.class_weights != "none" else None

    earlier, started = run.seconds_trained(), time.time()
    run.update_status(
        "running",
        started=started,
        earlier_seconds=earlier,
        pid=os.getpid(),
        reason="",
        phase="training",
        command=command,
        train_size=len(train_set),
        val_size=len(val_set),
    )
    previous_policy = keras.mixed_precision.global_policy()
    try:
        targets = None
        if config.teacher:  # distillation: the teachers' predictions join the labels (in float32)

            def asked(done: int, total: int) -> None:
                run.update_status("running", phase="asking the teachers", teacher_progress=[done, total])

            asked(0, len(train_set) * len(config.teacher))
            targets = distill.training_targets(
                config, run, train_set.images, train_set.labels, data.classes, progress=asked
            )
            run.update_status("running", phase="training")
        # 2. The trainer: network, augmentation, optimizer, under the run's precision.
        keras.mixed_precision.set_global_policy(precision_policy(config))
        strategy = strategy or default_strategy()
        trainer = build_trainer(
            config, num_classes, input_shape, len(train_set), seed=session_seed, strategy=strategy
        )
        train_ds, val_ds = _pipelines(
            trainer, train_set, val_set, config, session_seed, sample_weights, strategy, targets
        )

        # 3. Fit, with the callbacks that make the run resumable and observable.
        report = ProgressReport(run, config.epochs, trainer.steps, trainer.batch_size, progress, should_stop)
        nan = StopOnNaN()
        fit_callbacks = [
            report,
            nan,
            *_run_callbacks(config, run, trainer, report, validated=val_ds is not None),
        ]
        # shuffle=False: train_ds shuffles itself; Keras would only warn that it cannot.
        trainer.fitted.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=[*fit_callbacks, *callbacks],
            verbose=0,
            shuffle=False,
        )
    except Exception as error:
        run.update_status("failed", reason=f"{type(error).__name__}: {error}", finished=time.time())
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    epochs_done = run.epochs_done()
    if nan.nan_epoch is not None:
        reason = (
            f"the loss became NaN in epoch {nan.nan_epoch}: the learning rate "
            f"({config.learning_rate}) is probably too high"
        )
        run.update_status("failed", reason=reason, finished=time.time())
        return TrainResult(run.path, "failed", reason, {}, epochs_done)

    # 4. The weights to ship: the best epoch, or the weight average where it scored higher.
    run.update_status("running", phase="evaluating")
    # Rebuilt in float32 (the policy is back): the shipped network computes in full precision
    # whatever the run trained in; the weights were float32 all along.
    model = models.create(config.architecture, num_classes, input_shape, **config.model_kwargs)
    if config.average_epochs and not report.cancelled and len(val_set):
        candidate = models.create(config.architecture, num_classes, input_shape, **config.model_kwargs)
        finish_weight_average(candidate, config, run, train_set.images, val_set)
    if not run.best_weights.exists():
        # Cancelled before its first epoch ended: there are no trained weights to keep.
        reason = "cancelled by the user before its first epoch ended"
        run.update_status("cancelled", reason=reason, phase="", finished=time.time())
        return TrainResult(run.path, "cancelled", reason, {}, epochs_done)
    model.load_weights(run.final_weights())

    # 5. The model folder, with its card, metrics and validation predictions.
    metrics = publish(model, run, data, config, command=command)
    state = "cancelled" if report.cancelled else "finished"
    whole = f"{epochs_done} whole epoch" + ("" if epochs_done == 1 else "s")
    reason = f"cancelled by the user after {whole}" if report.cancelled else ""
    run.update_status(state, reason=reason, phase="", finished=time.time(), accuracy=metrics["accuracy"])
    return TrainResult(run.path, state, reason, metrics, epochs_done)


def resume_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a run was started with (to resume it); ``ValueError`` if it has none."""
    config = RunDir(run_dir).read_config()
    if config is None:
        raise ValueError(f"{run_dir} holds no readable config.json to resume")
    return config
