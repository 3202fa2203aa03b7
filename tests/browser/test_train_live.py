"""The Train page: a short run's curves grow live in the browser, then its confusion matrix shows.

The run trains on ``tiny.npz`` (210 synthetic faces, 168 to train on, see conftest.py), chosen on the
Dataset page and carried to the Train page by in-app navigation (a new URL would start
a new session and forget the choice).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fertools.constants import FER2013_CLASSES

pytestmark = pytest.mark.browser

EPOCHS = 8
#: Seconds the whole run may take: starting TensorFlow in the worker is most of it on a busy CPU.
RUN_TIMEOUT_S = 150


def training_points(app) -> int:
    """Epochs plotted on the live curves (the "training loss" trace); 0 before the first one."""
    counts = [
        len(trace["x"])
        for chart in app.plotly_charts()
        for trace in chart
        if trace["name"] == "training loss"
    ]
    return max(counts, default=0)


def batch_curve_shown(app) -> bool:
    """Whether the smoothed per-batch training curve (drawn while a run trains) is on the page."""
    return any(
        (trace["name"] or "").startswith("training loss (per batch")
        for chart in app.plotly_charts()
        for trace in chart
    )


def test_training_curves_grow_live_then_confusion_matrix(app, tiny_dataset: Path) -> None:
    page = app.page
    app.goto("/Dataset", "Download .npz", timeout_s=180)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Source").click()
    page.get_by_role("option", name=tiny_dataset.name).click()
    page.get_by_role("button", name="Use this dataset").click()
    app.wait("In use")

    page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Train").click()
    app.wait("Sweep: batch size", timeout_s=120)
    assert f"Dataset: {tiny_dataset.name}" in app.text()

    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs.fill(str(EPOCHS))
    epochs.press("Enter")
    app.wait()
    batch = page.locator('[data-testid="stSlider"]').filter(has_text="Batch size").get_by_role("slider")
    batch.press("ArrowLeft")  # 64 -> 32
    app.wait()
    batch.press("ArrowLeft")  # 32 -> 16: more batches per epoch, so the run is seen mid-epoch
    app.wait()
    page.get_by_role("button", name="Start training").click()
    app.wait(f"{EPOCHS} epochs, batch 16", idle=False)

    # Watch the curves while the run trains: (seconds, points) whenever the count changes.
    seen: list[tuple[float, int]] = []
    batch_curve = False
    start = time.monotonic()
    while not page.get_by_text("Confusion matrix", exact=True).count():
        assert time.monotonic() - start < RUN_TIMEOUT_S, f"not finished after {RUN_TIMEOUT_S} s: {seen}"
        failed = page.locator('[data-testid="stAlert"]').filter(has_text="This run failed")
        assert not failed.count(), failed.first.inner_text()
        points = training_points(app)
        batch_curve = batch_curve or batch_curve_shown(app)
        if not seen or points != seen[-1][1]:
            seen.append((round(time.monotonic() - start, 1), points))
        page.wait_for_timeout(250)
    live = [points for _, points in seen if points]
    print(f"epochs plotted over time (s, points): {seen}")
    assert len(set(live)) >= 2 and live == sorted(live), f"the curves did not grow live: {seen}"
    assert batch_curve, "no per-batch training curve was drawn while the run trained"

    app.wait("Confusion matrix")
    assert training_points(app) == EPOCHS
    heatmaps = [trace for chart in app.plotly_charts() for trace in chart if trace["type"] == "heatmap"]
    assert len(heatmaps) == 1
    assert heatmaps[0]["x"] == list(FER2013_CLASSES) and heatmaps[0]["y"] == list(FER2013_CLASSES)
    assert "Validation accuracy" in app.text()

    # The picture: the finished run's curves, its scores and the top of the confusion matrix.
    run_heading = page.get_by_role("heading", name=f"{EPOCHS} epochs, batch 16")
    run_heading.evaluate("h => h.scrollIntoView({block: 'start'})")
    page.mouse.move(0, 0)
    page.wait_for_timeout(500)
    app.screenshot("train")

    # The next run's time estimate now comes from this run's measured speed, above Start.
    assert "of training on this server" in app.text()
    start = page.get_by_role("button", name="Start training")
    start.evaluate("b => b.scrollIntoView({block: 'center'})")
    page.mouse.move(0, 0)
    page.wait_for_timeout(500)
    app.screenshot("train_estimate")
