"""Inference engines: LiteRT matches the Keras model, is thread-safe, cached, and falls back cleanly."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fertools import engine as engines
from fertools.engine import KerasEngine, LiteEngine, cached_litert_model, make_engine
from fertools.modelcard import MODEL_FILE, load_model_dir


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    model, _ = load_model_dir(tiny_model_dir)
    return model


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(5, 48, 48), dtype=np.uint8)


def test_float32_litert_gives_the_keras_probabilities(tiny_model, faces):
    keras_out = KerasEngine(tiny_model)(faces)
    lite = LiteEngine(engines.litert_model(tiny_model, "float32"))

    out = lite(faces)

    assert out.shape == (5, 7) and out.dtype == np.float32
    np.testing.assert_allclose(out, keras_out, atol=1e-5)
    assert lite.input_shape == (1, 48, 48, 1)


def test_int8_weights_stay_close_to_the_keras_model(tiny_model, faces):
    float_flatbuffer = engines.litert_model(tiny_model, "float32")
    int8_flatbuffer = engines.litert_model(tiny_model, "int8")
    assert len(int8_flatbuffer) < len(float_flatbuffer) / 3  # the weights really are int8

    out = LiteEngine(int8_flatbuffer)(faces)

    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, KerasEngine(tiny_model)(faces), atol=0.05)


def test_each_thread_gets_its_own_interpreter_and_the_same_answers(tiny_model, faces):
    lite = LiteEngine(engines.litert_model(tiny_model, "int8"))
    expected = lite(faces)
    results: dict[int, list[np.ndarray]] = {}
    interpreters = set()

    def work(index: int) -> None:
        results[index] = [lite(faces) for _ in range(20)]
        interpreters.add(id(lite._interpreter()))

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(interpreters) == 4
    for outputs in results.values():
        for out in outputs:
            np.testing.assert_array_equal(out, expected)


def test_conversion_is_cached_by_the_model_file(tiny_model, tiny_model_dir, ferlab_dirs, monkeypatch):
    model_file = tiny_model_dir / MODEL_FILE
    monkeypatch.setattr(engines, "_CONVERTED", {})
    first = cached_litert_model(tiny_model, "int8", model_file)
    assert len(list((ferlab_dirs["cache"] / "litert").glob("*.tflite"))) == 1

    monkeypatch.setattr(engines, "_CONVERTED", {})  # a new process: only the disk cache is left

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(engines, "litert_model", no_conversion)
    assert cached_litert_model(tiny_model, "int8", model_file) == first


def test_a_failed_conversion_falls_back_to_keras(tiny_model, monkeypatch):
    def broken(*args):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(engines, "litert_model", broken)
    with pytest.warns(UserWarning, match="converter exploded"):
        engine = make_engine(tiny_model, "litert")
    assert engine.name == "keras"


def test_unknown_engine_or_precision_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="engine must be one of"):
        make_engine(tiny_model, "onnx")
    with pytest.raises(ValueError, match="precision must be one of"):
        make_engine(tiny_model, "litert", "int4")


def test_one_timing_helper_times_every_call_after_the_warm_up():
    from fertools import timing

    calls = []
    seconds = timing.call_seconds(lambda: calls.append(1), calls=5, warmup=2)
    assert len(calls) == 7 and len(seconds) == 5 and all(s >= 0 for s in seconds)
    assert timing.milliseconds([0.001, 0.002, 0.003]) == {"p50_ms": 2.0, "p90_ms": 2.8, "calls": 3}
    assert timing.seconds([0.5, 1.0, 2.0])["median_s"] == 1.0
    # The engine's own figure goes through it.
    assert engines.one_pass_seconds(lambda faces: faces, 48, calls=3) >= 0


def test_the_litert_runtime_is_found_without_importing_tensorflow():
    import subprocess
    import sys

    code = "import sys, fertools.litert, fertools.blazeface; print('tensorflow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
