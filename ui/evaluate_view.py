"""The Evaluate page's panels: the dataset and its held-out splits, the controls, the scores, the
clickable confusion matrix and the faces of one cell.

The page calls these top to bottom; the scoring is :mod:`fertools.evaluate`'s, cached here per
dataset, split, model file and TTA, so a click on the matrix (a rerun) never scores again.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fertools import data
from fertools import evaluate as ev
from fertools.modelcard import MODEL_FILE, ModelCard, ModelLoadError, load_model_dir, read_card
from ui import common, frame, projector
from ui.identity import literal
from ui.train_figures import confusion_figure
from ui.train_results import per_class_table

SPLIT_LABELS = {"test": "Test", "val": "Validation"}
#: Faces shown for one confusion cell, the most confident first.
GALLERY_SIZE = 32
CHART_KEY, TRUE_KEY, PREDICTED_KEY = "evaluate_confusion", "evaluate_true", "evaluate_predicted"


class EvaluateControls(NamedTuple):
    """What the visitor chose above the scores."""

    model_dir: str | None  # None when there is no model to pick
    split: str  # "test" or "val"
    tta: bool  # flip test-time augmentation
    views: str | None  # "ten_crop" when asked for, else None (then ``tta`` decides)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _model(model_dir: str, stamp: float):
    """The Keras model of ``model_dir``, keyed by its file's time stamp."""
    # Read-only and shared by every session, as the Recognizers of ui.common are.
    return load_model_dir(model_dir)[0]


@st.cache_data(max_entries=8, show_spinner="Evaluating the model, a thousand faces at a time…")
def _evaluation(
    source: str, split: str, model_dir: str, stamp: float, tta: bool, views: str | None
) -> ev.Evaluation:
    """The model's scores on one split of a dataset source."""
    # Keyed by the dataset source, the split, the model file's time stamp and the views: a rerun (a
    # click on the matrix) never evaluates again.
    dataset = common.get_dataset(source)
    classes = tuple(read_card(model_dir).classes)
    return ev.evaluate_split(_model(model_dir, stamp), dataset, split, classes, tta=tta, views=views)


def load_dataset() -> data.Dataset:
    """The dataset in use; stops with one sentence when it cannot be loaded."""
    try:
        return common.get_dataset()
    except data.DatasetError as error:
        st.error(f"The dataset in use cannot be loaded: {error}")
        st.stop()


def held_out(dataset: data.Dataset) -> list[str]:
    """The splits ``dataset`` can score a model on; stops saying how to get one when it has none."""
    splits = ev.held_out_splits(dataset)
    label = literal(st.session_state.get("dataset_label", "the dataset in use"))
    if not splits:
        st.info(
            f"{label} has no test or validation split, so every face in it is for training: on the Dataset "
            "page, load FER2013's fer2013.csv (its PublicTest and PrivateTest rows) or an image folder with "
            "test/<class>/ folders beside train/<class>/."
        )
        if frame.inside():  # a page link needs the router (app.py), which a page run alone lacks
            st.page_link("app_pages/1_Dataset.py", label="Choose a dataset", icon="🗂️")
        st.stop()
    return splits


def controls(dataset: data.Dataset, splits: list[str]) -> EvaluateControls:
    """The model picker beside the split and the view-averaging switches (mirror, ten crops)."""
    left, middle, right = st.columns([2, 1, 1])
    with left:
        model_dir = common.model_picker(key="evaluate_model")
    split = middle.radio(
        "Split",
        splits,
        format_func=lambda name: f"{SPLIT_LABELS[name]} ({int((dataset.split == name).sum()):,} faces)",
        key="evaluate_split",
        horizontal=True,
    )
    tta = right.toggle(
        "Mirror TTA",
        key="evaluate_tta",
        disabled=st.session_state.get("evaluate_ten_crop", False),  # ten crops mirror every view
        help="Average each face's prediction with its mirror image's.",
    )
    ten_crop = right.toggle(
        "Ten crops (12 views)",
        key="evaluate_ten_crop",
        help="Average over the whole face and five slightly zoomed crops of it, each also mirrored: "
        "the Photo page's most accurate mode, six times the model time of mirror TTA.",
    )
    return EvaluateControls(model_dir, split, tta, "ten_crop" if ten_crop else None)


def score(
    dataset: data.Dataset, splits: list[str], chosen: EvaluateControls
) -> tuple[ModelCard, ev.Evaluation]:
    """The model's card and its scores on the chosen split; stops with one sentence if it cannot be scored."""
    source = st.session_state.get("dataset_source", common.BUILTIN)
    if source.endswith(".csv") and {"val", "test"} & set(splits):
        st.caption(
            "In a FER2013 CSV, the validation split is its PublicTest rows and the test split its PrivateTest rows."
        )
    try:
        card = read_card(chosen.model_dir)
        model_file = Path(chosen.model_dir) / MODEL_FILE
        if not model_file.exists():
            raise ModelLoadError(f"{chosen.model_dir} holds no trained model.", chosen.model_dir)
        evaluation = _evaluation(
            source, chosen.split, chosen.model_dir, model_file.stat().st_mtime, chosen.tta, chosen.views
        )
    except (ModelLoadError, ValueError) as error:
        reason = error.for_page() if isinstance(error, ModelLoadError) else str(error)  # no server paths
        st.error(f"This model cannot be scored on this data: {literal(reason)}")
        st.stop()
    trained_on = card.dataset.get("source")
    if chosen.split == "val" and trained_on and trained_on == dataset.source:
        st.warning(
            "This model chose its best epoch on this validation split, so its score here is optimistic: "
            "the test split is the fair one."
        )
    return card, evaluation


def show_metrics(card: ModelCard, evaluation: ev.Evaluation) -> None:
    """Accuracy, macro F1 and faces scored, then the accuracy the model's card records."""
    a, b, c = st.columns(3)
    a.metric(
        "Accuracy", f"{evaluation.accuracy:.1%}", help="Share of the faces whose top class is the true one."
    )
    b.metric("Macro F1", f"{evaluation.macro_f1:.3f}", help="The mean of the per-class F1 scores.")
    c.metric("Faces", f"{evaluation.n:,}")
    if card.accuracy is not None:
        st.caption(
            f"The model's card records {card.accuracy:.1%} on {literal(str(card.metrics.get('split', 'its validation faces')))}."
        )


def clickable_confusion(evaluation: ev.Evaluation, normalise: bool) -> go.Figure:
    """The confusion heatmap with one invisible marker per cell: Plotly selects markers, not heatmap cells."""
    figure = confusion_figure(evaluation.confusion, list(evaluation.classes), normalise)
    figure.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "heatmap"})
    labels = [html.escape(name) for name in evaluation.classes]
    k = len(labels)
    true, predicted = np.divmod(np.arange(k * k), k)
    figure.add_trace(
        go.Scatter(
            x=[labels[j] for j in predicted],
            y=[labels[i] for i in true],
            customdata=np.stack([true, predicted], axis=1),
            text=[str(evaluation.confusion[i, j]) for i, j in zip(true, predicted)],
            mode="markers",
            # Invisible until clicked: then an orange frame shows which cell the gallery below is about.
            marker={
                "symbol": "square",
                "size": 36,
                "opacity": 0,
                "color": "rgba(255,140,0,0.2)",
                "line": {"width": 3, "color": "darkorange"},
            },
            selected={"marker": {"opacity": 1}},
            unselected={"marker": {"opacity": 0}},
            hovertemplate="true %{y}, predicted %{x}: %{text} faces<br>click to see them<extra></extra>",
            showlegend=False,
        )
    )
    figure.update_layout(hovermode="closest", hoverdistance=-1, clickmode="event+select", dragmode=False)
    return figure


def show_confusion(evaluation: ev.Evaluation):
    """The clickable confusion matrix and its normalise switch; returns the chart's selection event."""
    st.markdown("**Confusion matrix**: rows are the true class, columns the predicted one.")
    normalise = st.toggle("Normalise rows (share of each true class)", key="evaluate_normalise")
    return projector.chart(
        clickable_confusion(evaluation, normalise), key=CHART_KEY, on_select="rerun", selection_mode="points"
    )


def show_per_class(evaluation: ev.Evaluation) -> None:
    """Precision, recall, F1 and faces of each class."""
    st.markdown("**Per class**")
    per_class_table(
        pd.DataFrame(
            [
                {
                    "class": c.name,
                    "precision": c.precision,
                    "recall": c.recall,
                    "f1": c.f1,
                    "faces": c.support,
                }
                for c in evaluation.per_class
            ]
        )
    )


def follow_click(event, classes: tuple[str, ...]) -> None:
    """Point the cell pickers at a newly clicked cell (a click that is not new leaves them alone)."""
    points = event.selection.points if event else []
    cells = [cell for cell in (ev.cell_at(point, classes) for point in points) if cell is not None]
    if not cells or cells[-1] == st.session_state.get("evaluate_clicked"):
        return
    st.session_state["evaluate_clicked"] = cells[-1]
    st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = (classes[i] for i in cells[-1])


def cell_gallery(evaluation: ev.Evaluation, dataset: data.Dataset, split: str) -> None:
    """The faces of one (true, predicted) cell, chosen by a click on the matrix or by the two pickers."""
    classes = evaluation.classes
    worst = ev.worst_confusion(evaluation.confusion) or (0, 0)
    for key, default in ((TRUE_KEY, worst[0]), (PREDICTED_KEY, worst[1])):
        if st.session_state.get(key) not in classes:  # first visit, or another model's classes
            st.session_state[key] = classes[default]
    a, b = st.columns(2)
    true_name = a.selectbox("True class", classes, key=TRUE_KEY)
    predicted_name = b.selectbox("Predicted as", classes, key=PREDICTED_KEY)
    true, predicted = classes.index(true_name), classes.index(predicted_name)
    rows = ev.mistakes(evaluation.labels, evaluation.probabilities, true, predicted)
    what = "correctly classified" if true == predicted else f"predicted as {literal(predicted_name)}"
    if not len(rows):
        st.caption(f"No {literal(true_name)} face was {what}.")
        return
    st.caption(
        f"{len(rows)} {literal(true_name)} face(s) {what}"
        + (f"; the {GALLERY_SIZE} most confident shown." if len(rows) > GALLERY_SIZE else ".")
    )
    rows = rows[:GALLERY_SIZE]
    # Only the shown faces are copied out of the dataset (FER2013's test splits hold 7,178).
    faces = dataset.images[ev.split_rows(dataset, split)[rows]]
    columns = st.columns(8)
    for slot, (row, face) in enumerate(zip(rows, faces)):
        shares = evaluation.probabilities[row]
        caption = f"{predicted_name} {shares[predicted]:.0%}"
        if true != predicted:
            caption += f" · {true_name} {shares[true]:.0%}"
        columns[slot % 8].image(face, width=projector.px(96), caption=literal(caption))
