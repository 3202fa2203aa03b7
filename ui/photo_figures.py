"""The Photo page's probability bars: one per class in the card's order, the top class in bold.

They are Streamlit's own progress bars rather than a chart: the same seven numbers, for a
fraction of the work in each student's browser. A Plotly chart here made opening the Photo
page cost the browser 2.1-2.3 CPU-seconds; with these bars it costs 1.6 (docs/hosting.md).
"""

from __future__ import annotations

import streamlit as st

from ui.identity import literal


def probability_bars(probabilities: dict[str, float], top: str) -> None:
    """A labelled bar per class, with its probability as a percentage; ``top`` in bold."""
    for name, probability in probabilities.items():
        share = min(max(float(probability), 0.0), 1.0)
        label = literal(name)  # class names come from a card, which a student's run may have named
        st.progress(share, text=f"**{label}** {share:.0%}" if name == top else f"{label} {share:.0%}")
