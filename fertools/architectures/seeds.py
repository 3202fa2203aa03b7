"""Small CNNs trained from scratch, reconstructed from the project's sources.

Each builder takes raw 0..255 pixels (see :func:`fertools.models.pixel_input`)
and returns an uncompiled ``keras.Model`` ending in a ``float32`` softmax.
Where a source gives a parameter count, the reconstruction matches it exactly
(``num_classes=7``, input ``(48, 48, 1)``); ``tests/test_models.py`` checks it.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

from fertools.models import classifier_output, conv_bn_relu, pixel_input, register


@register(
    "internship_cnn",
    gradcam_layer="block4_relu",
    description="2019-era Keras CNN of an internship report, with a 164-filter conv.",
    source="Internship report on FER2013, 'Figure 21' (reconstructed from its text)",
)
def internship_cnn(num_classes: int, input_shape: tuple[int, int, int], dropout: float = 0.25) -> keras.Model:
    """The internship report's CNN (its 'Figure 21'), reconstructed.

    We do not have the figure itself, only its description: a Keras
    ``Sequential`` CNN of stacked Conv2D + BatchNormalization + ReLU blocks with
    max pooling and dropout, one of the convolutions having 164 filters, then
    Flatten, a Dense layer, dropout and a softmax. The layer widths below are a
    plausible 2019-era reading of that description, not a copy; about 1.5M
    parameters for 7 classes.

    Layers (48x48 input, same padding, every block ends MaxPool 2x2 + Dropout):

    * Conv 64 3x3 -> 24x24
    * Conv 128 5x5 -> 12x12
    * Conv 164 3x3 -> 6x6
    * Conv 256 3x3 -> 3x3
    * Flatten (2304) -> Dense 256 + BN + ReLU + Dropout 0.5
      -> Dense 512 + BN + ReLU + Dropout 0.5 -> Dense ``num_classes`` softmax

    Args:
        num_classes: size of the softmax.
        input_shape: ``(height, width, channels)`` of the raw-pixel input.
        dropout: rate after each convolution block (the dense layers use 0.5).

    Returns:
        Model mapping ``float32`` ``(N, *input_shape)`` pixels in 0..255 to
        ``float32`` ``(N, num_classes)`` probabilities.
    """
    inputs, x = pixel_input(input_shape)
    for index, (filters, kernel_size) in enumerate([(64, 3), (128, 5), (164, 3), (256, 3)]):
        name = f"block{index + 1}"
        x = conv_bn_relu(x, filters, name, kernel_size=kernel_size)
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate([256, 512]):
        name = f"fc{index + 1}"
        x = layers.Dense(units, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.Dropout(0.5, name=f"{name}_dropout")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="internship_cnn")


@register(
    "gr5243_improved",
    gradcam_layer="block4_bn",
    description="GR5243 notebook's 'Improved Model': 4 conv+BN blocks, 647,111 params.",
    source="Columbia GR5243 course notebook, 'Improved Model' (reconstructed)",
)
def gr5243_improved(
    num_classes: int, input_shape: tuple[int, int, int], dropout: float = 0.25
) -> keras.Model:
    """The GR5243 notebook's 'Improved Model', reconstructed to its exact size.

    We do not have the notebook, only its ``model.summary()`` total:
    647,111 parameters. These widths, in the notebook's course style
    (``Conv2D(..., activation="relu")`` then ``BatchNormalization``), give
    exactly that count with ``num_classes=7``:

    * 4 blocks of Conv 3x3 (same, ReLU) + BN + MaxPool 2x2 + Dropout,
      with 32, 128, 128, 256 filters: 48 -> 24 -> 12 -> 6 -> 3
    * GlobalAveragePooling (256)
    * Dense 512 ReLU + Dropout 0.5 -> Dense 64 ReLU -> Dense ``num_classes``

    Count: convs 320 + 36,992 + 147,584 + 295,168, BN 4 x 544 channels
    (2,176), Dense 131,584 + 32,832 + 455 = 647,111. Seven classes make the
    total odd: every other layer has an even count, the last Dense adds
    ``7 * 64 + 7``.

    Args:
        num_classes: size of the softmax.
        input_shape: ``(height, width, channels)`` of the raw-pixel input.
        dropout: rate after each convolution block.

    Returns:
        Model mapping ``float32`` ``(N, *input_shape)`` pixels in 0..255 to
        ``float32`` ``(N, num_classes)`` probabilities.
    """
    inputs, x = pixel_input(input_shape)
    for index, filters in enumerate([32, 128, 128, 256]):
        name = f"block{index + 1}"
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.5, name="fc1_dropout")(x)
    x = layers.Dense(64, activation="relu", name="fc2")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="gr5243_improved")


@register(
    "gr5243_vgg",
    gradcam_layer="block4_conv4_bn",
    description="GR5243 notebook's small VGG19-style CNN with BN (528,295 params).",
    source="Columbia GR5243 course notebook, VGG19-style model (reconstructed)",
)
def gr5243_vgg(num_classes: int, input_shape: tuple[int, int, int], dropout: float = 0.5) -> keras.Model:
    """The GR5243 notebook's VGG19-style model, reconstructed to its exact size.

    VGG19's layout (blocks of 2, 2, 4, 4, 4 convolutions 3x3, a max pool after
    each block, three fully connected layers) with small widths for 48x48
    faces. We do not have the notebook, only its ``model.summary()`` total:
    528,295 parameters. These widths give exactly that count with
    ``num_classes=7``:

    * block 1: 2 x Conv 32 (+BN), pool -> 24x24
    * block 2: 2 x Conv 32 (+BN), pool -> 12x12
    * block 3: 4 x Conv 48 (+BN), pool -> 6x6
    * block 4: 4 x Conv 64 (+BN), pool -> 3x3
    * block 5: 4 x Conv 64 (+BN), pool -> 1x1
    * GlobalAveragePooling (64; the same as Flatten on the 1x1 map)
    * Dense 1024 ReLU + Dropout -> Dense 64 ReLU + Dropout -> Dense 32 ReLU
      -> Dense ``num_classes``

    Count: 16 convs 3x3 with bias 390,496, BN 4 x 832 channels (3,328),
    Dense 66,560 + 65,600 + 2,080 + 231 = 528,295.

    Args:
        num_classes: size of the softmax.
        input_shape: ``(height, width, channels)`` of the raw-pixel input;
            height and width at least 32 (five 2x2 pools).
        dropout: rate after the first two dense layers.

    Returns:
        Model mapping ``float32`` ``(N, *input_shape)`` pixels in 0..255 to
        ``float32`` ``(N, num_classes)`` probabilities.
    """
    inputs, x = pixel_input(input_shape)
    blocks = [(2, 32), (2, 32), (4, 48), (4, 64), (4, 64)]
    for block, (num_convs, filters) in enumerate(blocks, start=1):
        for conv in range(1, num_convs + 1):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(1024, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    x = layers.Dense(64, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="fc2_dropout")(x)
    x = layers.Dense(32, activation="relu", name="fc3")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="gr5243_vgg")


@register(
    "mini_xception",
    gradcam_layer="module128_bn2",
    description="mini-Xception of Arriaga et al. 2017 (the `fer` package's model).",
    source="Arriaga, Ploeger, Valdenegro-Toro 2017, 'Real-time Convolutional Neural "
    "Networks for Emotion and Gender Classification' (oarriaga/face_classification)",
)
def mini_xception(num_classes: int, input_shape: tuple[int, int, int], l2: float = 0.01) -> keras.Model:
    """mini-Xception (Arriaga et al. 2017), as in ``oarriaga/face_classification``.

    * stem: 2 x Conv 8 3x3 (valid, no bias) + BN + ReLU: 48 -> 44
    * 4 residual modules with 16, 32, 64, 128 filters, each
      ``SeparableConv -> BN -> ReLU -> SeparableConv -> BN -> MaxPool 3x3/2``
      added to a ``Conv 1x1 /2 -> BN`` shortcut: 44 -> 22 -> 11 -> 6 -> 3
    * Conv ``num_classes`` 3x3 -> GlobalAveragePooling -> softmax (no Dense)

    The original scales pixels to [-1, 1] before the model; here that happens
    in the graph. About 58k parameters for 7 classes.

    Args:
        num_classes: size of the softmax.
        input_shape: ``(height, width, channels)`` of the raw-pixel input.
        l2: L2 penalty on the stem kernels, as in the original (0.01);
            0 for none.

    Returns:
        Model mapping ``float32`` ``(N, *input_shape)`` pixels in 0..255 to
        ``float32`` ``(N, num_classes)`` probabilities.
    """
    regularizer = regularizers.L2(l2) if l2 else None
    inputs, x = pixel_input(input_shape)
    x = layers.Rescaling(2.0, offset=-1.0, name="to_symmetric")(x)  # 0..1 -> -1..1
    for index in (1, 2):
        x = layers.Conv2D(
            8,
            3,
            use_bias=False,
            kernel_regularizer=regularizer,
            name=f"stem_conv{index}",
        )(x)
        x = layers.BatchNormalization(name=f"stem_bn{index}")(x)
        x = layers.Activation("relu", name=f"stem_relu{index}")(x)

    # NOTE: the original also passes kernel_regularizer to SeparableConv2D, which
    # Keras 2 accepted and ignored (it has depthwise/pointwise kernels), so the
    # separable convolutions stay unregularized here too.
    for filters in (16, 32, 64, 128):
        name = f"module{filters}"
        residual = layers.Conv2D(
            filters,
            1,
            strides=2,
            padding="same",
            use_bias=False,
            name=f"{name}_shortcut",
        )(x)
        residual = layers.BatchNormalization(name=f"{name}_shortcut_bn")(residual)
        for index in (1, 2):
            x = layers.SeparableConv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                name=f"{name}_sepconv{index}",
            )(x)
            x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
            if index == 1:
                x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
        x = layers.Add(name=f"{name}_add")([x, residual])

    x = layers.Conv2D(num_classes, 3, padding="same", name="class_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    # No Dense head: the class convolution already gives one map per class.
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mini_xception")
