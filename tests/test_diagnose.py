"""fertools.diagnose on synthetic training curves with textbook shapes."""

from __future__ import annotations

import numpy as np
import pytest

from fertools.diagnose import Finding, diagnose


def _history(acc, val_acc, loss=None, val_loss=None) -> list[dict]:
    """history.csv rows from curves; losses default to 1 - accuracy."""
    acc, val_acc = np.asarray(acc, float), np.asarray(val_acc, float)
    loss = 1 - acc if loss is None else np.asarray(loss, float)
    val_loss = 1 - val_acc if val_loss is None else np.asarray(val_loss, float)
    return [
        {"epoch": float(i), "accuracy": a, "val_accuracy": v, "loss": lo, "val_loss": vl}
        for i, (a, v, lo, vl) in enumerate(zip(acc, val_acc, loss, val_loss))
    ]


def _saturating(start: float, end: float, epochs: int, rate: float = 0.3) -> np.ndarray:
    """A curve that climbs from ``start`` and levels off at ``end``."""
    t = np.arange(epochs)
    return end - (end - start) * np.exp(-rate * t)


def _kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def test_healthy_curves_are_ok():
    acc = _saturating(0.3, 0.70, 30)
    val = _saturating(0.3, 0.67, 30)
    findings = diagnose(_history(acc, val))
    assert _kinds(findings) == ["ok"]
    assert findings[0].remedies == ()


def test_growing_gap_and_rising_val_loss_is_overfitting():
    epochs = 40
    acc = _saturating(0.3, 0.99, epochs, rate=0.15)
    val = np.minimum(_saturating(0.3, 0.62, epochs, rate=0.3), 0.62)
    val_loss = np.concatenate([np.linspace(1.6, 1.0, 12), np.linspace(1.0, 1.5, epochs - 12)])
    findings = diagnose(_history(acc, val, loss=np.linspace(1.8, 0.05, epochs), val_loss=val_loss))
    assert _kinds(findings) == ["overfitting"]
    finding = findings[0]
    assert "epoch 12" in finding.message  # where the validation loss was lowest
    remedies = " ".join(finding.remedies).lower()
    for word in ("dropout", "smaller model", "early stopping", "augmentation"):
        assert word in remedies


def test_rising_val_loss_alone_is_overfitting():
    acc = _saturating(0.3, 0.75, 25)
    val = _saturating(0.3, 0.70, 25)
    val_loss = np.concatenate([np.linspace(1.5, 0.9, 15), np.linspace(0.9, 1.2, 10)])
    findings = diagnose(_history(acc, val, loss=np.linspace(1.6, 0.5, 25), val_loss=val_loss))
    assert "overfitting" in _kinds(findings)


def test_jumpy_validation_accuracy_is_fluctuation():
    epochs = 30
    acc = _saturating(0.3, 0.70, epochs)
    wiggle = np.where(np.arange(epochs) % 2 == 0, 0.06, -0.06)
    val = _saturating(0.3, 0.64, epochs) + wiggle
    findings = diagnose(_history(acc, val))
    assert "fluctuation" in _kinds(findings)
    finding = next(f for f in findings if f.kind == "fluctuation")
    remedies = " ".join(finding.remedies).lower()
    assert "learning rate" in remedies and "batch size" in remedies


def test_small_noise_is_not_fluctuation():
    rng = np.random.default_rng(0)
    acc = _saturating(0.3, 0.70, 30)
    val = _saturating(0.3, 0.67, 30) + rng.normal(0, 0.004, 30)
    assert "fluctuation" not in _kinds(diagnose(_history(acc, val)))


def test_curves_still_rising_is_underfitting():
    acc = np.linspace(0.25, 0.55, 10)
    val = np.linspace(0.24, 0.53, 10)
    findings = diagnose(_history(acc, val))
    assert _kinds(findings) == ["underfitting"]
    assert "more epochs" in " ".join(findings[0].remedies).lower()


def test_flat_and_low_is_underfitting():
    acc = np.full(20, 0.30) + np.linspace(0, 0.01, 20)
    val = np.full(20, 0.29)
    assert _kinds(diagnose(_history(acc, val))) == ["underfitting"]


@pytest.mark.parametrize("epochs", [0, 1, 2])
def test_too_few_epochs_say_nothing(epochs):
    assert diagnose(_history(np.linspace(0.2, 0.5, epochs), np.linspace(0.2, 0.4, epochs))) == []


def test_no_validation_curve_says_nothing():
    rows = [{"epoch": float(i), "accuracy": 0.1 * i, "loss": 1 - 0.1 * i} for i in range(6)]
    assert diagnose(rows) == []
