"""Where a LiteRT (TFLite) interpreter comes from, without importing TensorFlow to find out.

The classifier engine (:mod:`fertools.engine`) and the BlazeFace detector
(:mod:`fertools.blazeface`) both run flatbuffers through a LiteRT interpreter
with the XNNPACK CPU kernels. Two packages provide one: the standalone
``ai-edge-litert`` runtime and TensorFlow's ``tf.lite.Interpreter`` (which
announces its move to the former). FER Lab pins TensorFlow and does not install
``ai-edge-litert``, so TensorFlow's is the one that runs; this module is the one
place that knows the choice, and it imports a runtime only when an interpreter
is asked for, so a module that detects faces does not import TensorFlow at
import time.
"""

from __future__ import annotations

import warnings

#: Where a LiteRT interpreter comes from: the standalone package when it is installed, else TensorFlow's.
LITE_RUNTIMES = ("ai-edge-litert", "tensorflow")


def lite_interpreter(model_content: bytes, num_threads: int = 1, runtimes: tuple[str, ...] = ("tensorflow",)):
    """An allocated LiteRT interpreter (XNNPACK CPU kernels) over a flatbuffer; not thread-safe.

    ``runtimes`` are tried in order (see :data:`LITE_RUNTIMES`); a runtime that
    is not installed is skipped. Both run the same kernels. Which one was used
    is the interpreter's class module (``type(interpreter).__module__``).

    Raises:
        ValueError: ``runtimes`` names something other than :data:`LITE_RUNTIMES`.
        RuntimeError: none of ``runtimes`` is installed.
    """
    interpreter = None
    for runtime in runtimes:
        if runtime == "ai-edge-litert":
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                continue
            interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        elif runtime == "tensorflow":
            try:
                import tensorflow as tf
            except ImportError:
                continue
            with warnings.catch_warnings():
                # tf.lite.Interpreter announces its move to the separate ai-edge-litert package.
                warnings.simplefilter("ignore")
                interpreter = tf.lite.Interpreter(model_content=model_content, num_threads=num_threads)
        else:
            raise ValueError(f"runtimes must be among {LITE_RUNTIMES}, not {runtime!r}")
        break
    if interpreter is None:
        raise RuntimeError(f"none of the LiteRT runtimes {runtimes} is installed")
    interpreter.allocate_tensors()
    return interpreter
