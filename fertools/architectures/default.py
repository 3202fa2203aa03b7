"""``default``: the architecture of FER Lab's shipped model.

A compact VGG-style network with batch normalisation: four stages of 3x3
convolutions (24, 48, 96, 192 filters; one convolution in each of the first two
stages, since most of the cost of a 48x48 input sits at high resolution, two
in the last two), max pooling and spatial dropout, then global average pooling
and a small dense head: about 42M multiply-adds per face, fewer than the
GR5243 'Improved Model'. It is sized to train at
several hundred images per second on a 2-core CPU and to classify one face in
about a millisecond, while keeping the depth that the 70%-class FER2013 nets
(VGG variants with BN) rely on.
"""

from __future__ import annotations

import keras
from keras import layers

from fertools.models import classifier_output, conv_bn_relu, pixel_input, register


@register(
    "default",
    gradcam_layer="stage4_2_relu",
    description="FER Lab's shipped model: compact VGG-style CNN with batch norm",
    source="FER Lab",
)
def build_default(
    num_classes: int,
    input_shape: tuple[int, int, int],
    widths: tuple[int, ...] = (24, 48, 96, 192),
    convs_per_stage: tuple[int, ...] = (1, 1, 2, 2),
    dense_units: int = 256,
    dropout: float = 0.4,
) -> keras.Model:
    """Build ``default``; ``widths`` and ``convs_per_stage`` give each stage's filters and depth."""
    inputs, x = pixel_input(input_shape)
    for stage, (filters, convs) in enumerate(zip(widths, convs_per_stage), start=1):
        for index in range(1, convs + 1):
            x = conv_bn_relu(x, filters, name=f"stage{stage}_{index}", use_bias=False)  # BN has the bias
        x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        if stage > 1:
            x = layers.SpatialDropout2D(0.1 * (stage - 1), name=f"stage{stage}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(dense_units, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.Activation("relu", name="fc_relu")(x)
    x = layers.Dropout(dropout, name="fc_drop")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="ferlab_default")


@register(
    "wide",
    gradcam_layer="stage4_2_relu",
    description="default's stages at twice the width, two convolutions each (6x the compute)",
    source="FER Lab",
)
def build_wide(num_classes: int, input_shape: tuple[int, int, int], dropout: float = 0.4) -> keras.Model:
    """``default`` widened towards the VGG variants that reach 73% on FER2013.

    48, 96, 192 and 384 filters, two convolutions in every stage: 2.7M parameters and about
    265M multiply-adds per face, against 0.7M and 42M. It trains at 300 images/s in bfloat16
    on the project's 2-core CPU (96 s per FER2013 epoch), so its recipe spans sessions.
    """
    model = build_default(
        num_classes, input_shape, widths=(48, 96, 192, 384), convs_per_stage=(2, 2, 2, 2), dropout=dropout
    )
    model.name = "ferlab_wide"
    return model
