"""Dataset: pick a FER2013-style source, see its class balance, samples and pixel statistics, export it."""

from __future__ import annotations

import streamlit as st

from fertools import stats
from ui import dataset_view as view
from ui.common import page_setup
from ui.identity import literal

page_setup("Dataset", "🗂️")
st.title("🗂️ Dataset")
st.caption(
    "Every FER Lab page trains and evaluates on the dataset in use. Look at one here before "
    "you train: how many faces per emotion, what they look like, what was rejected."
)

source, label, dataset = view.pick_source()
view.show_header(source, label, dataset)
counts = stats.class_counts(dataset)
view.show_metrics(dataset, counts)

if len(dataset) == 0:
    st.error(f"{literal(label)} holds no usable faces.")
    view.show_rejected(dataset)
    st.stop()

balance_tab, samples_tab, pixels_tab, rejected_tab, export_tab = st.tabs(
    ["Class balance", "Samples", "Pixels & mean faces", f"Rejected ({len(dataset.rejected):,})", "Export"]
)
with balance_tab:
    view.show_balance(counts)
with samples_tab:
    view.show_samples(dataset, counts)
with pixels_tab:
    view.show_pixels(source, dataset)
with rejected_tab:
    view.show_rejected(dataset)
with export_tab:
    view.show_export(label, dataset)
