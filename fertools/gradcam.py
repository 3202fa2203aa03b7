"""Grad-CAM: which parts of a face drove the model's choice.

For a class c, Grad-CAM weights a convolutional layer's feature maps by the
mean gradient of c's score with respect to each map, sums them, and keeps the
positive part (Selvaraju et al., 2017). Which layer matters: the maps just
before a network's head are 1x1 to 3x3 on a 48x48 face (a uniform or blocky
heatmap), so each registered architecture names the last map of useful
resolution (:attr:`fertools.models.ModelSpec.gradcam_layer`).

NOTE: this computes gradients in the calling process. On CPUs where oneDNN
is on, the gradient of a separable convolution (``mini_xception``) can abort
the whole process with a heap corruption, so a server that explains faces
must start TensorFlow with oneDNN off (:func:`fertools.runtime.protect_server`).
"""

from __future__ import annotations

import threading
import weakref

import cv2
import keras
import numpy as np
import tensorflow as tf

from fertools import models

#: Without a registered layer, explain the last map at least this many pixels on a side.
MIN_MAP_SIDE = 6
#: 4-D layers that only prepare pixels; their maps explain nothing the network computed.
_PIXEL_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Rescaling,
    keras.layers.Resizing,
    keras.layers.Concatenate,
    keras.layers.Normalization,
)


def _feature_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers with a 4-D ``(N, H, W, C)`` output computed by the network, in graph order."""
    found = []
    for layer in model.layers:
        output = getattr(layer, "output", None)
        if isinstance(layer, (*_PIXEL_LAYERS, keras.Model)) or output is None or len(output.shape) != 4:
            continue
        found.append(layer)
    return found


def explained_layer(model: keras.Model, architecture: str | None = None) -> keras.layers.Layer:
    """The layer whose feature maps Grad-CAM weighs.

    The registry's ``gradcam_layer`` for ``architecture`` when ``model`` has it; otherwise the
    last feature layer whose map is at least :data:`MIN_MAP_SIDE` on a side (the last one of any
    size when none is).

    Raises:
        ValueError: ``model`` has no convolutional feature map at all.
    """
    if architecture:
        try:
            name = models.get_spec(architecture).gradcam_layer
        except KeyError:
            name = ""
        if name and any(layer.name == name for layer in model.layers):
            return model.get_layer(name)
    candidates = _feature_layers(model)
    if not candidates:
        raise ValueError(f"{model.name} has no convolutional layer for Grad-CAM")
    sized = [layer for layer in candidates if min(layer.output.shape[1:3]) >= MIN_MAP_SIDE]
    return (sized or candidates)[-1]


_probes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probes_lock = threading.Lock()


def _probe(model: keras.Model, layer: keras.layers.Layer) -> keras.Model:
    """A model from the input to (the layer's maps, the probabilities), built once per layer."""
    with _probes_lock:
        per_model = _probes.setdefault(model, {})
        if layer.name not in per_model:
            per_model[layer.name] = keras.Model(model.inputs, [layer.output, model.output])
        return per_model[layer.name]


def gradcam(
    model: keras.Model,
    face: np.ndarray,
    class_index: int | None = None,
    *,
    architecture: str | None = None,
) -> np.ndarray:
    """Heatmap in [0, 1], ``float32`` of ``face``'s shape, for ``class_index`` (default: the top class).

    Args:
        model: a classifier taking raw 0..255 pixels ``(N, H, W, 1)``.
        face: ``uint8`` ``(H, W)`` grayscale face, the model's input size.
        class_index: the class to explain; ``None`` explains the predicted one.
        architecture: the registry name (the card's ``architecture``), which names the layer.

    Raises:
        ValueError: the model has no convolutional layer to explain.
    """
    layer = explained_layer(model, architecture)
    probe = _probe(model, layer)
    x = tf.convert_to_tensor(face[None, ..., None], dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, probabilities = probe(x, training=False)
        index = int(tf.argmax(probabilities[0])) if class_index is None else class_index
        score = probabilities[:, index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2))
    features = tf.cast(features, tf.float32)
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
