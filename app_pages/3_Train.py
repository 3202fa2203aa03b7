"""Train a model in the background, watch it learn, and read what it learned."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fertools import jobs, models
from fertools.config import CLASS_WEIGHTS, OPTIMIZERS, PRESETS, SCHEDULES
from fertools.data import DatasetError
from fertools.estimate import LARGE_FOR_CPU, estimate_run, format_duration
from fertools.layers import layer_rows
from fertools.users import MiB, QuotaError, Quotas, User, hosted
from ui import projector
from ui import train_figures as figures
from ui import train_form as form
from ui.common import get_dataset, page_setup
from ui.identity import current_user, literal
from ui.train_results import results_section
from ui.train_runs import runs_section

page_setup("Train", "🏋️")

#: Seconds between refreshes of the live view while a run is queued or running.
REFRESH_SECONDS = 1.5
STATE_ICONS = {"queued": "⏳", "running": "🏃", "finished": "✅", "failed": "❌", "cancelled": "🛑"}

form.restore(st.session_state)


# --- cached helpers ---------------------------------------------------------------------------


@st.cache_data(max_entries=16, show_spinner="Building the model to list its layers…")
def _layer_table(name: str, num_classes: int) -> tuple[int, pd.DataFrame]:
    """Parameter count and one row per layer of a freshly built ``name``."""
    model = models.create(name, num_classes)
    rows = [
        {"layer": row.name, "type": row.kind, "output shape": row.output_shape, "parameters": row.parameters}
        for row in layer_rows(model)
    ]
    return models.count_params(model), pd.DataFrame(rows)


# --- configuring a run ------------------------------------------------------------------------


def architecture_panel(dataset) -> None:
    names = models.list_models()
    if st.session_state["train_arch"] not in names:
        st.session_state["train_arch"] = names[0]
    name = st.selectbox(form.label("train_arch"), names, key="train_arch")
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
        on_change=form.apply_preset,
        args=(st.session_state,),
        help="A preset sets every setting on this form, its augmentation included.",
    )
    st.text_input("Run name (optional)", key="train_name", placeholder="e.g. dropout 0.5, 30 epochs")


def settings_panel() -> None:
    label = form.label
    a, b = st.columns(2)
    a.number_input(
        label("train_epochs"),
        min_value=1,
        max_value=1000,
        step=1,
        key="train_epochs",
        on_change=form.adapt_to_epochs,
        args=(st.session_state,),
    )
    b.select_slider(label("train_batch"), form.BATCH_SIZES, key="train_batch")
    a.select_slider(label("train_lr"), form.LEARNING_RATES, key="train_lr", format_func=lambda v: f"{v:g}")
    b.selectbox(label("train_optimizer"), OPTIMIZERS, key="train_optimizer")
    a.selectbox(
        label("train_schedule"),
        SCHEDULES,
        key="train_schedule",
        help="cosine: decays smoothly to 1% of the rate; plateau: halves it when validation "
        "loss stalls for 3 epochs.",
    )
    b.selectbox(
        label("train_class_weights"),
        CLASS_WEIGHTS,
        key="train_class_weights",
        help="Weigh rare classes (FER2013's 'disgust') up: balanced fully, sqrt gently.",
    )
    a.slider(label("train_smoothing"), 0.0, 0.3, step=0.05, key="train_smoothing")
    b.slider(label("train_mixup"), 0.0, 1.0, step=0.1, key="train_mixup")
    a.slider(
        label("train_val_fraction"),
        0.05,
        0.5,
        step=0.05,
        key="train_val_fraction",
        help="Used only when the dataset has no validation split of its own.",
    )
    b.number_input(label("train_early_stopping"), min_value=0, max_value=100, key="train_early_stopping")
    with st.expander("More settings"):
        c, d = st.columns(2)
        c.number_input(label("train_seed"), min_value=0, max_value=2**31 - 1, key="train_seed")
        d.number_input(label("train_warmup"), min_value=0, max_value=50, key="train_warmup")
        c.text_input(
            label("train_cycles"),
            key="train_cycles",
            placeholder="e.g. 30, 60",
            help="Warm restarts: the cosine schedule restarts after each cycle; the cycles must add "
            "up to the epochs (changing Epochs rescales them). Empty: one cycle.",
        )
        c.number_input(
            label("train_average"),
            min_value=0,
            max_value=1000,
            key="train_average",
            help="Stochastic weight averaging: the model averages the weights of the final epochs "
            "and is kept when it beats the best single epoch on validation.",
        )
        d.number_input(
            label("train_momentum"), min_value=0.0, max_value=0.999, step=0.05, key="train_momentum"
        )
        c.number_input(
            label("train_weight_decay"),
            min_value=0.0,
            max_value=0.1,
            step=1e-4,
            format="%.5f",
            key="train_weight_decay",
        )
    if note := st.session_state.pop(form.NOTE_KEY, None):
        st.info(note)
    augmentation_panel()


def augmentation_panel() -> None:
    st.toggle("Augment the training images", key=form.AUGMENT_TOGGLE)
    if not st.session_state[form.AUGMENT_TOGGLE]:
        return
    augment, origin = form.augmentation(st.session_state)
    settings = ", ".join(f"{k} {v}" for k, v in augment.to_dict().items() if v)
    st.caption(f"Augmentation ({origin}): {settings or 'nothing switched on'}.")
    if st.session_state.get(form.AUGMENT_KEY) and st.session_state.get("augment_config"):
        st.button(
            "Use the Augmentation page's settings instead",
            on_click=form.follow_augmentation_page,
            args=(st.session_state,),
        )


@st.cache_resource(show_spinner=False)
def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def run_outlook(dataset, runs: list[jobs.RunInfo]) -> None:
    """Before Start: how long the run should take here, and a warning for a big network on a CPU."""
    try:
        config = form.config_from(st.session_state)
    except form.FormError:
        return  # the form shows its own sentence
    train = dataset.subset("train")
    faces = len(train) if "val" in dataset.splits else round(len(train) * (1 - config.val_fraction))
    outlook = estimate_run(config.architecture, config.batch_size, config.epochs, faces, runs)
    st.caption(outlook.sentence(config.architecture))
    parameters, _ = _layer_table(config.architecture, len(dataset.classes))
    if parameters > LARGE_FOR_CPU and not _has_gpu():
        st.warning(
            f"{config.architecture} has {parameters:,} parameters and this server has no GPU: each epoch "
            "takes minutes, not seconds. For a class, the default network trains far faster; or train "
            "this one where a GPU is (notebooks/train_on_a_gpu.ipynb)."
        )


def start_section(dataset, user: User, runs: list[jobs.RunInfo]) -> bool:
    """The dataset, the time estimate and Start; True when a run was queued by this click."""
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
    run_outlook(dataset, runs)
    if not st.button("Start training", type="primary"):
        return False
    try:
        run_id = jobs.submit(
            dataset,
            form.config_from(st.session_state),
            st.session_state["train_name"].strip() or None,
            st.session_state["dataset_label"],
            owner=user.id,
            once=True,  # a double click queues one run, not two
        )
    except (QuotaError, form.FormError) as error:
        st.error(str(error))
    except (ValueError, jobs.JobError) as error:
        st.error(f"Cannot start: {error}")
    else:
        st.session_state["train_run"] = run_id
        st.toast(f"Run {run_id} queued; it trains in the background, so you can leave this page.")
        return True
    return False


def configure_section(dataset, user: User, runs: list[jobs.RunInfo]) -> bool:
    """The form and Start; True when a run was queued by this run of the page."""
    st.header("Configure a run")
    left, right = st.columns([1, 1], gap="large")
    with left:
        architecture_panel(dataset)
    with right:
        settings_panel()
    return dataset is not None and start_section(dataset, user, runs)


# --- watching a run ---------------------------------------------------------------------------


def _run_label(run: jobs.RunInfo) -> str:
    text = f"{STATE_ICONS.get(run.state, '')} {run.id} · {run.name}"
    if run.accuracy is not None:
        text += f" · {run.accuracy:.1%}"
    return text


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
    run_status(run, allowed)
    if message := st.session_state.pop("train_cancel_error", None):
        st.error(message)
    if run.active and allowed.can_cancel:
        if run.cancel_requested:
            st.caption("Cancelling… the run stops after its current batch and keeps its best epoch.")
        else:
            st.button("Cancel this run", key=f"cancel_{run.id}", on_click=_cancel, args=(run.id, user))

    history = jobs.history(run.id)
    if history or run.state == "running":
        curve = (run.progress or {}).get("curve") if run.state == "running" else None
        projector.chart(figures.curves_figure(history, config.epochs, curve), key=f"curves_{run.id}")
    if run.state == "failed" and allowed.can_see_dataset_name:  # the log names files and paths
        worker_log(run)


def run_status(run: jobs.RunInfo, allowed: jobs.Permissions) -> None:
    if run.state == "queued":
        st.info(
            f"Queued, position {run.queue_position}: {jobs.max_jobs()} job(s) train at a time, "
            "and this one starts when a slot is free."
        )
    elif run.state == "running" and run.progress is None:
        st.info("Starting: loading TensorFlow and the data…")
    elif run.state == "running":
        progress_panel(run)
    elif run.state == "failed" and allowed.manages:
        st.error(f"This run failed: {run.reason or 'no reason recorded'}")
    elif run.state == "failed":
        st.error("This run failed.")
    elif run.state == "cancelled":
        st.warning(f"{(run.reason or 'cancelled').capitalize()}.")


def progress_panel(run: jobs.RunInfo) -> None:
    """Where a running run is: its epoch and batch, time and speed, then its evaluation step."""
    progress = run.progress
    evaluating = run.run.read_status().get("phase") == "evaluating"
    if evaluating:
        st.progress(1.0, text="Training done · evaluating the chosen weights and saving the model…")
    else:
        st.progress(
            min(1.0, progress["batch"] / max(1, progress["batches"])),
            text=f"Epoch {progress['epoch']}/{progress['epochs']} · batch {progress['batch']}/{progress['batches']}",
        )
    a, b, c = st.columns(3)
    a.metric("Elapsed", format_duration(run.elapsed))
    b.metric(
        "Time left (estimate)",
        "evaluating" if evaluating else format_duration(progress.get("eta")),
        help="The training still to do; then comes the evaluation step (the validation faces, "
        "and with weight averaging one pass over the training faces) and saving the model.",
    )
    rate = progress.get("images_per_second")
    c.metric("Faces per second", f"{rate:,.0f}" if rate else "–")
    steps = "training done, evaluating" if evaluating else "evaluation and saving follow"
    st.progress(progress["fraction"], text=f"Whole run: {progress['fraction']:.0%} of training · {steps}")


def worker_log(run: jobs.RunInfo) -> None:
    lines = run.run.log_tail()
    if lines is not None:
        with st.expander("Worker log (last lines)"):
            st.code("\n".join(lines) or "(empty)")


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


def watch_section(runs: list[jobs.RunInfo], user: User) -> None:
    st.header("Watch a run")
    if not runs:
        st.info("No runs yet: configure one above and press **Start training**.")
        return
    run_ids = [run.id for run in runs]
    if st.session_state.get("train_run") not in run_ids:
        # A fresh session (a refresh, a new tab): the user's own run in progress first, then
        # their newest, then anyone's newest.
        mine = [run for run in runs if run.owner == user.id]
        active = [run for run in mine if run.active]
        st.session_state["train_run"] = (active or mine or runs)[0].id
    by_id = {run.id: run for run in runs}
    pick, remove = st.columns([5, 1], vertical_alignment="bottom")
    selected = by_id[
        pick.selectbox("Run", run_ids, format_func=lambda i: _run_label(by_id[i]), key="train_run")
    ]
    allowed = jobs.permissions(selected, user)
    if allowed.manages:  # a run from the command line shows a disabled popover, as a hint
        with remove.popover("Delete…", disabled=selected.active or not allowed.can_delete):
            delete_control(selected, user)
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


def delete_control(run: jobs.RunInfo, user: User) -> None:
    st.caption(f"Delete run {run.id} and everything it saved?")
    if not st.button("Delete for good", type="primary", key="train_delete"):
        return
    try:
        jobs.delete_run(run.id, user=user)
    except jobs.JobError as error:
        st.error(str(error))
    else:
        if st.session_state.get("model_dir", "").startswith(str(run.run_dir)):
            del st.session_state["model_dir"]  # init_state restores the default model
        del st.session_state["train_run"]
        st.rerun()


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
# Every run folder is read once per page run; again only when Start has just queued one.
all_runs = jobs.list_runs()
if configure_section(current_dataset, user, all_runs):
    all_runs = jobs.list_runs()
watch_section(all_runs, user)
runs_section(all_runs, current_dataset, user)
form.remember(st.session_state)
