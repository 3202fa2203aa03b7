"""Augmentation: tune random rotations, zooms, shifts, flips and erasing, and see them on real samples."""

from __future__ import annotations

import streamlit as st

from ui import augmentation_view as view
from ui.common import page_setup

page_setup("Augmentation", "🔀")
st.title("🔀 Augmentation")
st.caption(
    "Augmentation shows the network a slightly different version of every face in every epoch, so it "
    "learns the expression rather than the exact pixels. These are the Keras layers training uses: "
    "what you see here is what the network gets."
)

view.start_controls()
controls, pictures = st.columns([1, 2], gap="large")
with controls:
    config = view.show_settings()
with pictures:
    view.show_preview(config)
