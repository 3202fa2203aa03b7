"""``ensemble``: several trained networks in one model file, their probabilities averaged.

Ensembles of differently built networks are where FER2013's best published results come
from. :func:`combine` turns trained networks into one flat functional model: one shared
``pixels`` input, each member's layers cloned under the prefix ``m{i}_{architecture}__`` with
the member's weights, and a mean over the members' softmax outputs. Flat means no nested
models and no Lambda layers, so the file loads with ``safe_mode=True``, converts to LiteRT like
any single network, and Grad-CAM can reach every member's feature maps by name
(:func:`member_prefixes`).

The registered builder makes the same graph from fresh members, so a card that says
``ensemble`` with ``model_kwargs={"members": [...]}`` rebuilds (album fine-tuning, export).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
from keras import layers

from fertools import models

#: The separator between a member's prefix and its own layer names.
SEPARATOR = "__"
#: Layer names of a member: ``m0_wide__stage1_1_conv``.
_MEMBER_NAME = re.compile(rf"^m(\d+)_([A-Za-z0-9_]+?){SEPARATOR}")
#: The layer that averages the members' probabilities.
MEAN_LAYER = "ensemble_mean"


def member_prefix(index: int, architecture: str) -> str:
    """The prefix of member ``index``'s layer names."""
    return f"m{index}_{architecture}{SEPARATOR}"


def _renamer(prefix: str):
    def rename(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        config["name"] = prefix + layer.name
        return layer.__class__.from_config(config)

    return rename


def combine(networks: Sequence[keras.Model], architectures: Sequence[str]) -> keras.Model:
    """One model whose output is the mean of ``networks``' probabilities, weights kept.

    Raises:
        ValueError: fewer than two networks, names and networks of different lengths, or
            networks that disagree on input shape or class count.
    """
    if len(networks) != len(architectures):
        raise ValueError("an ensemble needs one architecture name per network.")
    if len(networks) < 2:
        raise ValueError("an ensemble needs at least two networks.")
    shapes = {tuple(net.input_shape[1:]) for net in networks}
    outputs = {tuple(net.output_shape[1:]) for net in networks}
    if len(shapes) != 1 or len(outputs) != 1:
        raise ValueError(f"the networks disagree: input shapes {sorted(shapes)}, outputs {sorted(outputs)}.")
    inputs = keras.Input(shape=next(iter(shapes)), name="pixels")
    members = []
    for index, (net, architecture) in enumerate(zip(networks, architectures)):
        clone = keras.models.clone_model(
            net, input_tensors=inputs, clone_function=_renamer(member_prefix(index, architecture))
        )
        clone.set_weights(net.get_weights())
        members.append(clone.output)
    mean = layers.Average(name=MEAN_LAYER, dtype="float32")(members)
    return keras.Model(inputs, mean, name="ferlab_ensemble")


def member_prefixes(model: keras.Model) -> list[tuple[str, str]]:
    """``(prefix, architecture)`` of each member of a :func:`combine` model, in order; ``[]`` otherwise."""
    found: dict[int, tuple[str, str]] = {}
    for layer in model.layers:
        match = _MEMBER_NAME.match(layer.name)
        if match:
            found.setdefault(int(match.group(1)), (match.group(0), match.group(2)))
    return [found[index] for index in sorted(found)]


@models.register(
    "ensemble",
    description="two or more registered networks, their probabilities averaged (default: wide + default)",
    source="FER Lab",
)
def build_ensemble(
    num_classes: int,
    input_shape: tuple[int, int, int],
    members: Sequence[str] = ("wide", "default"),
) -> keras.Model:
    """Fresh ``members`` (registry names) combined; trained ones come from :func:`combine`."""
    members = list(members)
    if "ensemble" in members:
        raise ValueError("an ensemble cannot contain an ensemble.")
    networks = [models.create(name, num_classes, input_shape) for name in members]
    return combine(networks, members)
