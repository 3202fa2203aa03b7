"""How much work each measurement of ``python -m fertools bench`` does: full and quick (CI) sizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: A section's progress messages (the CLI prints them to stderr).
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    csv_rows: int
    folder_images: int
    #: Timed repeats of each load (after one warm-up load).
    repeats: int
    #: Rows the notebook parsers are timed on; None: the whole file (one run, they are slow).
    baseline_rows: int | None
    #: Timed ``analyze`` calls per frame.
    frames: int
    #: Timed model calls at batch 1; batch 256 gets a tenth of them (at least 3).
    classify_calls: int
    train_warmup: int
    train_steps: int
    #: Synthetic faces per class behind the training batches (the dataset repeats).
    train_faces_per_class: int


FULL = Sizes(
    csv_rows=35_887,
    folder_images=28_709,
    repeats=3,
    baseline_rows=None,
    frames=50,
    classify_calls=100,
    train_warmup=5,
    train_steps=30,
    train_faces_per_class=300,
)
QUICK = Sizes(
    csv_rows=3_000,
    folder_images=1_000,
    repeats=2,
    baseline_rows=300,
    frames=10,
    classify_calls=20,
    train_warmup=1,
    train_steps=3,
    train_faces_per_class=40,
)
#: On a GPU a step takes milliseconds, so full mode times more of them.
GPU_TRAIN_WARMUP, GPU_TRAIN_STEPS = 10, 100
