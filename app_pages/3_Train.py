"""Train a model in the background, watch it learn, and read what it learned."""

from __future__ import annotations

import html
import re
from functools import partial

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from fertools import diagnose, export, jobs, models
from fertools.config import CLASS_WEIGHTS, OPTIMIZERS, PRESETS, SCHEDULES, AugmentConfig, TrainConfig
from fertools.data import DatasetError
from fertools.modelcard import ModelLoadError
from fertools.runs import PREDICTIONS, RunDir
from fertools.users import MiB, QuotaError, Quotas, User, hosted
from ui.common import get_dataset, page_setup
from ui.identity import current_user, literal

page_setup("Train", "🏋️")

#: Seconds between refreshes of the live view while a run is queued or running.
REFRESH_SECONDS = 1.5
BATCH_SIZES = [8, 16, 32, 64, 128, 256, 512]
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
STATE_ICONS = {"queued": "⏳", "running": "🏃", "finished": "✅", "failed": "❌", "cancelled": "🛑"}
GALLERY_SIZE = 24
#: TensorFlow's C++ start-up chatter (absl info and warning lines), hidden from the worker log.
_LOG_NOISE = re.compile(r"^([IW]\d{4} |WARNING: All log messages before absl)")


# --- settings <-> widgets ---------------------------------------------------------------------


def _nearest(options: list, value):
    return min(options, key=lambda option: abs(np.log(option) - np.log(value)))


def _widget_values(config: TrainConfig) -> dict:
    """Session-state values of the settings widgets for ``config``."""
    return {
        "train_arch": config.architecture,
        "train_epochs": config.epochs,
        "train_batch": _nearest(BATCH_SIZES, config.batch_size),
        "train_lr": _nearest(LEARNING_RATES, config.learning_rate),
        "train_optimizer": config.optimizer,
        "train_momentum": config.momentum,
        "train_weight_decay": config.weight_decay,
        "train_schedule": config.schedule,
        "train_warmup": config.warmup_epochs,
        "train_cycles": ", ".join(str(n) for n in config.cycle_epochs),
        "train_average": config.average_epochs,
        "train_smoothing": config.label_smoothing,
        "train_class_weights": config.class_weights,
        "train_mixup": config.mixup,
        "train_val_fraction": config.val_fraction,
        "train_seed": config.seed,
        "train_early_stopping": config.early_stopping,
        "train_augment": config.augment is not None and not config.augment.is_identity,
    }


def _apply_preset() -> None:
    preset = st.session_state.get("train_preset")
    if preset in PRESETS:
        st.session_state.update(_widget_values(PRESETS[preset]))


def _augmentation() -> AugmentConfig:
    """The settings from the Augmentation page, or the defaults."""
    carried = st.session_state.get("augment_config")
    if isinstance(carried, AugmentConfig):
        return carried
    return AugmentConfig.from_dict(carried) if carried else AugmentConfig()


def _cycles(text: str) -> tuple[int, ...]:
    """'30, 60' -> (30, 60); ValueError with a sentence for anything else."""
    parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"cosine cycles must be whole numbers of epochs separated by commas, not {text!r}")
    return tuple(int(part) for part in parts)


def _config_from_widgets() -> TrainConfig:
    state = st.session_state
    return TrainConfig(
        architecture=state["train_arch"],
        epochs=int(state["train_epochs"]),
        batch_size=int(state["train_batch"]),
        learning_rate=float(state["train_lr"]),
        optimizer=state["train_optimizer"],
        momentum=float(state["train_momentum"]),
        weight_decay=float(state["train_weight_decay"]),
        schedule=state["train_schedule"],
        warmup_epochs=int(state["train_warmup"]),
        cycle_epochs=_cycles(state["train_cycles"]),
        average_epochs=int(state["train_average"]),
        label_smoothing=float(state["train_smoothing"]),
        class_weights=state["train_class_weights"],
        augment=_augmentation() if state["train_augment"] else None,
        mixup=float(state["train_mixup"]),
        val_fraction=float(state["train_val_fraction"]),
        seed=int(state["train_seed"]),
        early_stopping=int(state["train_early_stopping"]),
    )


for _key, _value in _widget_values(TrainConfig()).items():
    st.session_state.setdefault(_key, _value)


# --- cached helpers ---------------------------------------------------------------------------


@st.cache_data(max_entries=16, show_spinner="Building the model to list its layers…")
def _layer_table(name: str, num_classes: int) -> tuple[int, pd.DataFrame]:
    """Parameter count and one row per layer of a freshly built ``name``."""
    model = models.create(name, num_classes)
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):
            shape = "(several)"
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output shape": shape,
                "parameters": int(layer.count_params()),
            }
        )
    return models.count_params(model), pd.DataFrame(rows)


@st.cache_data(max_entries=4, show_spinner=False)
def _val_predictions(run_dir: str, stamp: float) -> dict | None:
    """The run's validation predictions (None when missing or damaged); ``stamp`` keys the cache."""
    return RunDir(run_dir).read_predictions()


# --- charts -----------------------------------------------------------------------------------


def _curves_figure(history: list[dict], epochs: int) -> go.Figure:
    """Loss and accuracy, training and validation, one point per finished epoch."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    epoch_numbers = [int(row.get("epoch", i)) + 1 for i, row in enumerate(history)]
    for column, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, label, dash in (("", "training", "solid"), ("val_", "validation", "dash")):
            values = [row.get(prefix + metric) for row in history]
            if history and all(v is not None for v in values):
                figure.add_trace(
                    go.Scatter(
                        x=epoch_numbers,
                        y=values,
                        mode="lines+markers",
                        name=f"{label} {metric}",
                        line={"dash": dash},
                    ),
                    row=1,
                    col=column,
                )
        figure.update_xaxes(
            title_text="epoch", range=[0.5, max(epochs, len(history), 1) + 0.5], row=1, col=column
        )
    figure.update_yaxes(rangemode="tozero", row=1, col=1)
    figure.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    figure.update_layout(height=340, margin={"t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def _confusion_figure(confusion: np.ndarray, classes: list[str], normalise: bool) -> go.Figure:
    if normalise:
        totals = confusion.sum(axis=1, keepdims=True)
        matrix = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    else:
        matrix = confusion
    labels = [html.escape(name) for name in classes]  # plotly renders some HTML in labels
    figure = px.imshow(
        matrix,
        x=labels,
        y=labels,
        color_continuous_scale="Blues",
        text_auto=".0%" if normalise else True,
        labels={"x": "predicted", "y": "true", "color": "share" if normalise else "faces"},
        aspect="auto",
    )
    figure.update_layout(height=460, margin={"t": 10, "b": 10})
    return figure


# --- page sections ----------------------------------------------------------------------------


def configure_section(dataset, user: User) -> None:
    st.header("Configure a run")
    left, right = st.columns([1, 1], gap="large")
    with left:
        names = models.list_models()
        if st.session_state["train_arch"] not in names:
            st.session_state["train_arch"] = names[0]
        name = st.selectbox("Architecture", names, key="train_arch")
        spec = models.get_spec(name)
        st.caption(f"{spec.description}" + (f" — source: {spec.source}" if spec.source else ""))
        num_classes = len(dataset.classes) if dataset is not None else 7
        try:
            parameters, layers = _layer_table(name, num_classes)
        except Exception as error:  # noqa: BLE001 - a builder failing must not take the page down
            st.error(f"{name} could not be built: {error}")
        else:
            st.metric("Parameters", f"{parameters:,}")
            with st.expander(f"Layers ({len(layers)})"):
                st.dataframe(layers, hide_index=True, height=300)
        st.selectbox(
            "Start from a preset",
            list(PRESETS),
            index=None,
            key="train_preset",
            placeholder="Choose one to fill in its settings",
            on_change=_apply_preset,
            help="Presets set the hyperparameters below; augmentation settings come from the "
            "Augmentation page.",
        )
        st.text_input("Run name (optional)", key="train_name", placeholder="e.g. dropout 0.5, 30 epochs")
    with right:
        a, b = st.columns(2)
        a.number_input("Epochs", min_value=1, max_value=1000, step=1, key="train_epochs")
        b.select_slider("Batch size", BATCH_SIZES, key="train_batch")
        a.select_slider("Learning rate", LEARNING_RATES, key="train_lr", format_func=lambda v: f"{v:g}")
        b.selectbox("Optimizer", OPTIMIZERS, key="train_optimizer")
        a.selectbox(
            "Learning-rate schedule",
            SCHEDULES,
            key="train_schedule",
            help="cosine: decays smoothly to 1% of the rate; plateau: halves it when validation "
            "loss stalls for 3 epochs.",
        )
        b.selectbox(
            "Class weights",
            CLASS_WEIGHTS,
            key="train_class_weights",
            help="Weigh rare classes (FER2013's 'disgust') up: balanced fully, sqrt gently.",
        )
        a.slider("Label smoothing", 0.0, 0.3, step=0.05, key="train_smoothing")
        b.slider("Mixup alpha (0 = off)", 0.0, 1.0, step=0.1, key="train_mixup")
        a.slider(
            "Validation fraction",
            0.05,
            0.5,
            step=0.05,
            key="train_val_fraction",
            help="Used only when the dataset has no validation split of its own.",
        )
        b.number_input(
            "Early stopping patience (0 = off)", min_value=0, max_value=100, key="train_early_stopping"
        )
        with st.expander("More settings"):
            c, d = st.columns(2)
            c.number_input("Seed", min_value=0, max_value=2**31 - 1, key="train_seed")
            d.number_input("Warm-up epochs (cosine)", min_value=0, max_value=50, key="train_warmup")
            c.text_input(
                "Cosine cycles (epochs)",
                key="train_cycles",
                placeholder="e.g. 30, 60",
                help="Warm restarts: the cosine schedule restarts after each cycle; the cycles must add "
                "up to the epochs. Empty: one cycle.",
            )
            c.number_input(
                "Average the final epochs (0 = off)",
                min_value=0,
                max_value=1000,
                key="train_average",
                help="Stochastic weight averaging: the model averages the weights of the final epochs "
                "and is kept when it beats the best single epoch on validation.",
            )
            d.number_input(
                "Momentum (sgd, rmsprop)", min_value=0.0, max_value=0.999, step=0.05, key="train_momentum"
            )
            c.number_input(
                "Weight decay",
                min_value=0.0,
                max_value=0.1,
                step=1e-4,
                format="%.5f",
                key="train_weight_decay",
            )
        st.toggle("Augment the training images", key="train_augment")
        augment = _augmentation()
        origin = "from the Augmentation page" if st.session_state.get("augment_config") else "defaults"
        if st.session_state["train_augment"]:
            settings = ", ".join(f"{k} {v}" for k, v in augment.to_dict().items() if v)
            st.caption(f"Augmentation ({origin}): {settings or 'nothing switched on'}.")

    if dataset is None:
        return
    st.caption(f"**Dataset:** {literal(st.session_state['dataset_label'])} — {dataset.describe()}")
    if hosted():
        quotas = Quotas.from_env()
        st.caption(
            f"On this class server: at most {quotas.max_runs_per_user} of your runs queued or training at "
            f"once (a sweep up to {max(quotas.max_runs_per_user, quotas.max_sweep_runs)}), "
            f"{quotas.max_epochs} epochs a run, {quotas.max_jobs} training(s) at a time for the whole "
            f"class; your runs use {jobs.disk_used(user.id) / MiB:,.0f} of {quotas.max_user_disk_mb} MB. "
            "A run keeps a copy of the dataset it trains on, which only you and the teacher can reach; "
            "deleting your runs deletes it."
        )
    if st.button("Start training", type="primary"):
        try:
            run_id = jobs.submit(
                dataset,
                _config_from_widgets(),
                st.session_state["train_name"].strip() or None,
                st.session_state["dataset_label"],
                owner=user.id,
                once=True,  # a double click queues one run, not two
            )
        except QuotaError as error:
            st.error(str(error))
        except (ValueError, jobs.JobError) as error:
            st.error(f"Cannot start: {error}")
        else:
            st.session_state["train_run"] = run_id
            st.toast(f"Run {run_id} queued; it trains in the background, so you can leave this page.")


def _run_label(run: jobs.RunInfo) -> str:
    text = f"{STATE_ICONS.get(run.state, '')} {run.id} · {run.name}"
    if run.accuracy is not None:
        text += f" · {run.accuracy:.1%}"
    return text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _cancel(run_id: str, user: User) -> None:
    # A callback, so the rerun already shows the run cancelling; a refusal is shown by live_view.
    try:
        jobs.cancel(run_id, user=user)
    except jobs.JobError as error:
        st.session_state["train_cancel_error"] = str(error)


def live_view(run_id: str, shown_state: str, user: User) -> None:
    """Status, progress and curves of one run; reruns itself while the run is active."""
    try:
        run = jobs.get_run(run_id)
    except jobs.JobError as error:
        st.warning(str(error))
        return
    if run.state != shown_state and shown_state in jobs.ACTIVE_STATES and not run.active:
        st.rerun()  # the run just ended: redraw the whole page to show its results
    allowed = jobs.permissions(run, user)
    st.subheader(f"{STATE_ICONS.get(run.state, '')} {literal(run.name)}")
    config = run.config
    dataset_label = literal(run.dataset_label or "–") if allowed.can_see_dataset_name else "(its owner's)"
    st.caption(
        f"Run `{run.id}` · {config.architecture}, {config.epochs} epochs, batch {config.batch_size}, "
        f"{config.optimizer} lr {config.learning_rate:g} · dataset: {dataset_label}"
    )

    if run.state == "queued":
        st.info(
            f"Queued, position {run.queue_position}: {jobs.max_jobs()} job(s) train at a time, "
            "and this one starts when a slot is free."
        )
    elif run.state == "running" and run.progress is None:
        st.info("Starting: loading TensorFlow and the data…")
    elif run.state == "running":
        progress = run.progress
        st.progress(
            min(1.0, progress["batch"] / max(1, progress["batches"])),
            text=f"Epoch {progress['epoch']}/{progress['epochs']} · batch {progress['batch']}/{progress['batches']}",
        )
        a, b, c = st.columns(3)
        a.metric("Elapsed", _duration(run.elapsed))
        b.metric("Time left (estimate)", _duration(progress.get("eta")))
        rate = progress.get("images_per_second")
        c.metric("Faces per second", f"{rate:,.0f}" if rate else "–")
        st.progress(progress["fraction"], text=f"Whole run: {progress['fraction']:.0%}")
    elif run.state == "failed" and allowed.manages:
        st.error(f"This run failed: {run.reason or 'no reason recorded'}")
    elif run.state == "failed":
        st.error("This run failed.")
    elif run.state == "cancelled":
        st.warning(f"{(run.reason or 'cancelled').capitalize()}.")

    if message := st.session_state.pop("train_cancel_error", None):
        st.error(message)
    if run.active and allowed.can_cancel:
        if run.cancel_requested:
            st.caption("Cancelling… the run stops after its current batch and keeps its best epoch.")
        else:
            st.button("Cancel this run", key=f"cancel_{run.id}", on_click=_cancel, args=(run.id, user))

    history = jobs.history(run.id)
    if history or run.state == "running":
        st.plotly_chart(_curves_figure(history, config.epochs), key=f"curves_{run.id}")
    if run.state == "failed" and allowed.can_see_dataset_name:  # the log names files and paths
        log = run.run.log_path
        if log.exists():
            with st.expander("Worker log (last lines)"):
                lines = [
                    line
                    for line in log.read_text(errors="replace").splitlines()
                    if not _LOG_NOISE.match(line)
                ]
                st.code("\n".join(lines[-40:]) or "(empty)")


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
        f"{metrics.get('epochs_run', metrics.get('epochs', '?'))} · {_duration(metrics.get('train_seconds'))}",
    )

    classes = list(metrics.get("classes") or metrics["per_class"])
    confusion = np.asarray(metrics["confusion"])
    tabs = st.tabs(["Confusion matrix", "Per class", "Mistakes", "Diagnosis", "Model"])
    with tabs[0]:
        st.markdown("**Confusion matrix** — rows: true class, columns: predicted class.")
        normalise = st.toggle("Normalise rows (share of each true class)", key="train_cm_normalise")
        st.plotly_chart(_confusion_figure(confusion, classes, normalise), key="confusion_matrix")
    with tabs[1]:
        table = (
            pd.DataFrame.from_dict(metrics["per_class"], orient="index").rename_axis("class").reset_index()
        )
        st.dataframe(
            table,
            hide_index=True,
            column_config={
                name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall", "f1")
            },
        )
        st.caption(
            "Precision: of the faces predicted as this class, the share that are. Recall: of the "
            "faces of this class, the share found. F1: their harmonic mean."
        )
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


def _managers(run: jobs.RunInfo) -> str:
    return "its owner and the teacher" if run.owner else "the teacher"


def whose_run(run: jobs.RunInfo, allowed: jobs.Permissions) -> str | None:
    """One sentence on why a run's faces, model or controls are hidden; None when nothing is."""
    if allowed.manages:
        return None
    if run.owner is None:
        return (
            "This run belongs to no one (it predates this server's users, or came from the command line): "
            "you see its curves and scores; only the teacher manages it."
        )
    if run.shared:
        return (
            "A classmate's run, shared with the class: you may see its faces and use its model; "
            "only its owner and the teacher manage it."
        )
    return (
        "A classmate's run: you see its curves and scores; its faces, model and controls are for its "
        "owner and the teacher."
    )


def mistakes_gallery(run: jobs.RunInfo, classes: list[str], confusion: np.ndarray) -> None:
    stamp = run.run.file(PREDICTIONS).stat().st_mtime if run.run.file(PREDICTIONS).exists() else 0.0
    predictions = _val_predictions(str(run.run_dir), stamp)
    if predictions is None:
        st.caption("This run has no readable validation predictions.")
        return
    labels, probabilities = predictions["labels"], predictions["probabilities"]
    predicted = probabilities.argmax(axis=1)
    off_diagonal = confusion - np.diag(np.diag(confusion))
    if off_diagonal.sum() == 0:
        st.success("No validation face was misclassified.")
        return
    worst_true, worst_pred = np.unravel_index(off_diagonal.argmax(), off_diagonal.shape)
    a, b = st.columns(2)
    true_name = a.selectbox("True class", classes, index=int(worst_true), key=f"mistake_true_{run.id}")
    others = [name for name in classes if name != true_name]
    pred_key = f"mistake_pred_{run.id}"
    if st.session_state.get(pred_key) not in others:  # first visit, or the true class just took its value
        st.session_state[pred_key] = classes[worst_pred] if classes[worst_pred] in others else others[0]
    pred_name = b.selectbox("Predicted as", others, key=pred_key)
    true_index, pred_index = classes.index(true_name), classes.index(pred_name)
    rows = np.flatnonzero((labels == true_index) & (predicted == pred_index))
    st.caption(
        f"{len(rows)} {literal(true_name)} face(s) predicted as {literal(pred_name)}"
        + (f"; the {GALLERY_SIZE} most confident shown." if len(rows) > GALLERY_SIZE else ".")
    )
    rows = rows[np.argsort(-probabilities[rows, pred_index])][:GALLERY_SIZE]
    columns = st.columns(8)
    for slot, row in enumerate(rows):
        columns[slot % 8].image(
            predictions["images"][row],
            width=96,
            caption=f"{pred_name} {probabilities[row, pred_index]:.0%} · {true_name} {probabilities[row, true_index]:.0%}",
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


def model_actions(run: jobs.RunInfo) -> None:
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
    fresh = tflite.exists() and tflite.stat().st_mtime >= (model_dir / "model.keras").stat().st_mtime
    if fresh:
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


def _whose(run: jobs.RunInfo, user: User) -> str:
    if run.owner is not None and run.owner == user.id:
        return "you"
    if run.owner is None:
        return "no one"
    if user.is_teacher:
        return run.owner
    return "classmate, shared" if run.shared else "classmate"


def leaderboard(runs: list[jobs.RunInfo], user: User) -> None:
    finished = sorted((run for run in runs if run.accuracy is not None), key=lambda run: -run.accuracy)
    if not finished:
        return
    st.subheader("Leaderboard")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "rank": rank,
                    "name": run.name,
                    "whose": _whose(run, user),
                    "architecture": run.config.architecture,
                    "epochs": run.config.epochs,
                    "val. accuracy": run.accuracy,
                    "macro F1": (run.metrics or {}).get("macro_f1"),
                }
                for rank, run in enumerate(finished[:10], start=1)
            ]
        ),
        hide_index=True,
        column_config={
            "val. accuracy": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "macro F1": st.column_config.NumberColumn(format="%.3f"),
        },
    )


def runs_section(runs: list[jobs.RunInfo], dataset, user: User) -> None:
    st.header("All runs")
    if runs and hosted():
        leaderboard(runs, user)
    if runs:
        visible = {run.id: jobs.permissions(run, user) for run in runs}
        table = pd.DataFrame(
            [
                {
                    "run": run.id,
                    "name": run.name,
                    **({"whose": _whose(run, user)} if hosted() else {}),
                    "state": run.state,
                    "architecture": run.config.architecture,
                    "epochs": run.config.epochs,
                    "batch": run.config.batch_size,
                    "lr": run.config.learning_rate,
                    "optimizer": run.config.optimizer,
                    "augment": run.config.augment is not None,
                    "val. accuracy": run.accuracy,
                    "macro F1": (run.metrics or {}).get("macro_f1"),
                    "minutes": round(run.elapsed / 60, 1) if run.elapsed is not None else None,
                    "dataset": run.dataset_label if visible[run.id].can_see_dataset_name else "(its owner's)",
                }
                for run in runs
            ]
        )
        st.dataframe(
            table,
            hide_index=True,
            column_config={
                "val. accuracy": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
                "macro F1": st.column_config.NumberColumn(format="%.3f"),
                "lr": st.column_config.NumberColumn(format="%g"),
            },
        )
        compare_runs(runs)
    sweep_form(dataset, user)
    sweep_results(runs, user)


def compare_runs(runs: list[jobs.RunInfo]) -> None:
    with_curves = [run for run in runs if run.run.has_history]
    if len(with_curves) < 1:
        return
    labels = {run.id: f"{run.id} · {run.name}" for run in with_curves}
    legend = {label: html.escape(label) for label in labels.values()}  # plotly renders some HTML
    if "train_compare" not in st.session_state:
        st.session_state["train_compare"] = [run.id for run in with_curves if run.state == "finished"][:3]
    # Runs may have been deleted since the last visit: keep only those still listed.
    st.session_state["train_compare"] = [i for i in st.session_state["train_compare"] if i in labels]
    chosen = st.multiselect(
        "Compare validation accuracy of", list(labels), format_func=labels.get, key="train_compare"
    )
    rows = []
    for run_id in chosen:
        for i, row in enumerate(jobs.history(run_id)):
            value = row.get("val_accuracy", row.get("accuracy"))
            rows.append(
                {"run": legend[labels[run_id]], "epoch": int(row.get("epoch", i)) + 1, "val. accuracy": value}
            )
    if rows:
        figure = px.line(pd.DataFrame(rows), x="epoch", y="val. accuracy", color="run", markers=True)
        figure.update_layout(height=360, yaxis_tickformat=".0%", legend={"orientation": "h", "y": -0.3})
        st.plotly_chart(figure, key="compare_curves")


def sweep_form(dataset, user: User) -> None:
    st.subheader("Sweep: batch size × epochs")
    st.caption(
        "Queues one run per combination, with every other setting as configured above (the "
        "internship report's Table 1 compared batch sizes 32–256 at 50 and 100 epochs)."
    )
    with st.form("train_sweep"):
        a, b = st.columns(2)
        batch_sizes = a.multiselect("Batch sizes", BATCH_SIZES, default=[32, 64, 128, 256])
        epochs = b.multiselect("Epochs", [1, 2, 5, 10, 20, 30, 50, 100], default=[50, 100])
        queued = st.form_submit_button("Queue sweep", disabled=dataset is None)
    if queued:
        if not batch_sizes or not epochs:
            st.error("Choose at least one batch size and one number of epochs.")
            return
        try:
            ids = jobs.sweep(
                dataset,
                _config_from_widgets(),
                {"batch_size": sorted(batch_sizes), "epochs": sorted(epochs)},
                st.session_state["dataset_label"],
                owner=user.id,
                once=True,
            )
        except QuotaError as error:
            st.error(str(error))
        except (ValueError, jobs.JobError) as error:
            st.error(f"Cannot queue the sweep: {error}")
        else:
            # Rerun so the tables below list the new runs; the message survives in session state.
            st.session_state["train_sweep_message"] = f"Queued {len(ids)} runs; they train one after another."
            st.rerun()
    if message := st.session_state.pop("train_sweep_message", None):
        st.success(message)


def sweep_results(runs: list[jobs.RunInfo], user: User) -> None:
    sweeps: dict[str, list[jobs.RunInfo]] = {}
    for run in runs:
        if run.sweep:
            sweeps.setdefault(run.sweep["id"], []).append(run)
    if not sweeps:
        return
    labels = {
        sid: f"sweep {sid} ({sum(r.state == 'finished' for r in group)}/{len(group)} done)"
        for sid, group in sweeps.items()
    }
    if st.session_state.get("train_sweep_shown") not in sweeps:
        st.session_state["train_sweep_shown"] = next(iter(sweeps))  # the newest sweep
    chosen = st.selectbox("Sweep results", list(sweeps), format_func=labels.get, key="train_sweep_shown")
    group = sweeps[chosen]
    keys = list(group[0].sweep["values"])
    table = pd.DataFrame(
        [
            {
                **run.sweep["values"],
                "state": run.state,
                "val. accuracy": run.accuracy,
                "minutes": round(run.elapsed / 60, 1) if run.elapsed else None,
                "run": run.id,
            }
            for run in group
        ]
    ).sort_values(keys)
    st.dataframe(
        table,
        hide_index=True,
        column_config={"val. accuracy": st.column_config.NumberColumn(format="percent")},
    )
    unfinished = [run.id for run in group if run.active and jobs.permissions(run, user).can_cancel]
    if unfinished and st.button(
        f"Cancel this sweep's {len(unfinished)} unfinished run(s)", key="train_sweep_cancel"
    ):
        for run_id in unfinished:
            jobs.cancel(run_id, user=user)
        st.rerun()
    done = table.dropna(subset=["val. accuracy"])
    if done.empty:
        return
    if len(keys) == 2:
        figure = px.scatter(
            done,
            x=keys[0],
            y="val. accuracy",
            color=done[keys[1]].astype(str),
            log_x=True,
            labels={"color": keys[1]},
            size_max=12,
        )
        figure.update_traces(marker={"size": 12})
        figure.update_layout(yaxis_tickformat=".0%")
    else:
        figure = px.parallel_coordinates(done, dimensions=[*keys, "val. accuracy"], color="val. accuracy")
    figure.update_layout(height=360)
    st.plotly_chart(figure, key="sweep_chart")


# --- the page ---------------------------------------------------------------------------------

st.title("Train a model")
st.caption(
    "Training runs in its own process on the server: clicking around, reloading the page or closing "
    "the browser never stops it. Come back to this page to find it again."
)

try:
    current_dataset = get_dataset()
except DatasetError as error:
    st.error(f"The dataset in use cannot be loaded: {error} Choose another one on the Data page.")
    current_dataset = None

user = current_user()
configure_section(current_dataset, user)

st.header("Watch a run")
all_runs = jobs.list_runs()
if not all_runs:
    st.info("No runs yet: configure one above and press **Start training**.")
else:
    run_ids = [run.id for run in all_runs]
    if st.session_state.get("train_run") not in run_ids:
        st.session_state["train_run"] = run_ids[0]
    by_id = {run.id: run for run in all_runs}
    pick, remove = st.columns([5, 1], vertical_alignment="bottom")
    selected = by_id[
        pick.selectbox("Run", run_ids, format_func=lambda i: _run_label(by_id[i]), key="train_run")
    ]
    allowed = jobs.permissions(selected, user)
    if allowed.manages:  # a run from the command line shows a disabled popover, as a hint
        with remove.popover("Delete…", disabled=selected.active or not allowed.can_delete):
            st.caption(f"Delete run {selected.id} and everything it saved?")
            if st.button("Delete for good", type="primary", key="train_delete"):
                try:
                    jobs.delete_run(selected.id, user=user)
                except jobs.JobError as error:
                    st.error(str(error))
                else:
                    if st.session_state.get("model_dir", "").startswith(str(selected.run_dir)):
                        del st.session_state["model_dir"]  # init_state restores the default model
                    del st.session_state["train_run"]
                    st.rerun()
    if reason := whose_run(selected, allowed):
        st.caption(reason)
    elif hosted() and allowed.can_share:
        # The key follows the state, so a share made elsewhere (the teacher) shows on the next run.
        st.toggle(
            "Share with the class",
            value=selected.shared,
            key=f"train_share_{selected.id}_{selected.shared}",
            on_change=jobs.share,
            args=(selected.id, user, not selected.shared),
            help="Classmates may then see this run's validation faces and use or download its model.",
        )
    # NOTE: only this fragment refreshes while a run is active; the rest of the page stays put.
    live = st.fragment(live_view, run_every=REFRESH_SECONDS if selected.active else None)
    live(selected.id, selected.state, user)
    if not selected.active:
        results_section(selected, allowed)

runs_section(all_runs, current_dataset, user)
