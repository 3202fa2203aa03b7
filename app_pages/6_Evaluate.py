"""Evaluate: score a model on the test split of the dataset in use; click a confusion cell to see its faces."""

from __future__ import annotations

import streamlit as st

from ui import evaluate_view as view
from ui.common import page_setup

page_setup("Evaluate", "📏")
st.title("📏 Evaluate")
st.caption(
    "Score a model on faces it never trained on: accuracy, precision, recall and F1 per class, and the "
    "confusion matrix. Click a cell of the matrix to see its faces."
)

# --- data and model ------------------------------------------------------------------------

dataset = view.load_dataset()
splits = view.held_out(dataset)
chosen = view.controls(dataset, splits)
if chosen.model_dir is None:
    st.stop()
card, evaluation = view.score(dataset, splits, chosen)

# --- scores --------------------------------------------------------------------------------

view.show_metrics(card, evaluation)
chart_column, table_column = st.columns([3, 2])
with chart_column:
    event = view.show_confusion(evaluation)
with table_column:
    view.show_per_class(evaluation)

# --- the faces of one cell -----------------------------------------------------------------

st.subheader("The faces of one cell")
view.follow_click(event, evaluation.classes)
view.cell_gallery(evaluation, dataset, chosen.split)
