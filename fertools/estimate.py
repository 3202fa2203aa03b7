"""How long training takes: the one duration format, and estimates from speeds measured here.

A run's ``progress.json`` records the faces per second its worker measured; the runs of this
server are the only measurement of this machine's speed, so estimates come from them or not at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def format_duration(seconds: float | None) -> str:
    """``65`` -> ``"1:05"``, ``3725`` -> ``"1:02:05"``; ``"–"`` when unknown (None, NaN, negative)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@dataclass(frozen=True)
class Speed:
    """Training speed measured by one run: faces per second at its architecture and batch size."""

    faces_per_second: float
    run_id: str
    architecture: str
    batch_size: int


def measured_speed(runs: Iterable, architecture: str, batch_size: int) -> Speed | None:
    """The speed measured by the newest run of ``architecture``, at the batch size nearest ``batch_size``.

    ``runs`` are :class:`fertools.jobs.RunInfo` (newest first, as ``jobs.list_runs`` gives them);
    only their ``id``, ``config`` and ``progress`` are read. None when no run of ``architecture``
    measured a speed.
    """
    measured = []
    for order, run in enumerate(runs):
        rate = (run.progress or {}).get("images_per_second")
        if run.config.architecture == architecture and isinstance(rate, int | float) and rate > 0:
            distance = abs(math.log(run.config.batch_size / batch_size))
            measured.append(
                (distance, order, Speed(float(rate), run.id, architecture, run.config.batch_size))
            )
    return min(measured, key=lambda item: item[:2])[2] if measured else None


@dataclass(frozen=True)
class SweepEstimate:
    """What a sweep queues: ``runs`` runs of ``epochs`` epochs in all; ``seconds`` of training or None."""

    runs: int
    epochs: int
    seconds: float | None
    speeds: tuple[Speed, ...] = ()


def estimate_sweep(
    batch_sizes: list[int], epochs: list[int], architecture: str, train_faces: int, runs: Iterable
) -> SweepEstimate:
    """Runs, epochs and training time of a batch size x epochs sweep over ``train_faces`` faces.

    The time counts training only (no start-up, validation or evaluation) and is None unless every
    batch size has a measured speed for ``architecture`` (see :func:`measured_speed`).
    """
    runs = list(runs)
    speeds = [measured_speed(runs, architecture, batch) for batch in batch_sizes]
    total_epochs = len(batch_sizes) * sum(epochs)
    if any(speed is None for speed in speeds):
        return SweepEstimate(len(batch_sizes) * len(epochs), total_epochs, None)
    seconds = sum(train_faces * sum(epochs) / speed.faces_per_second for speed in speeds)
    return SweepEstimate(len(batch_sizes) * len(epochs), total_epochs, seconds, tuple(speeds))


#: Parameters above which a network is slow to train without a GPU: resnet50 (23.6M) takes several
#: minutes an epoch of FER2013 on a 2-core CPU, where the 0.7M default network takes about 73 s.
LARGE_FOR_CPU = 5_000_000


@dataclass(frozen=True)
class RunEstimate:
    """How long one run's training should take here: ``seconds`` (None: no measurement) and from what."""

    seconds: float | None
    speed: Speed | None

    def sentence(self, architecture: str) -> str:
        """One line for the page: the estimate and where it comes from, or why there is none."""
        if self.seconds is None or self.speed is None:
            return (
                f"No {architecture} run has trained on this server yet, so there is no time estimate; "
                "the first run measures its speed."
            )
        return (
            f"About {format_duration(self.seconds)} of training on this server (plus start-up and the final "
            f"evaluation), from run {self.speed.run_id}: {self.speed.faces_per_second:,.0f} faces a second "
            f"at batch {self.speed.batch_size}."
        )


def estimate_run(
    architecture: str, batch_size: int, epochs: int, train_faces: int, runs: Iterable
) -> RunEstimate:
    """The training time of ``epochs`` epochs over ``train_faces`` faces, from :func:`measured_speed`."""
    speed = measured_speed(runs, architecture, batch_size)
    if speed is None:
        return RunEstimate(None, None)
    return RunEstimate(train_faces * epochs / speed.faces_per_second, speed)
