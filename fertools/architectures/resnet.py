"""``resnet``: a small residual network for 48x48 faces, built to differ from ``default``/``wide``.

Ensembles gain most from members that err differently (issue 14), so this one is built
unlike the VGG-style pair: a 3x3 stem at full resolution, then three stages of basic
residual blocks (two 3x3 convolutions and an identity or 1x1-projection shortcut) that
downsample with strided convolutions instead of max pooling, and a global-average head
without a dense layer. 32, 64 and 128 filters at 24x24, 12x12 and 6x6 (one, two and two
blocks): 0.68M parameters, about 50M multiply-adds per face. Residual blocks cost LiteRT
more per multiply-add than plain convolutions (0.17 ms a face here, against 0.12 ms for
``default`` and 0.23 ms with a second block at 24x24), and the third member has to keep
two passes of the whole ensemble within the webcam's 2 ms.
"""

from __future__ import annotations

import keras
from keras import layers

from fertools.models import classifier_output, conv_bn_relu, pixel_input, register


def _basic_block(x: keras.KerasTensor, filters: int, stride: int, name: str) -> keras.KerasTensor:
    """conv-BN-ReLU, conv-BN, plus the shortcut (projected when the shape changes), then ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj_conv")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = conv_bn_relu(x, filters, name=f"{name}_1", use_bias=False, strides=stride)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(name=f"{name}_2_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


@register(
    "resnet",
    gradcam_layer="stage3_2_out",
    description="small residual network: strided basic blocks at 24, 12 and 6 px (about default's compute)",
    source="FER Lab, after He et al. 2016",
)
def build_resnet(
    num_classes: int,
    input_shape: tuple[int, int, int],
    widths: tuple[int, ...] = (32, 64, 128),
    blocks_per_stage: tuple[int, ...] = (1, 2, 2),
    stem_filters: int = 32,
    dropout: float = 0.4,
) -> keras.Model:
    """Build ``resnet``; each stage halves the resolution in its first block."""
    inputs, x = pixel_input(input_shape)
    x = conv_bn_relu(x, stem_filters, name="stem", use_bias=False)
    for stage, (filters, blocks) in enumerate(zip(widths, blocks_per_stage), start=1):
        for index in range(1, blocks + 1):
            x = _basic_block(x, filters, stride=2 if index == 1 else 1, name=f"stage{stage}_{index}")
        if stage > 1:
            x = layers.SpatialDropout2D(0.1 * (stage - 1), name=f"stage{stage}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="head_drop")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="ferlab_resnet")
