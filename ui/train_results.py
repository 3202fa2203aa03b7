"""The Train page's results of a finished run: scores, confusion matrix, per class, mistakes, model.

Widgets only; the numbers come from the run folder (:class:`fertools.runs.RunDir`) and
:mod:`fertools.evaluate`, the figures from :mod:`ui.train_figures`.
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from fertools import diagnose, evaluate, export, jobs
from fertools.estimate import format_duration
from fertools.modelcard import ModelLoadError
from fertools.runs import PREDICTIONS, RunDir
from ui import projector
from ui import train_figures as figures
from ui.common import COUNT_COLUMN
from ui.identity import literal

GALLERY_SIZE = 24


@st.cache_data(max_entries=4, show_spinner=False)
def _val_predictions(run_dir: str, stamp: float) -> dict | None:
    """The run's validation predictions (None when missing or damaged); ``stamp`` keys the cache."""
    return RunDir(run_dir).read_predictions()


def results_section(run: jobs.RunInfo, allowed: jobs.Permissions) -> None:
    metrics = run.metrics or {}
    if "confusion" not in metrics:
        return
    st.subheader("Results")
    st.caption(f"Measured on the {metrics.get('n', '?')} validation faces, with the best epoch's weights.")
    a, b, c, d = st.columns(4)
    a.metric("Validation accuracy", f"{metrics['accuracy']:.1%}")
    if "accuracy_flip_tta" in metrics:
        b.metric(
            "With mirror TTA",
            f"{metrics['accuracy_flip_tta']:.1%}",
            help="Averaging the prediction of a face and its mirror image.",
        )
    c.metric("Macro F1", f"{metrics.get('macro_f1', 0):.3f}")
    d.metric(
        "Epochs · time",
        f"{metrics.get('epochs_run', metrics.get('epochs', '?'))} · {format_duration(metrics.get('train_seconds'))}",
    )

    classes = list(metrics.get("classes") or metrics["per_class"])
    confusion = metrics["confusion"]
    tabs = st.tabs(["Confusion matrix", "Per class", "Mistakes", "Diagnosis", "Model"])
    with tabs[0]:
        st.markdown("**Confusion matrix** — rows: true class, columns: predicted class.")
        normalise = st.toggle("Normalise rows (share of each true class)", key="train_cm_normalise")
        projector.chart(figures.confusion_figure(confusion, classes, normalise), key="confusion_matrix")
    with tabs[1]:
        table = (
            pd.DataFrame.from_dict(metrics["per_class"], orient="index").rename_axis("class").reset_index()
        )
        per_class_table(table.rename(columns={"support": "faces"}))  # the Evaluate page's name
    with tabs[2]:
        if allowed.can_see_faces:
            mistakes_gallery(run, classes, confusion)
        else:
            st.caption(f"Only {_managers(run)} see this run's validation faces, unless its owner shares it.")
    with tabs[3]:
        diagnosis(run)
    with tabs[4]:
        if allowed.can_download:
            model_actions(run)
        else:
            st.caption(f"Only {_managers(run)} may use or download this model, unless its owner shares it.")


def per_class_table(table: pd.DataFrame) -> None:
    """Precision, recall and F1 per class, with what each means (Train results and Evaluate)."""
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            **{name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall", "f1")},
            "faces": COUNT_COLUMN,
        },
    )
    st.caption(
        "Precision: of the faces predicted as this class, the share that are. Recall: of the "
        "faces of this class, the share found. F1: their harmonic mean."
    )


def _managers(run: jobs.RunInfo) -> str:
    return "its owner and the teacher" if run.owner else "the teacher"


def mistakes_gallery(run: jobs.RunInfo, classes: list[str], confusion: list[list[int]]) -> None:
    stamp = run.run.file(PREDICTIONS).stat().st_mtime if run.run.file(PREDICTIONS).exists() else 0.0
    predictions = _val_predictions(str(run.run_dir), stamp)
    if predictions is None:
        st.caption("This run has no readable validation predictions.")
        return
    worst = evaluate.worst_confusion(confusion)
    if worst is None:
        st.success("No validation face was misclassified.")
        return
    worst_true, worst_pred = worst
    a, b = st.columns(2)
    true_name = a.selectbox("True class", classes, index=worst_true, key=f"mistake_true_{run.id}")
    others = [name for name in classes if name != true_name]
    pred_key = f"mistake_pred_{run.id}"
    if st.session_state.get(pred_key) not in others:  # first visit, or the true class just took its value
        st.session_state[pred_key] = classes[worst_pred] if classes[worst_pred] in others else others[0]
    pred_name = b.selectbox("Predicted as", others, key=pred_key)
    true_index, pred_index = classes.index(true_name), classes.index(pred_name)
    probabilities = predictions["probabilities"]
    rows = evaluate.mistakes(predictions["labels"], probabilities, true_index, pred_index)
    st.caption(
        f"{len(rows)} {literal(true_name)} face(s) predicted as {literal(pred_name)}"
        + (f"; the {GALLERY_SIZE} most confident shown." if len(rows) > GALLERY_SIZE else ".")
    )
    columns = st.columns(8)
    for slot, row in enumerate(rows[:GALLERY_SIZE]):
        columns[slot % 8].image(
            predictions["images"][row],
            width=projector.px(96),
            caption=literal(
                f"{pred_name} {probabilities[row, pred_index]:.0%} · {true_name} {probabilities[row, true_index]:.0%}"
            ),
        )


def diagnosis(run: jobs.RunInfo) -> None:
    findings = diagnose.diagnose(jobs.history(run.id))
    if not findings:
        st.caption(f"Too few epochs to read the curves (at least {diagnose.MIN_EPOCHS} are needed).")
    show = {"ok": st.success, "overfitting": st.warning, "underfitting": st.warning, "fluctuation": st.info}
    for finding in findings:
        remedies = "".join(f"\n- {remedy}" for remedy in finding.remedies)
        show.get(finding.kind, st.info)(
            finding.message + (f"\n\n**What to try:**{remedies}" if remedies else "")
        )


def _history_csv(run: jobs.RunInfo) -> bytes:
    return pd.DataFrame(run.run.read_history()).to_csv(index=False).encode()


def _curves_html(run: jobs.RunInfo) -> bytes:
    # The whole plotly.js inside: the file opens offline, in a classroom without internet.
    figure = figures.curves_figure(run.run.read_history(), run.config.epochs)
    return figure.to_html(include_plotlyjs=True, full_html=True).encode()


def history_downloads(run: jobs.RunInfo, column) -> None:
    """The run's epoch history as CSV and its curves as a stand-alone HTML page."""
    if not run.run.has_history:
        return
    column.download_button(
        "Download history (.csv)",
        partial(_history_csv, run),
        file_name=f"ferlab-{run.id}-history.csv",
        mime="text/csv",
        key=f"history_{run.id}",
    )
    column.download_button(
        "Download curves (.html)",
        partial(_curves_html, run),
        file_name=f"ferlab-{run.id}-curves.html",
        mime="text/html",
        key=f"curves_html_{run.id}",
    )


def model_actions(run: jobs.RunInfo) -> None:
    history_downloads(run, st)
    model_dir = run.model_dir
    if model_dir is None:
        st.caption("This run saved no model.")
        return
    # A callback, so the sidebar (drawn before this button) already names the new model.
    st.button(
        "Use this model",
        type="primary",
        disabled=st.session_state.get("model_dir") == str(model_dir),
        key=f"use_{run.id}",
        on_click=st.session_state.update,
        kwargs={"model_dir": str(model_dir)},
    )
    if st.session_state.get("model_dir") == str(model_dir):
        st.caption("This is the model the other pages use.")
    a, b = st.columns(2)
    a.download_button(
        "Download model (.zip: model.keras + card.json)",
        partial(export.zip_model_dir, model_dir),
        file_name=f"ferlab-{run.id}.zip",
        mime="application/zip",
        key=f"zip_{run.id}",
    )
    tflite = run.run.tflite_path
    if run.run.tflite_fresh:
        b.download_button(
            "Download TFLite",
            tflite.read_bytes(),
            file_name=f"ferlab-{run.id}.tflite",
            mime="application/octet-stream",
            key=f"tflite_{run.id}",
        )
        b.caption("Input: float32 raw pixels 0..255, shape (1, 48, 48, 1); class order in card.json.")
    elif b.button("Convert to TFLite", key=f"convert_{run.id}"):
        with st.spinner("Converting to TFLite…"):
            try:
                export.tflite_file(model_dir, tflite)
            except (export.ExportError, ModelLoadError) as error:
                b.error(str(error))
            else:
                st.rerun()
