"""Grad-CAM on every registered architecture, in a process set up as the app's server is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fertools.architectures.ensemble import member_prefix
from fertools.constants import PROJECT_ROOT
from fertools.gradcam import explained_layer, explained_layers, gradcam, overlay
from fertools.models import create, get_spec, list_models
from fertools.runtime import worker_environment

# NOTE: each architecture runs in a child process started the way the server starts: a native
# abort there (oneDNN's separable-convolution gradient on Intel CPUs) fails one test instead of
# killing pytest, and the test sees exactly the protection the server gets.
_CHILD = textwrap.dedent(
    """
    import json, sys
    from fertools.runtime import onednn_enabled, protect_server
    protect_server()
    import keras
    import numpy as np
    from fertools.gradcam import explained_layers, gradcam
    from fertools.models import create
    keras.utils.set_random_seed(0)
    model = create(sys.argv[1])
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    maps = [gradcam(model, face, architecture=sys.argv[1]) for face in faces]
    # An untrained network can weigh every map of one class negatively (a uniform, all-zero
    # picture); the probabilities' gradients sum to zero, so some class sees a positive map.
    per_class = [gradcam(model, faces[0], c, architecture=sys.argv[1]) for c in range(7)]
    layers = explained_layers(model, sys.argv[1])
    print(json.dumps({
        "onednn": onednn_enabled(),
        "layers": [layer.name for layer in layers],
        "side": min(int(min(layer.output.shape[1:3])) for layer in layers),
        "shapes": [list(m.shape) for m in maps],
        "ranges": [[float(m.min()), float(m.max())] for m in maps],
        "distinct": [int(len(np.unique(np.round(m, 3)))) for m in maps + per_class],
    }))
    """
)


def _registered_layers(name: str) -> list[str]:
    """The layers the registry names for ``name``: one, or one per member of the default ensemble."""
    if name == "ensemble":
        return [
            member_prefix(i, member) + get_spec(member).gradcam_layer
            for i, member in enumerate(("wide", "default"))
        ]
    return [get_spec(name).gradcam_layer]


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_gradcam_explains_every_registered_model_in_a_server_process(name):
    # The worker environment, as the user has it, and then the server's own protection.
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, name],
        cwd=PROJECT_ROOT,
        env={**worker_environment(), "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["onednn"] is False
    assert result["layers"] == _registered_layers(name)
    # A useful map: 6x6 or finer on a 48x48 face, never the input rescaling or a 1x1 map.
    assert result["side"] >= 6
    assert result["shapes"] == [[48, 48]] * 3
    for low, high in result["ranges"]:
        assert 0.0 <= low <= high <= 1.0
    # Not a uniform picture for every class: a 6x6 map upscaled has many distinct values.
    assert max(result["distinct"]) > 10


def test_every_registered_layer_exists_in_its_model():
    for name in list_models():
        assert [layer.name for layer in explained_layers(create(name), name)] == _registered_layers(name)


def test_an_unknown_architecture_falls_back_to_a_useful_map():
    model = create("gr5243_vgg")
    # Without the registry's name: the last map of at least 6x6, not the final 1x1 pool.
    layer = explained_layer(model, architecture=None)
    assert min(layer.output.shape[1:3]) >= 6


def test_gradcam_points_at_the_pixels_that_decide():
    # A model whose "happy" score is the brightness of the top-left quarter: Grad-CAM must
    # light that quarter and not the rest.
    import keras
    from keras import layers

    inputs = keras.Input((48, 48, 1))
    x = layers.Conv2D(1, 1, kernel_initializer="ones", use_bias=False, name="features")(inputs / 255.0)
    mask = np.zeros((1, 48, 48, 1), dtype="float32")
    mask[:, :24, :24] = 1
    x = layers.Lambda(lambda t: t * mask)(x)
    pooled = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(7, kernel_initializer="ones")(pooled)
    model = keras.Model(inputs, layers.Softmax()(logits * np.eye(7, dtype="float32")[3] * 50))
    face = np.full((48, 48), 200, dtype=np.uint8)
    cam = gradcam(model, face, class_index=3)
    assert cam[:20, :20].mean() > 0.9
    assert cam[28:, 28:].max() < 0.1


def test_overlay_is_an_rgb_picture():
    picture = overlay(np.zeros((48, 48), np.uint8), np.ones((48, 48), np.float32), size=96)
    assert picture.shape == (96, 96, 3) and picture.dtype == np.uint8


def test_an_ensemble_explains_each_member_and_averages_their_maps():
    # Member "top" sees only the top half of the face, member "left" only the left half; the
    # ensemble's map is the mean of both members' normalised maps.
    import keras
    from keras import layers

    from fertools.architectures.ensemble import combine

    def half(crop: tuple, name: str) -> keras.Model:
        inputs = keras.Input((48, 48, 1))
        x = layers.Rescaling(1 / 255)(inputs)
        x = layers.Conv2D(1, 1, kernel_initializer="ones", use_bias=False)(x)
        x = layers.ZeroPadding2D(crop, name="masked")(layers.Cropping2D(crop)(x))
        logits = layers.Dense(7, kernel_initializer="zeros")(layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, layers.Softmax()(logits), name=name)
        kernel = np.zeros((1, 7), "float32")
        kernel[0, 3] = 5  # "happy" is the brightness of what the member sees
        model.layers[-2].set_weights([kernel, np.zeros(7, "float32")])
        return model

    both = combine([half(((0, 24), (0, 0)), "top"), half(((0, 0), (0, 24)), "left")], ["top", "left"])
    assert [layer.name for layer in explained_layers(both)] == ["m0_top__masked", "m1_left__masked"]
    cam = gradcam(both, np.full((48, 48), 200, np.uint8), class_index=3)
    assert cam.shape == (48, 48) and 0.0 <= cam.min() <= cam.max() <= 1.0
    quarters = [cam[4:20, 4:20], cam[4:20, 28:44], cam[28:44, 4:20], cam[28:44, 28:44]]
    np.testing.assert_allclose([q.mean() for q in quarters], [1.0, 0.5, 0.5, 0.0], atol=0.05)
