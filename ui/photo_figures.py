"""The Photo page's Plotly figure: one face's probabilities, its top class in the class's colour."""

from __future__ import annotations

import plotly.graph_objects as go

from fertools.recognize import CLASS_COLOURS


def probability_chart(probabilities: dict[str, float], top: str) -> go.Figure:
    """Horizontal bars of every class's probability, in the card's order; ``top`` coloured."""
    names = list(probabilities)
    colours = [
        "rgb({2},{1},{0})".format(*CLASS_COLOURS.get(name, (160, 160, 160))) if name == top else "lightgrey"
        for name in names
    ]
    figure = go.Figure(
        go.Bar(
            x=[probabilities[name] for name in names],
            y=names,
            orientation="h",
            marker_color=colours,
            text=[f"{probabilities[name]:.0%}" for name in names],
            textposition="outside",
        )
    )
    figure.update_layout(
        height=40 + 28 * len(names),
        margin={"t": 10, "b": 10, "l": 10, "r": 10},
        xaxis={"range": [0, 1.15], "tickformat": ".0%", "title": "probability"},
        yaxis={"autorange": "reversed"},
        showlegend=False,
    )
    return figure
