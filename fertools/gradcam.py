"""Grad-CAM: which parts of a face drove the model's choice.

For a class c, Grad-CAM weights the last convolutional feature maps by the
mean gradient of c's score with respect to each map, sums them, and keeps the
positive part (Selvaraju et al., 2017).
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with a 4-D (N, H, W, C) output, where spatial detail is still there."""
    for layer in reversed(model.layers):
        if isinstance(layer, (keras.Model, keras.layers.InputLayer)):
            continue
        output = getattr(layer, "output", None)
        if output is not None and len(output.shape) == 4:
            return layer
    raise ValueError(f"{model.name} has no convolutional layer for Grad-CAM")


def gradcam(model: keras.Model, face: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Heatmap in [0, 1], same size as ``face`` (``uint8`` (H, W)), for ``class_index`` (default: the top class).

    For an ensemble of nested networks (a snapshot ensemble), the mean of the members' heatmaps
    for the ensemble's class.
    """
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    try:
        layer = last_conv_layer(model)
    except ValueError:
        if not members:
            raise
        if class_index is None:
            x = tf.convert_to_tensor(face[None, ..., None], dtype=tf.float32)
            class_index = int(np.argmax(model(x, training=False)[0]))
        maps = np.stack([gradcam(member, face, class_index) for member in members])
        mean = maps.mean(axis=0)
        return mean / mean.max() if mean.max() > 0 else mean
    probe = keras.Model(model.inputs, [layer.output, model.output])
    x = tf.convert_to_tensor(face[None, ..., None], dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, probabilities = probe(x, training=False)
        index = int(tf.argmax(probabilities[0])) if class_index is None else class_index
        score = probabilities[:, index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0].numpy()
    if cam.max() > 0:
        cam = cam / cam.max()
    return cv2.resize(
        cam.astype(np.float32), (face.shape[1], face.shape[0]), interpolation=cv2.INTER_CUBIC
    ).clip(0, 1)


def overlay(face: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, size: int = 192) -> np.ndarray:
    """An RGB ``uint8`` (size, size, 3) picture: the face in grey under the heatmap's colours."""
    grey = cv2.resize(face, (size, size), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize((heatmap * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    mixed = cv2.addWeighted(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), 1 - alpha, colour, alpha, 0)
    return cv2.cvtColor(mixed, cv2.COLOR_BGR2RGB)
