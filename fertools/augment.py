"""Data augmentation as Keras 3 preprocessing layers, built from one config.

Training puts :func:`build_augmenter` in front of the model (active only while
training) and the app's preview calls :func:`preview`, which runs the very
same layers, so what a student sees is what the network gets.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from fertools.config import AugmentConfig


class RandomErasing(layers.Layer):
    """Replace one random rectangle (2-20% of the area) with noise, for a share of images."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or self.rate <= 0:
            return images
        ops = keras.ops
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        area = ops.cast(height * width, "float32")
        fraction = keras.random.uniform((batch,), 0.02, 0.2, seed=self._generator)
        aspect = ops.exp(keras.random.uniform((batch,), -1.0, 1.0, seed=self._generator))
        box_h = ops.clip(ops.sqrt(fraction * area * aspect), 1.0, ops.cast(height, "float32"))
        box_w = ops.clip(ops.sqrt(fraction * area / aspect), 1.0, ops.cast(width, "float32"))
        top = keras.random.uniform((batch,), 0.0, 1.0, seed=self._generator) * (
            ops.cast(height, "float32") - box_h
        )
        left = keras.random.uniform((batch,), 0.0, 1.0, seed=self._generator) * (
            ops.cast(width, "float32") - box_w
        )
        rows = ops.cast(ops.arange(height), "float32")[None, :, None]
        cols = ops.cast(ops.arange(width), "float32")[None, None, :]
        inside_rows = (rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])
        inside_cols = (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None])
        chosen = keras.random.uniform((batch,), seed=self._generator) < self.rate
        mask = inside_rows & inside_cols & chosen[:, None, None]
        noise = keras.random.uniform(ops.shape(images), 0.0, 255.0, seed=self._generator)
        return ops.where(mask[..., None], ops.cast(noise, images.dtype), images)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def build_augmenter(config: AugmentConfig, seed: int | None = None) -> keras.Sequential:
    """Layers taking float (N, H, W, 1) pixels in 0..255 and returning augmented ones.

    Geometric transforms fill uncovered pixels with the nearest edge pixel, as
    ``ImageDataGenerator`` did.
    """
    stack: list[layers.Layer] = []
    if config.horizontal_flip:
        stack.append(layers.RandomFlip("horizontal", seed=seed))
    if config.rotation:
        stack.append(layers.RandomRotation(config.rotation / 360.0, fill_mode="nearest", seed=seed))
    if config.zoom:
        stack.append(layers.RandomZoom((-config.zoom, config.zoom), fill_mode="nearest", seed=seed))
    if config.width_shift or config.height_shift:
        stack.append(
            layers.RandomTranslation(config.height_shift, config.width_shift, fill_mode="nearest", seed=seed)
        )
    if config.brightness:
        stack.append(layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed))
    if config.contrast:
        stack.append(layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed))
    if config.erasing:
        stack.append(RandomErasing(config.erasing, seed=seed))
    return keras.Sequential(stack, name="augment")


def preview(images: np.ndarray, config: AugmentConfig, n: int = 4, seed: int = 0) -> np.ndarray:
    """``n`` augmented copies of each face: ``uint8`` (N, 48, 48) in, ``uint8`` (N, n, 48, 48) out."""
    if images.ndim != 3:
        raise ValueError(f"expected faces of shape (N, H, W), got {images.shape}")
    augmenter = build_augmenter(config, seed=seed)
    batch = np.repeat(images[:, None], n, axis=1).reshape(-1, *images.shape[1:], 1)
    batch = batch.astype("float32")
    out = augmenter(batch, training=True) if augmenter.layers else batch
    out = np.clip(keras.ops.convert_to_numpy(out), 0, 255).round().astype(np.uint8)
    return out.reshape(images.shape[0], n, *images.shape[1:])
