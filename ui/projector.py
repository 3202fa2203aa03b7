"""Projector mode: bigger text, faces and charts for a room, switched on in the sidebar.

One toggle per session (a teacher's projector is not a student's laptop). When it is on,
:func:`apply` raises the page's base font size, which every Streamlit element is measured in;
pages size their fixed-width faces with :func:`px` and show Plotly charts with :func:`chart`,
whose fonts and heights are set in pixels and so would not follow the page's font.
"""

from __future__ import annotations

import streamlit as st

KEY = "ferlab_projector"
#: How much bigger faces and charts get: readable from the back of a classroom at 1280x720.
SCALE = 1.5
#: The page's base font in pixels (Streamlit's is 16).
FONT_PX = 22
#: Plotly's font size in projector mode (its default is 12).
CHART_FONT_PX = 20


def on() -> bool:
    """Whether this session is in projector mode."""
    return bool(st.session_state.get(KEY, False))


def toggle(container) -> None:
    """The sidebar switch; its state lives in session state, so it holds across pages."""
    container.toggle(
        "Projector mode",
        key=KEY,
        help="Bigger text, faces and charts, for showing FER Lab to a room.",
    )


def apply() -> None:
    """The page-wide styles of projector mode (nothing when it is off). Call before the page."""
    if on():
        st.html(
            f"<style>html {{ font-size: {FONT_PX}px; }} "
            '[data-testid="stMainBlockContainer"] { max-width: 100%; padding-left: 2rem; '
            "padding-right: 2rem; }</style>"
        )


def px(width: int) -> int:
    """A fixed image width in pixels, scaled up in projector mode."""
    return round(width * SCALE) if on() else width


def chart(figure, **kwargs):
    """``st.plotly_chart(figure, **kwargs)``, with bigger fonts and a taller chart in projector mode."""
    if on():
        height = figure.layout.height
        figure.update_layout(font={"size": CHART_FONT_PX}, height=round(height * SCALE) if height else None)
    return st.plotly_chart(figure, **kwargs)
