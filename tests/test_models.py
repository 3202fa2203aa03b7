"""The model registry: one forward pass per registered model, plus per-model facts."""

from __future__ import annotations

import numpy as np
import pytest
from keras import layers
from keras.src.utils import file_utils

from fertools.architectures.transfer import WeightsUnavailableError
from fertools.models import count_params, create, list_models


def _random_faces(count: int = 2) -> np.ndarray:
    """``float32`` ``(count, 48, 48, 1)`` raw pixels, drawn as ``uint8``."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, 48, 48, 1), dtype=np.uint8).astype(np.float32)


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_probabilities(name):
    model = create(name, num_classes=7)
    probabilities = np.asarray(model(_random_faces(), training=False))
    assert probabilities.shape == (2, 7)
    assert probabilities.dtype == np.float32
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_num_classes(name):
    model = create(name, num_classes=5)
    assert model.output_shape == (None, 5)


@pytest.mark.parametrize(
    ("name", "expected"),
    # The totals the GR5243 notebook's model.summary() printed.
    [("gr5243_improved", 647_111), ("gr5243_vgg", 528_295)],
)
def test_notebook_parameter_counts_are_exact(name, expected):
    assert count_params(create(name, num_classes=7, input_shape=(48, 48, 1))) == expected


def test_internship_cnn_has_a_164_filter_conv():
    model = create("internship_cnn")
    filters = [layer.filters for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert 164 in filters


def test_mini_xception_is_small():
    assert count_params(create("mini_xception")) < 100_000


def test_frozen_backbone_trains_only_the_head():
    model = create("mobilenet_v2", freeze_backbone=True)
    trainable = {weight.path for weight in model.trainable_weights}
    assert trainable == {"logits/kernel", "logits/bias"}


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
@pytest.mark.parametrize(
    "failure",
    [
        # What keras' get_file raises when urllib cannot reach the host.
        Exception("URL fetch failure on https://example.invalid/w.h5: None -- no network"),
        TimeoutError("The read operation timed out"),  # an OSError
    ],
    ids=["url-fetch-failure", "oserror"],
)
def test_imagenet_weights_offline_give_one_clear_error(monkeypatch, name, failure):
    def fail_download(*args, **kwargs):
        raise failure

    # keras.applications call keras.src.utils.file_utils.get_file, not
    # keras.utils.get_file, so patch it there; the test never touches the network.
    monkeypatch.setattr(file_utils, "get_file", fail_download)
    with pytest.raises(WeightsUnavailableError) as caught:
        create(name, weights="imagenet")
    message = str(caught.value)
    assert message.startswith(f"ImageNet weights for {name} could not be downloaded")
    assert "weights=None" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(KeyError) as caught:
        create("nope")
    for name in list_models():
        assert name in str(caught.value)
