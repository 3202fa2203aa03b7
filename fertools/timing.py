"""How FER Lab times a call: the seconds of repeated calls after a warm-up, and their summaries.

One helper for every measurement (the inference engine's per-face time on a model card, the
Recognizer's mirror-averaging budget, ``python -m fertools bench``), so every figure FER Lab
reports is taken the same way: ``time.perf_counter`` around each call, the first ``warmup`` calls
untimed (graph tracing, interpreter allocation, caches). No TensorFlow.

Example::

    from fertools.timing import call_seconds, milliseconds

    seconds = call_seconds(lambda: engine(face), calls=100, warmup=3)
    milliseconds(seconds)  # {"p50_ms": 0.31, "p90_ms": 0.33, "calls": 100}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def call_seconds(function: Callable[[], object], calls: int, warmup: int = 0) -> list[float]:
    """The seconds of each of ``calls`` calls of ``function``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def median_seconds(function: Callable[[], object], calls: int, warmup: int = 1) -> float:
    """The median seconds of one call of ``function`` (see :func:`call_seconds`)."""
    return float(np.median(call_seconds(function, calls, warmup)))


def seconds(samples: Sequence[float]) -> dict:
    """``median_s``, ``p90_s``, ``min_s`` (rounded to microseconds) and ``repeats`` of ``samples``."""
    return {
        "median_s": round(float(np.median(samples)), 6),
        "p90_s": round(float(np.percentile(samples, 90)), 6),
        "min_s": round(float(np.min(samples)), 6),
        "repeats": len(samples),
    }


def milliseconds(samples: Sequence[float]) -> dict:
    """``p50_ms``, ``p90_ms`` (in ms, rounded to microseconds) and ``calls`` of ``samples`` in seconds."""
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "calls": len(samples),
    }


def per_second(count: float, elapsed: float) -> float:
    """``count`` per second over ``elapsed`` seconds, to one decimal."""
    return round(count / max(elapsed, 1e-9), 1)
