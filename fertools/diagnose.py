"""Reading training curves in plain language: overfitting, fluctuation, underfitting.

:func:`diagnose` takes a run's history (one dict per epoch with ``accuracy``,
``loss``, ``val_accuracy`` and ``val_loss``, as :meth:`fertools.runs.RunDir.read_history`
returns it) and says what a teacher would say looking at the two curves, with
the usual remedies. The thresholds are rules of thumb, chosen so that the
textbook shapes are caught and a healthy run is left alone; the numbers that
triggered a finding are quoted in its message so a student can check them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Fewer epochs than this say nothing about the shape of a curve.
MIN_EPOCHS = 3

# Overfitting: the train-val accuracy gap at the end, and how much it grew.
GAP_END = 0.08
GAP_GROWTH = 0.04
# ... or the validation loss rising this fraction above its minimum, for at least this many epochs.
VAL_LOSS_RISE = 0.10
EPOCHS_AFTER_MIN = 2
# Fluctuation: std of the epoch-to-epoch changes of validation accuracy, and drops counted.
JITTER_STD = 0.03
DROP = 0.02
MIN_DROPS = 2
# Underfitting: still climbing at the end, or fitting the training data poorly.
STILL_RISING = 0.02
LOW_TRAIN_ACCURACY = 0.55
SMALL_GAP = 0.05

REMEDIES = {
    "overfitting": (
        "Add dropout, or raise its rate, so the network cannot lean on single features.",
        "Use a smaller model (fewer filters or layers): it has less room to memorise.",
        "Train fewer epochs, or turn on early stopping; the best epoch is kept anyway.",
        "Use more data augmentation (rotation, shifts, flips, erasing) so each epoch looks new.",
    ),
    "fluctuation": (
        "Lower the learning rate (halve it), or use a decaying schedule (cosine or plateau).",
        "Use a larger batch size: each step then averages over more faces.",
        "If the validation set is small, every face moves its accuracy a lot: use a larger one.",
    ),
    "underfitting": (
        "Train for more epochs: the curves had not levelled off.",
        "Use a bigger model (more filters or layers).",
        "Use less regularisation (dropout, augmentation strength, weight decay).",
        "If the loss falls very slowly, raise the learning rate a little.",
    ),
}


@dataclass(frozen=True)
class Finding:
    """One reading of the curves. ``kind`` is overfitting, fluctuation, underfitting or ok."""

    kind: str
    message: str
    remedies: tuple[str, ...] = ()


def _column(history: list[dict], key: str) -> np.ndarray | None:
    values = [row.get(key) for row in history]
    if any(value is None for value in values):
        return None
    array = np.asarray(values, dtype="float64")
    return array if np.all(np.isfinite(array)) else None


def _points(fraction: float) -> str:
    """A difference of accuracies in percentage points, e.g. ``12 points``."""
    value = abs(fraction) * 100
    return f"{value:.0f} points" if value >= 10 else f"{value:.1f} points"


def _tail(values: np.ndarray) -> float:
    """Mean over the last fifth of the epochs (at least one): the curve's end, less noisy."""
    return float(values[-max(1, len(values) // 5) :].mean())


def _overfitting(
    acc: np.ndarray, val_acc: np.ndarray, loss: np.ndarray | None, val_loss: np.ndarray | None
) -> Finding | None:
    gap = acc - val_acc
    gap_end = _tail(gap)
    gap_start = float(gap[: max(1, len(gap) // 3)].min())
    evidence = []
    if gap_end >= GAP_END and gap_end - gap_start >= GAP_GROWTH:
        evidence.append(
            f"training accuracy ends {_points(gap_end)} above validation accuracy "
            f"({_tail(acc):.0%} vs {_tail(val_acc):.0%}), a gap that grew from {_points(max(gap_start, 0))}"
        )
    if val_loss is not None:
        best = int(np.argmin(val_loss))
        rise = (val_loss[-1] - val_loss[best]) / max(val_loss[best], 1e-8)
        train_still_falling = loss is None or loss[-1] < loss[best]
        if rise >= VAL_LOSS_RISE and len(val_loss) - 1 - best >= EPOCHS_AFTER_MIN and train_still_falling:
            evidence.append(
                f"the validation loss has risen {rise:.0%} since its lowest point in epoch {best + 1} "
                "while the training loss kept falling"
            )
    if not evidence:
        return None
    message = (
        "Overfitting: " + "; ".join(evidence) + ". The network is memorising the training faces "
        f"instead of learning what generalises; its best validation accuracy was in epoch "
        f"{int(np.argmax(val_acc)) + 1}."
    )
    return Finding("overfitting", message, REMEDIES["overfitting"])


def _fluctuation(val_acc: np.ndarray) -> Finding | None:
    # Skip the first epochs: big jumps while the network first learns are normal.
    settled = val_acc[min(2, len(val_acc) - 3) :]
    changes = np.diff(settled)
    if len(changes) < 2:
        return None
    jitter = float(changes.std())
    drops = int((changes < -DROP).sum())
    if jitter < JITTER_STD or drops < MIN_DROPS:
        return None
    message = (
        f"Fluctuation: validation accuracy moves by ±{_points(jitter)} from one epoch to the next "
        f"(standard deviation) and fell by more than {_points(DROP)} {drops} times. The steps are too big or too noisy "
        "to settle into a minimum, so the score of any one epoch is partly luck."
    )
    return Finding("fluctuation", message, REMEDIES["fluctuation"])


def _underfitting(acc: np.ndarray, val_acc: np.ndarray) -> Finding | None:
    quarter = max(3, len(val_acc) // 4)
    recent_gain = float(val_acc[-1] - val_acc[-quarter])
    best_at_end = val_acc[-1] >= val_acc.max() - 0.005
    train_gain = float(acc[-1] - acc[-quarter])
    if recent_gain >= STILL_RISING and best_at_end and train_gain > 0:
        message = (
            f"Underfitting: both curves were still rising when training stopped (validation accuracy "
            f"+{_points(recent_gain)} over the last {quarter - 1} epochs). The network has more to learn."
        )
        return Finding("underfitting", message, REMEDIES["underfitting"])
    if _tail(acc) < LOW_TRAIN_ACCURACY and abs(_tail(acc) - _tail(val_acc)) < SMALL_GAP:
        message = (
            f"Underfitting: the network fits even the training faces poorly ({_tail(acc):.0%} training "
            f"accuracy, close to the {_tail(val_acc):.0%} on validation). It is too weak or too "
            "constrained for the task, or has not trained long enough."
        )
        return Finding("underfitting", message, REMEDIES["underfitting"])
    return None


def diagnose(history: list[dict]) -> list[Finding]:
    """Plain-language findings about a run's training and validation curves.

    ``history`` is one dict per finished epoch with at least ``accuracy`` and
    ``val_accuracy`` (fractions) and ideally ``loss`` and ``val_loss``. Returns
    overfitting, fluctuation and underfitting findings (several may apply), or a
    single ``ok`` finding; returns ``[]`` when there are fewer than
    :data:`MIN_EPOCHS` epochs or no validation curve to judge.
    """
    if len(history) < MIN_EPOCHS:
        return []
    acc, val_acc = _column(history, "accuracy"), _column(history, "val_accuracy")
    if acc is None or val_acc is None:
        return []
    loss, val_loss = _column(history, "loss"), _column(history, "val_loss")
    findings = [
        finding
        for finding in (
            _overfitting(acc, val_acc, loss, val_loss),
            _fluctuation(val_acc),
            _underfitting(acc, val_acc),
        )
        if finding is not None
    ]
    # Rising curves and a growing gap contradict each other: overfitting is the finding that counts.
    if any(f.kind == "overfitting" for f in findings):
        findings = [f for f in findings if f.kind != "underfitting"]
    if findings:
        return findings
    message = (
        f"No warning signs: training and validation curves move together (final accuracy "
        f"{_tail(acc):.0%} on training, {_tail(val_acc):.0%} on validation) and validation accuracy "
        "has levelled off."
    )
    return [Finding("ok", message)]


__all__ = ["Finding", "diagnose"]
