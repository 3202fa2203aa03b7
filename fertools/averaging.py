"""Stochastic weight averaging (Izmailov et al. 2018): the mean of the final epochs' weights.

:class:`fertools.callbacks.WeightAverage` keeps the running mean while training; here it is
finished: batch-norm statistics recomputed for the averaged network, then scored on the
validation faces, so the run can ship whichever of the average and the best epoch scored higher.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fertools.augment import build_augmenter
from fertools.config import AugmentConfig, TrainConfig
from fertools.data import Dataset
from fertools.evaluate import evaluate
from fertools.runs import RunDir, atomic_file


def read_weight_average(path: str | os.PathLike) -> tuple[list[int], list[np.ndarray]]:
    """The epochs (1-based) in a running weight average and its weights; empty lists if there is none."""
    path = Path(path)
    if not path.exists():
        return [], []
    with np.load(path, allow_pickle=False) as saved:
        count = len(saved.files) - 1
        return saved["epochs"].tolist(), [saved[f"w{i}"] for i in range(count)]


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested models included."""
    found, pending = [], list(model.layers)
    while pending:
        layer = pending.pop()
        found.append(layer)
        pending.extend(getattr(layer, "layers", []))
    return found


def recompute_batchnorm(
    model: keras.Model,
    images: np.ndarray,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> None:
    """Set every BatchNormalization's moving mean and variance to their average over ``images``.

    Averaged weights need statistics of their own: the moving averages of the epochs they came
    from describe other networks. One pass in training mode (through the training augmentation,
    when given) with a cumulative momentum gives every batch the same weight.
    """
    norms = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
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


def finish_weight_average(
    model: keras.Model, config: TrainConfig, run: RunDir, train_images: np.ndarray, val_set: Dataset
) -> dict | None:
    """Turn a run's running average into ``average.weights.h5``, scored on the validation faces.

    ``model`` is a fresh network of the run's architecture; it ends up holding the average.
    Returns ``{"score", "epochs"}``, or None when fewer than two epochs were averaged.
    """
    epochs, mean = read_weight_average(run.running_average)
    if len(epochs) < 2:
        return None
    model.set_weights(mean)
    recompute_batchnorm(model, train_images, config.augment, config.seed)
    score = evaluate(model, val_set.images, val_set.labels, val_set.classes).accuracy
    with atomic_file(run.average_weights, suffix=".weights.h5") as partial:
        model.save_weights(partial)
    run.write_average_score(score, epochs)
    return {"score": score, "epochs": epochs}


def average_summary(run: RunDir) -> dict | None:
    """What a run's weight average scored against its best epoch, and whether it is the one shipped."""
    average = run.average_score()
    if average is None:
        return None
    best = run.best_score() or {}
    return {
        **average,
        "best_epoch": best.get("epoch"),
        "best_epoch_score": best.get("score"),
        "shipped": run.average_ships(),
    }
