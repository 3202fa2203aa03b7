"""The Dataset page's Plotly figures: class balance per split (and what it is measured on), pixel histograms."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def measured_on(counts) -> str:
    """What the imbalance is measured on, as the page words it: "train split" or "dataset"."""
    return "train split" if "train" in counts.splits else "dataset"


def _balance_headline(imbalance, where: str, balanced_ratio: float) -> str:
    """ "happy 7,215 vs disgust 436 in the train split: 16.5×", or "balanced: ..."; "" when empty."""
    if imbalance is None:
        return ""
    if imbalance.ratio > balanced_ratio:
        ratio = "∞" if imbalance.ratio == float("inf") else f"{imbalance.ratio:.1f}×"
        return (
            f"<b>{html.escape(imbalance.largest)}</b> {imbalance.largest_count:,} vs <b>{html.escape(imbalance.smallest)}</b> "
            f"{imbalance.smallest_count:,} in the {where}: <b>{ratio}</b>"
        )
    spread = f"{imbalance.smallest_count:,}"
    if imbalance.largest_count != imbalance.smallest_count:
        spread += f" to {imbalance.largest_count:,}"
    return f"balanced: {spread} faces per class in the {where}"


def class_balance(counts, imbalance, balanced_ratio: float) -> go.Figure:
    """Faces per class, one bar per split, headed by how unbalanced the classes are.

    ``counts`` is :class:`fertools.stats` class counts (``rows()``, ``classes``, ``splits``) and
    ``imbalance`` its ``imbalance()`` (None for an empty dataset).
    """
    # Plotly draws text as HTML: class names (a folder's, an .npz's) are escaped, as on the Train page.
    rows = [{**row, "class": html.escape(row["class"])} for row in counts.rows()]
    figure = px.bar(
        pd.DataFrame(rows),
        x="class",
        y="count",
        color="split",
        barmode="group",
        category_orders={
            "class": [html.escape(name) for name in counts.classes],
            "split": list(counts.splits),
        },
        hover_data={"share": ":.1%"},
        labels={"count": "faces", "class": ""},
    )
    figure.add_annotation(
        xref="paper",
        yref="paper",
        x=1,
        y=1.1,
        showarrow=False,
        xanchor="right",
        text=_balance_headline(imbalance, measured_on(counts), balanced_ratio),
    )
    figure.update_layout(height=420, margin={"t": 60, "b": 10}, legend_title_text="split")
    return figure


def pixel_histogram(edges: np.ndarray, fractions, names: list[str], group_by: str) -> go.Figure:
    """The share of pixels at each intensity, one line per class or split (``group_by``)."""
    centres = (edges[:-1] + edges[1:]) / 2
    histogram = pd.DataFrame(
        [
            {group_by: html.escape(name), "intensity": float(x), "fraction": float(y)}
            for name, row in zip(names, fractions, strict=True)
            for x, y in zip(centres, row, strict=True)
        ]
    )
    figure = px.line(
        histogram,
        x="intensity",
        y="fraction",
        color=group_by,
        labels={"intensity": "pixel intensity (0 = black, 255 = white)", "fraction": "share of pixels"},
    )
    figure.update_layout(height=360, margin={"t": 20, "b": 10})
    figure.update_yaxes(rangemode="tozero", tickformat=".1%")
    return figure
