"""What a built network is made of: one row per layer, for the Train page and the command line."""

from __future__ import annotations

from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class LayerRow:
    """One layer: its name, class, output shape (``"(several)"`` for many outputs) and weights."""

    name: str
    kind: str
    output_shape: str
    parameters: int


def layer_rows(model: keras.Model) -> list[LayerRow]:
    """One :class:`LayerRow` per top-level layer of a built ``model``, in order.

    Example:
        ``[row.kind for row in layer_rows(models.create("default", 7))][:2]``
    """
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):  # a layer used twice, or with several outputs
            shape = "(several)"
        rows.append(LayerRow(layer.name, type(layer).__name__, shape, int(layer.count_params())))
    return rows
