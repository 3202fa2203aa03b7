"""Ensembles: trained networks combined into one model file, measured and written with a card."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from fertools import cli, models
from fertools.architectures.ensemble import combine, member_prefixes
from fertools.constants import FER2013_CLASSES, INPUT_SHAPE
from fertools.modelcard import ModelCard, card_markdown, load_model_dir, read_card, save_model_dir
from fertools.publish import ExportError, publish_ensemble


def _faces(count: int = 6) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, 48, 48, 1), dtype=np.uint8).astype("float32")


def _member(folder: Path, architecture: str, seed: int, classes=FER2013_CLASSES, **kwargs) -> Path:
    """A model folder holding an untrained ``architecture`` network with its own random weights."""
    keras.utils.set_random_seed(seed)
    model = models.create(architecture, len(classes), **kwargs)
    card = ModelCard(
        name=folder.name,
        architecture=architecture,
        classes=list(classes),
        input_shape=list(INPUT_SHAPE),
        training={"command": f"made for a test ({architecture})", "seconds": 12.5, "epochs_run": 3},
    )
    return save_model_dir(model, card, folder)


def test_an_ensemble_gives_the_mean_of_its_members_and_survives_safe_mode(tmp_path):
    a = models.create("default", widths=(8, 8, 8, 8))
    b = models.create("mini_xception")
    both = combine([a, b], ["default", "mini_xception"])
    assert member_prefixes(both) == [("m0_default__", "default"), ("m1_mini_xception__", "mini_xception")]
    assert both.count_params() == a.count_params() + b.count_params()
    faces = _faces()
    expected = (a.predict(faces, verbose=0) + b.predict(faces, verbose=0)) / 2
    np.testing.assert_allclose(both.predict(faces, verbose=0), expected, atol=1e-6)
    # One flat graph of standard layers: the file loads with safe_mode and predicts the same.
    both.save(tmp_path / "both.keras")
    again = keras.models.load_model(tmp_path / "both.keras", safe_mode=True, compile=False)
    assert not any(isinstance(layer, keras.Model) for layer in again.layers)
    np.testing.assert_allclose(again.predict(faces, verbose=0), expected, atol=1e-6)


def test_the_registry_rebuilds_the_same_graph_so_its_weights_fit():
    # What album fine-tuning does with an ensemble's card: rebuild it from the registry and give
    # it the trained file's weights.
    trained = combine([models.create("wide"), models.create("default")], ["wide", "default"])
    fresh = models.create("ensemble", members=("wide", "default"))
    assert [layer.name for layer in fresh.layers] == [layer.name for layer in trained.layers]
    fresh.set_weights(trained.get_weights())
    faces = _faces(2)
    np.testing.assert_allclose(fresh.predict(faces, verbose=0), trained.predict(faces, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        (["default"], "at least two networks"),
        (["default", "ensemble"], "cannot contain an ensemble"),
    ],
)
def test_the_registry_refuses_impossible_ensembles(networks, message):
    with pytest.raises(ValueError, match=message):
        models.create("ensemble", members=networks)


def test_networks_of_different_class_counts_cannot_be_combined():
    with pytest.raises(ValueError, match="disagree"):
        combine([models.create("default", 7), models.create("default", 5)], ["default", "default"])


@pytest.mark.slow
def test_publish_ensemble_writes_a_measured_card_that_loads(tmp_path, tiny_builtin):
    one = _member(tmp_path / "one", "default", seed=1, widths=(8, 8, 8, 8))
    two = _member(tmp_path / "two", "mini_xception", seed=2)
    out = tmp_path / "both"
    metrics = publish_ensemble([one, two], tiny_builtin, out, command="python -m fertools ensemble ...")
    model, card = load_model_dir(out)
    assert card.architecture == "ensemble"
    assert card.training["config"] == {
        "architecture": "ensemble",
        "model_kwargs": {"members": ["default", "mini_xception"]},
    }
    members = card.training["members"]
    assert [m["architecture"] for m in members] == ["default", "mini_xception"]
    assert card.training["seconds"] == 25.0
    # Each member's figure is its own, on the same validation faces as the ensemble's.
    val = tiny_builtin.subset("val")
    for member, path in zip(members, (one, two)):
        network, _ = load_model_dir(path)
        own = np.mean(network.predict(val.images, verbose=0).argmax(1) == val.labels)
        assert member["accuracy"] == pytest.approx(own)
    probabilities = model.predict(val.images, verbose=0)
    assert card.metrics["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == val.labels))
    assert card.metrics["n"] == len(val) and metrics["accuracy"] == card.metrics["accuracy"]
    assert card.inference["engine"] == "litert" and card.inference["ms_per_face_p50"] > 0
    text = card_markdown(read_card(out))
    assert "Ensemble of `default` (3 epochs" in text and "`mini_xception`" in text


def test_publish_ensemble_refuses_members_that_disagree(tmp_path, tiny_builtin):
    one = _member(tmp_path / "one", "default", seed=1, widths=(8, 8, 8, 8))
    other = _member(tmp_path / "other", "default", seed=2, classes=("a", "b", "c"), widths=(8, 8, 8, 8))
    with pytest.raises(ExportError, match="do not classify the same classes"):
        publish_ensemble([one, other], tiny_builtin, tmp_path / "out")
    with pytest.raises(ExportError, match="at least two"):
        publish_ensemble([one], tiny_builtin, tmp_path / "out")
    with pytest.raises(ExportError, match="listed twice"):
        publish_ensemble([one, tmp_path / "one" / "."], tiny_builtin, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="is one of the members"):
        publish_ensemble([one, other], tiny_builtin, one)
    (tmp_path / "a file").write_text("")
    same = _member(tmp_path / "same", "default", seed=3, widths=(8, 8, 8, 8))
    with pytest.raises(ExportError, match="is a file, not a folder"):
        publish_ensemble([one, same], tiny_builtin, tmp_path / "a file")
    assert load_model_dir(one)[1].architecture == "default"  # the member is untouched


def test_the_cli_says_in_one_line_why_it_cannot_combine(tmp_path, capsys):
    one = _member(tmp_path / "one", "default", seed=1, widths=(8, 8, 8, 8))
    other = _member(tmp_path / "other", "default", seed=2, classes=("a", "b", "c"), widths=(8, 8, 8, 8))
    code = cli.main(["ensemble", str(one), str(other), "--data", "builtin", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("ensemble: ") and "do not classify the same classes" in err[0]
    code = cli.main(
        ["ensemble", str(one), str(tmp_path / "nothing"), "--data", "builtin", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a model folder" in err[0]
