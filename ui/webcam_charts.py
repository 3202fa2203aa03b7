"""The Webcam page's emotion timeline: which tracked face to chart, and the Plotly figure.

The table is :meth:`fertools.webcam.FrameProcessor.timeline_frame`'s:
``seconds, face, label, confidence`` and one column per class.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from fertools.recognize import CLASS_COLOURS


def followed_face(table: pd.DataFrame, in_view: Sequence[int]) -> int | None:
    """The face the timeline follows: the first face of the readout that has rows, else the latest row's face.

    ``in_view`` are the face ids of the live readout, in its order (the largest face
    first), so the chart shows the face the readout names first; when no face is in
    view the chart stays on the face seen last. None for an empty table.
    """
    if not len(table):
        return None
    logged = set(table["face"].tolist())
    for face_id in in_view:
        if face_id in logged:
            return int(face_id)
    return int(table["face"].iloc[-1])


def timeline_figure(
    table: pd.DataFrame, face_id: int | None = None, last_s: float | None = None
) -> go.Figure:
    """A Plotly line chart of one face's smoothed class probabilities over time.

    ``table`` is :meth:`FrameProcessor.timeline_frame`'s; ``face_id`` defaults
    to the face with the most rows; ``last_s`` keeps only the latest seconds
    (a live chart redrawn every second stays small). Lines use the class
    colours of the video overlay.
    """
    classes = list(table.columns[4:])
    if face_id is None and len(table):
        face_id = int(table["face"].value_counts().idxmax())
    rows = table[table["face"] == face_id] if face_id is not None else table
    if last_s is not None and len(rows):
        rows = rows[rows["seconds"] >= rows["seconds"].max() - last_s]
    figure = go.Figure()
    for name in classes:
        blue, green, red = CLASS_COLOURS.get(name, (160, 160, 160))
        figure.add_trace(
            go.Scatter(
                x=rows["seconds"],
                y=rows[name],
                name=name,
                mode="lines",
                line={"color": f"rgb({red},{green},{blue})", "width": 2},
            )
        )
    figure.update_layout(
        title=f"Face {face_id}" if face_id is not None else None,
        xaxis_title="seconds",
        yaxis={"title": "probability (smoothed)", "range": [0, 1]},
        height=300,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )
    return figure
