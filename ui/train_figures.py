"""The Train page's Plotly figures: curves, confusion matrix, runs overlay, sweep results.

Every accuracy axis runs from 0 to 100%, so one run's 14% never floats mid-chart. Names that a
student typed go through ``html.escape``: Plotly renders some HTML in labels and legends.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fertools.evaluate import normalize_rows

ACCURACY_AXIS = {"range": [0, 1], "tickformat": ".0%"}
#: Smoothing of the per-batch curves (an exponential moving average, as TensorBoard's slider).
SMOOTHING = 0.6


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    smoothed, last, steps = [], 0.0, 0
    for value in values:
        steps += 1
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**steps))
    return smoothed


def curves_figure(history: list[dict], epochs: int, batches: list[dict] | None = None) -> go.Figure:
    """Loss and accuracy, training and validation, one point per finished epoch.

    ``batches`` (``{"x": fractional epoch, "loss", "accuracy"}`` rows from progress.json) add the
    smoothed per-batch training curves, so the first epoch is not a blank chart.
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    epoch_numbers = [int(row.get("epoch", i)) + 1 for i, row in enumerate(history)]
    for column, metric in ((1, "loss"), (2, "accuracy")):
        points = [row for row in batches or () if row.get(metric) is not None]
        if points:
            figure.add_trace(
                go.Scatter(
                    x=[row["x"] for row in points],
                    y=smooth([row[metric] for row in points]),
                    mode="lines",
                    name=f"training {metric} (per batch, smoothed)",
                    line={"width": 1, "color": "rgba(99, 110, 250, 0.6)"},
                ),
                row=1,
                col=column,
            )
        for prefix, label, dash in (("", "training", "solid"), ("val_", "validation", "dash")):
            values = [row.get(prefix + metric) for row in history]
            if history and all(v is not None for v in values):
                figure.add_trace(
                    go.Scatter(
                        x=epoch_numbers,
                        y=values,
                        mode="lines+markers",
                        name=f"{label} {metric}",
                        line={"dash": dash},
                    ),
                    row=1,
                    col=column,
                )
        figure.update_xaxes(
            title_text="epoch",
            range=[0, max(epochs, len(history), 1) + 0.5],
            dtick=max(1, round(max(epochs, 1) / 10)),
            row=1,
            col=column,
        )
    figure.update_yaxes(rangemode="tozero", row=1, col=1)
    figure.update_yaxes(**ACCURACY_AXIS, row=1, col=2)
    figure.update_layout(height=340, margin={"t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def confusion_figure(confusion: np.ndarray, classes: list[str], normalise: bool) -> go.Figure:
    """A heatmap of counts (rows: true class, columns: predicted), or of row shares with ``normalise``."""
    matrix = normalize_rows(confusion) if normalise else np.asarray(confusion)
    labels = [html.escape(name) for name in classes]
    figure = px.imshow(
        matrix,
        x=labels,
        y=labels,
        color_continuous_scale="Blues",
        text_auto=".0%" if normalise else True,
        labels={"x": "predicted", "y": "true", "color": "share" if normalise else "faces"},
        aspect="auto",
    )
    figure.update_layout(height=460, margin={"t": 10, "b": 10})
    return figure


def compare_figure(curves: dict[str, list[dict]]) -> go.Figure | None:
    """Validation accuracy per epoch of several runs (label -> history rows); None if none has any."""
    rows = [
        {
            "run": html.escape(label),
            "epoch": int(row.get("epoch", i)) + 1,
            "val. accuracy": row.get("val_accuracy", row.get("accuracy")),
        }
        for label, history in curves.items()
        for i, row in enumerate(history)
    ]
    if not rows:
        return None
    figure = px.line(pd.DataFrame(rows), x="epoch", y="val. accuracy", color="run", markers=True)
    figure.update_layout(height=360, legend={"orientation": "h", "y": -0.3})
    figure.update_yaxes(**ACCURACY_AXIS)
    return figure


def sweep_figure(done: pd.DataFrame, keys: list[str]) -> go.Figure:
    """Validation accuracy of a sweep's runs: a scatter over two swept settings, else parallel axes."""
    if len(keys) == 2:
        figure = px.scatter(
            done,
            x=keys[0],
            y="val. accuracy",
            color=done[keys[1]].astype(str),
            log_x=True,
            labels={"color": keys[1]},
        )
        figure.update_traces(marker={"size": 12})
        figure.update_yaxes(**ACCURACY_AXIS)
    else:
        figure = px.parallel_coordinates(
            done, dimensions=[*keys, "val. accuracy"], color="val. accuracy", range_color=[0, 1]
        )
    figure.update_layout(height=360)
    return figure
