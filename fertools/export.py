"""Taking a trained model away: a zip of the model folder, or a TFLite (LiteRT) file.

The TFLite file takes the same input as the Keras model: ``float32`` raw pixels
0..255 of shape ``(1, 48, 48, 1)`` (the batch size can be resized), because the
rescaling is part of the graph. Class names are not in the file: read them from
the card (``card.json``) that the zip carries.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from fertools.modelcard import CARD_FILE, MODEL_FILE, ModelLoadError, load_model_dir


class ExportError(RuntimeError):
    """The model could not be converted; the message is one sentence for the user."""


def zip_model_dir(model_dir: str | os.PathLike) -> bytes:
    """The bytes of a zip holding ``<folder name>/model.keras`` and ``<folder name>/card.json``.

    Raises :class:`~fertools.modelcard.ModelLoadError` if either file is missing.
    """
    folder = Path(model_dir)
    missing = [name for name in (MODEL_FILE, CARD_FILE) if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"{folder} is not a complete model folder (missing {', '.join(missing)}).", folder
        )
    # A run's model folder is called "model"; name the zip's folder after the run instead.
    top = folder.parent.name if folder.name == "model" and folder.parent.name else folder.name
    buffer = io.BytesIO()
    # .keras files are zips already; storing them again costs nothing and saves time.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(folder / MODEL_FILE, f"{top}/{MODEL_FILE}")
        archive.write(folder / CARD_FILE, f"{top}/{CARD_FILE}")
    return buffer.getvalue()


def _convert_with_keras(model, path: Path) -> None:
    # Keras 3's own route: ExportArchive -> SavedModel -> TFLiteConverter.
    model.export(str(path), format="litert", verbose=False)


def _convert_with_tflite(model, path: Path) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    path.write_bytes(converter.convert())


def export_tflite(model_dir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Convert the model folder ``model_dir`` to a TFLite file at ``out_path``; return the path.

    Tries Keras 3's ``model.export(format="litert")`` first and falls back to
    ``tf.lite.TFLiteConverter.from_keras_model``. The file is written atomically.
    Raises :class:`~fertools.modelcard.ModelLoadError` for a broken folder and
    :class:`ExportError` if neither converter works.
    """
    model, _ = load_model_dir(model_dir)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on a .tflite suffix, so the partial file keeps it.
    partial = out_path.with_name(out_path.stem + ".partial.tflite")
    errors = []
    converters = (("Keras litert export", _convert_with_keras), ("TFLiteConverter", _convert_with_tflite))
    for label, convert in converters:
        try:
            convert(model, partial)
        except Exception as error:  # noqa: BLE001 - converters fail in many ways; report them all
            errors.append(f"{label}: {type(error).__name__}: {error}")
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, out_path)
        return out_path
    raise ExportError(f"the model in {model_dir} could not be converted to TFLite ({'; '.join(errors)}).")


def tflite_file(model_dir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """``out_path``, converted by :func:`export_tflite` unless it is already newer than the model."""
    out_path = Path(out_path)
    model_file = Path(model_dir) / MODEL_FILE
    if out_path.exists() and model_file.exists() and out_path.stat().st_mtime >= model_file.stat().st_mtime:
        return out_path
    return export_tflite(model_dir, out_path)


__all__ = ["ExportError", "export_tflite", "tflite_file", "zip_model_dir"]
