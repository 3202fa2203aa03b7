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


def _named_layer(
    model: keras.Model, architecture: str | None, candidates: list[keras.layers.Layer], prefix: str = ""
) -> keras.layers.Layer:
    """The registry's ``gradcam_layer`` (under ``prefix``) if present, else the last map of useful size."""
    if architecture:
        try:
            name = prefix + models.get_spec(architecture).gradcam_layer
        except KeyError:
            name = ""
        if name != prefix and any(layer.name == name for layer in model.layers):
            return model.get_layer(name)
    if not candidates:
        raise ValueError(f"{model.name} has no convolutional layer for Grad-CAM")
    sized = [layer for layer in candidates if min(layer.output.shape[1:3]) >= MIN_MAP_SIDE]
    return (sized or candidates)[-1]


def explained_layers(model: keras.Model, architecture: str | None = None) -> list[keras.layers.Layer]:
    """The layers whose feature maps Grad-CAM weighs: one, or one per member of an ensemble.

    For each network, the registry's ``gradcam_layer`` for its architecture when the model has
    it; otherwise its last feature layer whose map is at least :data:`MIN_MAP_SIDE` on a side
    (the last one of any size when none is). The members of an ensemble
    (:func:`fertools.architectures.ensemble.combine`) are found by their layer-name prefixes.

    Raises:
        ValueError: ``model`` (or a member) has no convolutional feature map at all.
    """
    from fertools.architectures.ensemble import member_prefixes

    features = _feature_layers(model)
    members = member_prefixes(model)
    if not members:
        return [_named_layer(model, architecture, features)]
    return [
        _named_layer(model, member, [layer for layer in features if layer.name.startswith(prefix)], prefix)
        for prefix, member in members
    ]


def explained_layer(model: keras.Model, architecture: str | None = None) -> keras.layers.Layer:
    """The first of :func:`explained_layers` (the only one, for a single network)."""
    return explained_layers(model, architecture)[0]


_probes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probes_lock = threading.Lock()


def _probe(model: keras.Model, chosen: list[keras.layers.Layer]) -> keras.Model:
    """A model from the input to (each chosen layer's maps..., the probabilities), built once."""
    key = tuple(layer.name for layer in chosen)
    with _probes_lock:
        per_model = _probes.setdefault(model, {})
        if key not in per_model:
            per_model[key] = keras.Model(model.inputs, [*(layer.output for layer in chosen), model.output])
        return per_model[key]


def gradcam(
    model: keras.Model,
    face: np.ndarray,
    class_index: int | None = None,
    *,
    architecture: str | None = None,
) -> np.ndarray:
    """Heatmap in [0, 1], ``float32`` of ``face``'s shape, for ``class_index`` (default: the top class).

    For an ensemble, each member's map is weighed by the gradient of the ensemble's score,
    scaled to [0, 1] on its own, resized to the face and averaged: the regions every member
    relied on stay hot.

    Args:
        model: a classifier taking raw 0..255 pixels ``(N, H, W, 1)``.
        face: ``uint8`` ``(H, W)`` grayscale face, the model's input size.
        class_index: the class to explain; ``None`` explains the predicted one.
        architecture: the registry name (the card's ``architecture``), which names the layer.

    Raises:
        ValueError: the model has no convolutional layer to explain.
    """
    chosen = explained_layers(model, architecture)
    probe = _probe(model, chosen)
    x = tf.convert_to_tensor(face[None, ..., None], dtype=tf.float32)
    with tf.GradientTape() as tape:
        *features, probabilities = probe(x, training=False)
        index = int(tf.argmax(probabilities[0])) if class_index is None else class_index
        score = probabilities[:, index]
    size = (face.shape[1], face.shape[0])
    heat = np.zeros(face.shape[:2], np.float32)
    for maps, grads in zip(features, tape.gradient(score, features)):
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2))
        maps = tf.cast(maps, tf.float32)
        cam = tf.nn.relu(tf.reduce_sum(maps * weights[:, None, None, :], axis=-1))[0].numpy()
        if cam.max() > 0:
            cam = cam / cam.max()
        heat += cv2.resize(cam.astype(np.float32), size, interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return heat / len(features)


def overlay(face: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, size: int = 192) -> np.ndarray:
    """An RGB ``uint8`` (size, size, 3) picture: the face in grey under the heatmap's colours."""
    grey = cv2.resize(face, (size, size), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize((heatmap * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    mixed = cv2.addWeighted(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), 1 - alpha, colour, alpha, 0)
    return cv2.cvtColor(mixed, cv2.COLOR_BGR2RGB)
