"""Transfer learning from ``keras.applications`` backbones (the GR5243 notebook).

The grayscale face is stacked to three channels, optionally upscaled, scaled the
way the backbone was trained (in the graph, so the model still takes raw
0..255 pixels) and passed through the backbone without its top; a global
average pool, dropout and the usual softmax head follow.

ImageNet weights are opt-in (``weights="imagenet"``) because they need a
download; without network access that raises :class:`WeightsUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from fertools.models import classifier_output, pixel_input, register

#: ImageNet BGR channel means that ``resnet50.preprocess_input`` (caffe mode) subtracts.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


class WeightsUnavailableError(Exception):
    """Pretrained weights were asked for but could not be downloaded."""


def _build_backbone(
    name: str, factory: Callable[..., keras.Model], x: keras.KerasTensor, weights: str | None
) -> keras.Model:
    """``factory(include_top=False, input_tensor=x)``: the backbone's layers join the model's graph.

    Built on the model's own tensor rather than nested as one layer, so every backbone layer is a
    layer of the finished model (Grad-CAM can read an inner feature map by its name).

    Raises:
        WeightsUnavailableError: ``weights="imagenet"`` and the download failed.
    """
    try:
        return factory(include_top=False, weights=weights, input_tensor=x)
    except Exception as error:
        # keras.utils.get_file turns urllib's URLError/HTTPError into a bare
        # Exception("URL fetch failure on ..."); socket and disk errors stay OSError.
        fetch_failed = isinstance(error, OSError) or str(error).startswith("URL fetch failure")
        if weights == "imagenet" and fetch_failed:
            raise WeightsUnavailableError(
                f"ImageNet weights for {name} could not be downloaded (no network?); "
                "use weights=None or place the file in ~/.keras/models"
            ) from None
        raise


def _to_backbone_input(x, input_shape: tuple[int, int, int], image_size: int):
    """Upscale a 0..1 face to ``image_size`` and stack gray to three channels."""
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 (the backbones' minimum), not {image_size}")
    if image_size != input_shape[0] or image_size != input_shape[1]:
        x = layers.Resizing(image_size, image_size, name="upscale")(x)
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    return x


def _head(x, num_classes: int, dropout: float):
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return classifier_output(x, num_classes)


def _freeze(backbone: keras.Model, freeze_backbone: bool) -> None:
    """Freeze the backbone's layers (those with weights) when ``freeze_backbone``."""
    # NOTE: a frozen BatchNormalization runs in inference mode, so fine-tuning the head does not
    # wreck the pretrained statistics (Keras' transfer-learning guide).
    for layer in backbone.layers:
        if layer.weights:
            layer.trainable = not freeze_backbone


@register(
    "mobilenet_v2",
    gradcam_layer="block_6_expand_relu",
    description="MobileNetV2 backbone on gray stacked to RGB, GAP head.",
    source="Sandler et al. 2018; used as in the Columbia GR5243 course notebook",
)
def mobilenet_v2(
    num_classes: int,
    input_shape: tuple[int, int, int],
    image_size: int = 48,
    weights: str | None = None,
    freeze_backbone: bool = False,
    dropout: float = 0.2,
) -> keras.Model:
    """MobileNetV2 without its top, with a GAP + dropout + softmax head.

    Pixels are rescaled to [-1, 1] in the graph, as MobileNetV2's
    ``preprocess_input`` does.

    Args:
        num_classes: size of the softmax.
        input_shape: ``(height, width, 1 or 3)`` of the raw-pixel input.
        image_size: side the face is resized to before the backbone; at least
            32. 48 (no resize) is fastest; ImageNet weights exist for 96..224.
        weights: ``None`` (random init, works offline), ``"imagenet"`` or a
            path to a weights file.
        freeze_backbone: train only the head.
        dropout: rate before the classifier.

    Returns:
        Model mapping ``float32`` ``(N, *input_shape)`` pixels in 0..255 to
        ``float32`` ``(N, num_classes)`` probabilities.

    Raises:
        WeightsUnavailableError: ``weights="imagenet"`` and the download failed.
        ValueError: ``image_size`` below 32.
    """
    inputs, x = pixel_input(input_shape)
    x = _to_backbone_input(x, input_shape, image_size)
    x = layers.Rescaling(2.0, offset=-1.0, name="to_symmetric")(x)  # 0..1 -> -1..1
    backbone = _build_backbone("mobilenet_v2", keras.applications.MobileNetV2, x, weights)
    _freeze(backbone, freeze_backbone)
    return keras.Model(inputs, _head(backbone.output, num_classes, dropout), name="mobilenet_v2")


@register(
    "resnet50",
    gradcam_layer="conv3_block4_out",
    description="ResNet50 backbone on gray stacked to RGB, GAP head.",
    source="He et al. 2016; used as in the Columbia GR5243 course notebook",
)
def resnet50(
    num_classes: int,
    input_shape: tuple[int, int, int],
    image_size: int = 48,
    weights: str | None = None,
    freeze_backbone: bool = False,
    dropout: float = 0.2,
) -> keras.Model:
    """ResNet50 without its top, with a GAP + dropout + softmax head.

    Pixels get ``keras.applications.resnet50.preprocess_input``'s caffe-style
    scaling in the graph: back to 0..255, minus the ImageNet BGR channel means.
    The RGB -> BGR swap it also does is a no-op on gray stacked three times.

    Args:
        num_classes: size of the softmax.
        input_shape: ``(height, width, 1 or 3)`` of the raw-pixel input
            (a 3-channel input is assumed to be BGR already).
        image_size: side the face is resized to before the backbone; at least 32.
        weights: ``None`` (random init, works offline), ``"imagenet"`` or a
            path to a weights file.
        freeze_backbone: train only the head.
        dropout: rate before the classifier.

    Returns:
        Model mapping ``float32`` ``(N, *input_shape)`` pixels in 0..255 to
        ``float32`` ``(N, num_classes)`` probabilities.

    Raises:
        WeightsUnavailableError: ``weights="imagenet"`` and the download failed.
        ValueError: ``image_size`` below 32.
    """
    inputs, x = pixel_input(input_shape)
    x = _to_backbone_input(x, input_shape, image_size)
    offset = [-mean for mean in _CAFFE_BGR_MEAN]
    x = layers.Rescaling(255.0, offset=offset, name="caffe_preprocess")(x)
    backbone = _build_backbone("resnet50", keras.applications.ResNet50, x, weights)
    _freeze(backbone, freeze_backbone)
    return keras.Model(inputs, _head(backbone.output, num_classes, dropout), name="resnet50")
