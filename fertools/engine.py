"""Inference engines: how a trained Keras model is run on a handful of faces.

A webcam frame holds one to a few faces, so what matters there is the latency
of a *small* batch, and at batch size 1 TensorFlow's graph runtime is dominated
by dispatch overhead (about 0.7 ms for an empty function on a 2-core CPU, and
3-4 ms for the shipped model). Two engines share one interface,
``engine(faces) -> probabilities``:

* :class:`KerasEngine` calls the Keras model through one compiled
  ``tf.function`` (no ``model.predict``); best for large batches.
* :class:`LiteEngine` converts the same model, in memory, to a LiteRT
  (TFLite) flatbuffer and runs it with the XNNPACK CPU kernels: a few tenths of
  a millisecond per face. ``precision="int8"`` stores the weights as int8
  (dynamic-range quantisation; activations stay float), ``"float32"`` keeps
  them exact. The conversion takes a few seconds, so its result is cached on
  disk, keyed by the model file's content. The interpreter comes from
  :mod:`fertools.litert`.

Both take raw ``uint8`` faces ``(N, size, size)``: the rescaling is part of the
model, so preprocessing is the same for training and for every engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import warnings
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from fertools import timing
from fertools.constants import cache_dir
from fertools.litert import LITE_RUNTIMES, lite_interpreter
from fertools.views import average_views

ENGINES = ("keras", "litert")
PRECISIONS = ("int8", "float32")


class Engine(Protocol):
    """Runs a classifier: ``uint8`` faces ``(N, size, size)`` to ``float32`` probabilities ``(N, classes)``."""

    name: str

    def __call__(self, faces: np.ndarray) -> np.ndarray: ...


class KerasEngine:
    """The Keras model through one compiled ``tf.function`` with a fixed signature."""

    name = "keras"

    def __init__(self, model: keras.Model):
        size = int(model.input_shape[1])
        signature = [tf.TensorSpec([None, size, size, 1], tf.float32)]
        self._call = tf.function(lambda x: model(x, training=False), input_signature=signature)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        x = tf.convert_to_tensor(faces[..., None], dtype=tf.float32)
        return self._call(x).numpy()


def litert_model(model: keras.Model, precision: str = "int8") -> bytes:
    """The LiteRT (TFLite) flatbuffer of ``model``, with ``int8`` or ``float32`` weights."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    # Keras prints the temporary SavedModel's signature; keep stdout clean (``--json`` output).
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


#: Flatbuffers converted in this process, by cache file name: a model loaded again is not reconverted.
_CONVERTED: dict[str, bytes] = {}


def cached_litert_model(model: keras.Model, precision: str, model_file: Path | None) -> bytes:
    """:func:`litert_model`, from memory or the on-disk cache when ``model_file`` was converted before."""
    if model_file is None or not model_file.is_file():
        return litert_model(model, precision)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()[:24]
    name = f"{digest}-{precision}-tf{tf.__version__}.tflite"
    cached = cache_dir() / "litert" / name
    if name in _CONVERTED:
        return _CONVERTED[name]
    if cached.is_file():
        _CONVERTED[name] = cached.read_bytes()
        return _CONVERTED[name]
    flatbuffer = _CONVERTED[name] = litert_model(model, precision)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(flatbuffer)
        os.replace(partial, cached)
    except OSError:
        pass  # a read-only cache only costs the conversion next time
    return flatbuffer


class LiteEngine:
    """A LiteRT interpreter (XNNPACK) per thread, one face per invocation.

    Interpreters are not thread-safe, and a hosted app classifies from many
    sessions' threads at once, so every thread gets its own interpreter over
    the shared flatbuffer (a few hundred kB each). Faces go through one at a
    time: at batch size 1 the input never has to be resized and reallocated.
    """

    name = "litert"

    def __init__(self, flatbuffer: bytes, num_threads: int = 1):
        self.flatbuffer, self.num_threads = flatbuffer, num_threads
        self._local = threading.local()
        first = self._interpreter()
        detail = first.get_input_details()[0]
        self.input_shape = tuple(int(n) for n in detail["shape"])
        self.num_classes = int(first.get_output_details()[0]["shape"][-1])

    @classmethod
    def from_model(
        cls,
        model: keras.Model,
        precision: str = "int8",
        model_file: Path | None = None,
        num_threads: int = 1,
    ) -> LiteEngine:
        """Convert ``model`` (cached by ``model_file``'s content when given)."""
        return cls(cached_litert_model(model, precision, model_file), num_threads)

    def _interpreter(self) -> tf.lite.Interpreter:
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            interpreter = lite_interpreter(self.flatbuffer, self.num_threads)
            self._local.interpreter = interpreter
            self._local.input = interpreter.get_input_details()[0]["index"]
            self._local.output = interpreter.get_output_details()[0]["index"]
        return interpreter

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter()
        local = self._local
        out = np.empty((len(faces), self.num_classes), dtype=np.float32)
        x = faces.astype(np.float32)[..., None]
        for index in range(len(faces)):
            interpreter.set_tensor(local.input, x[index : index + 1])
            interpreter.invoke()
            out[index] = interpreter.get_tensor(local.output)[0]
        return out


#: The per-face budget of the webcam path: mirror averaging is on by default only where two
#: passes fit in it on this machine.
FACE_BUDGET_SECONDS = 0.002


def one_pass_seconds(engine: Engine, size: int, calls: int = 15) -> float:
    """Median seconds of one ``engine`` call on one face (after a warm-up call)."""
    face = np.full((1, size, size), 128, dtype=np.uint8)
    return timing.median_seconds(lambda: engine(face), calls, warmup=1)


def mirror_average(engine: Engine, faces: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: the mean of ``engine`` on ``faces`` and on their mirror images."""
    return average_views(engine, faces, "mirror")


def measure_engine(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    precision: str = "int8",
    calls: int = 500,
) -> dict:
    """The LiteRT engine against the Keras model on labelled faces: accuracy, agreement, ms per face.

    Also with flip test-time augmentation (each face and its mirror image, averaged),
    which the :class:`~fertools.recognize.Recognizer` does by default on this engine, and with
    ten crops (:mod:`fertools.views`), the Photo page's stronger mode.
    What a model card records about inference, measured, not assumed.
    """
    from fertools.modelcard import hardware_description

    lite = LiteEngine(litert_model(model, precision))
    reference = KerasEngine(model)
    expected = np.concatenate([reference(images[i : i + 256]) for i in range(0, len(images), 256)])
    predicted = lite(images)
    mirrored = (predicted + lite(images[:, :, ::-1])) / 2  # mirror_average, reusing ``predicted``
    ten_crop = average_views(lite, images, "ten_crop")
    one = images[:1]

    one_pass = timing.milliseconds(timing.call_seconds(lambda: lite(one), calls, warmup=20))
    two_passes = timing.milliseconds(timing.call_seconds(lambda: mirror_average(lite, one), calls, warmup=20))
    twelve = timing.milliseconds(
        timing.call_seconds(lambda: average_views(lite, one, "ten_crop"), max(20, calls // 5), warmup=5)
    )
    return {
        "engine": lite.name,
        "precision": precision,
        "accuracy": float((predicted.argmax(axis=1) == labels).mean()),
        "keras_accuracy": float((expected.argmax(axis=1) == labels).mean()),
        "agreement": float((predicted.argmax(axis=1) == expected.argmax(axis=1)).mean()),
        "max_probability_difference": float(np.abs(predicted - expected).max()),
        "ms_per_face_p50": one_pass["p50_ms"],
        "ms_per_face_p90": one_pass["p90_ms"],
        "accuracy_flip_tta": float((mirrored.argmax(axis=1) == labels).mean()),
        "ms_per_face_flip_tta_p50": two_passes["p50_ms"],
        "accuracy_ten_crop": float((ten_crop.argmax(axis=1) == labels).mean()),
        "ms_per_face_ten_crop_p50": twelve["p50_ms"],
        "hardware": hardware_description(),
    }


def usable_engine(
    model: keras.Model,
    engine: str = "litert",
    precision: str = "int8",
    model_file: Path | None = None,
) -> tuple[Engine, str | None]:
    """The engine called ``engine`` for ``model``, and why it is another one (None when it is not).

    ``litert`` becomes ``keras`` when the conversion or the interpreter fails (an
    operation LiteRT lacks, a broken converter); the reason is
    ``"<error type>: <message>"``, for logs. Raises ``ValueError`` for an unknown
    ``engine`` or ``precision``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if engine == "litert":
        try:
            return LiteEngine.from_model(model, precision, model_file), None
        except Exception as error:  # noqa: BLE001 - any converter failure: the Keras path still works
            return KerasEngine(model), f"{type(error).__name__}: {error}"
    return KerasEngine(model), None


def make_engine(
    model: keras.Model,
    engine: str = "litert",
    precision: str = "int8",
    model_file: Path | None = None,
) -> Engine:
    """:func:`usable_engine`, warning (``UserWarning``) when ``litert`` fell back to ``keras``."""
    made, reason = usable_engine(model, engine, precision, model_file)
    if reason is not None:
        warnings.warn(f"LiteRT conversion failed, using the Keras engine: {reason}", stacklevel=2)
    return made


__all__ = [
    "ENGINES",
    "PRECISIONS",
    "Engine",
    "KerasEngine",
    "LITE_RUNTIMES",
    "LiteEngine",
    "cached_litert_model",
    "lite_interpreter",
    "litert_model",
    "make_engine",
    "measure_engine",
    "mirror_average",
    "one_pass_seconds",
    "usable_engine",
]
