"""One registry of model architectures.

Every architecture registers a builder with :func:`register`; training,
evaluation, the app and the command line all build models through
:func:`create`. Every model takes raw pixels (``float32`` or ``uint8`` values in
0..255, shape ``(48, 48, 1)``) and rescales inside its graph, and ends in a
``float32`` softmax so it works under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from fertools.constants import FER2013_CLASSES, INPUT_SHAPE

Builder = Callable[..., keras.Model]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture."""

    name: str
    builder: Builder
    description: str
    source: str
    #: The layer whose maps Grad-CAM explains: the last convolutional map with useful
    #: resolution (6x6 on a 48x48 face), not the 1x1-3x3 maps just before the head.
    gradcam_layer: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str, description: str, source: str = "", gradcam_layer: str = ""
) -> Callable[[Builder], Builder]:
    """Decorator that adds ``builder(num_classes, input_shape, **kwargs)`` to the registry.

    ``gradcam_layer`` names the layer (of the built model) whose feature maps Grad-CAM explains.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, description, source, gradcam_layer)
        return builder

    return decorate


def _ensure_loaded() -> None:
    # Importing the package runs every @register in it.
    import fertools.architectures  # noqa: F401


def list_models() -> list[str]:
    """Names of every registered architecture, ``default`` first."""
    _ensure_loaded()
    return sorted(_REGISTRY, key=lambda name: (name != "default", name))


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` for ``name``; ``KeyError`` with the known names otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models())
        raise KeyError(f"unknown model {name!r}; registered models: {known}") from None


def create(
    name: str,
    num_classes: int = len(FER2013_CLASSES),
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    **kwargs,
) -> keras.Model:
    """Build the registered architecture ``name`` (uncompiled)."""
    spec = get_spec(name)
    return spec.builder(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)


# --- building blocks shared by the architectures --------------------------------


def pixel_input(input_shape: tuple[int, int, int]) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Model input taking raw 0..255 pixels, and its rescaled-to-0..1 tensor."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def conv_bn_relu(
    x: keras.KerasTensor,
    filters: int,
    name: str,
    kernel_size: int = 3,
    use_bias: bool = True,
    strides: int = 1,
) -> keras.KerasTensor:
    """Conv2D (same padding) -> BatchNormalization -> ReLU, with layers named ``{name}_conv/_bn/_relu``."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=use_bias, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def classifier_output(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Dense logits then a float32 softmax (safe under mixed precision)."""
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def count_params(model: keras.Model) -> int:
    """Total parameter count (trainable and not), as ``model.summary()`` reports it."""
    return int(model.count_params())
