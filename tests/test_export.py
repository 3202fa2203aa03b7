"""fertools.export: the model zip, and a TFLite file that agrees with Keras."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fertools import export
from fertools.modelcard import ModelLoadError, load_model_dir


def _tflite_probabilities(path: Path, faces: np.ndarray) -> np.ndarray:
    """Run a TFLite file face by face, as a phone app would."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for face in faces:
        interpreter.set_tensor(source["index"], face.reshape(1, 48, 48, 1).astype("float32"))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(target["index"])[0])
    return np.stack(rows)


def _check_matches_keras(model_dir: Path, tflite_path: Path, faces: np.ndarray) -> None:
    model, card = load_model_dir(model_dir)
    expected = model.predict(faces.reshape(-1, 48, 48, 1).astype("float32"), verbose=0)
    actual = _tflite_probabilities(tflite_path, faces)
    assert actual.shape == (len(faces), len(card.classes))
    np.testing.assert_allclose(actual, expected, atol=1e-4)


@pytest.mark.slow
def test_tflite_matches_keras(tiny_model_dir, tiny_builtin, tmp_path):
    out = export.export_tflite(tiny_model_dir, tmp_path / "out" / "model.tflite")
    assert out == tmp_path / "out" / "model.tflite" and out.stat().st_size > 10_000
    assert not list(out.parent.glob("*.partial*"))
    _check_matches_keras(tiny_model_dir, out, tiny_builtin.images[:3])


@pytest.mark.slow
def test_tflite_falls_back_to_the_converter(tiny_model_dir, tiny_builtin, tmp_path, monkeypatch):
    def broken(model, path):
        raise ModuleNotFoundError("No module named 'ai_edge_litert'")

    monkeypatch.setattr(export, "_convert_with_keras", broken)
    out = export.export_tflite(tiny_model_dir, tmp_path / "fallback.tflite")
    _check_matches_keras(tiny_model_dir, out, tiny_builtin.images[:2])


def test_tflite_error_names_both_converters(tiny_model_dir, tmp_path, monkeypatch):
    def broken(model, path):
        raise RuntimeError("no converter here")

    monkeypatch.setattr(export, "_convert_with_keras", broken)
    monkeypatch.setattr(export, "_convert_with_tflite", broken)
    with pytest.raises(
        export.ExportError, match="litert export: RuntimeError.*TFLiteConverter: RuntimeError"
    ):
        export.export_tflite(tiny_model_dir, tmp_path / "never.tflite")
    assert not list(tmp_path.glob("*.tflite"))


def test_zip_holds_model_and_card(tiny_model_dir):
    payload = export.zip_model_dir(tiny_model_dir)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = sorted(archive.namelist())
        assert names == [f"{tiny_model_dir.name}/card.json", f"{tiny_model_dir.name}/model.keras"]
        card = json.loads(archive.read(f"{tiny_model_dir.name}/card.json"))
    assert card["classes"][0] == "angry"


def test_zip_of_a_run_is_named_after_the_run(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "20261120-231500-ab12" / "model"
    model_dir.mkdir(parents=True)
    for name in ("model.keras", "card.json"):
        (model_dir / name).write_bytes((tiny_model_dir / name).read_bytes())
    with zipfile.ZipFile(io.BytesIO(export.zip_model_dir(model_dir))) as archive:
        assert all(name.startswith("20261120-231500-ab12/") for name in archive.namelist())


def test_zip_of_an_incomplete_folder_fails(tmp_path):
    (tmp_path / "card.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="missing model.keras"):
        export.zip_model_dir(tmp_path)
