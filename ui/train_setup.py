"""The Train page's "configure a run" half: the architecture, the settings, the outlook and Start.

Widgets only; the form's values and checks live in :mod:`ui.train_form`, the estimate in
:mod:`fertools.estimate`, queueing in :mod:`fertools.jobs`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fertools import jobs, limits, models
from fertools.config import CLASS_WEIGHTS, OPTIMIZERS, PRESETS, SCHEDULES
from fertools.estimate import LARGE_FOR_CPU, estimate_run
from fertools.layers import layer_rows
from fertools.users import MiB, QuotaError, Quotas, User, hosted
from ui import train_form as form
from ui.identity import literal


@st.cache_data(max_entries=16, show_spinner="Building the model to list its layers…")
def _layer_table(name: str, num_classes: int) -> tuple[int, pd.DataFrame]:
    """Parameter count and one row per layer of a freshly built ``name``."""
    model = models.create(name, num_classes)
    rows = [
        {"layer": row.name, "type": row.kind, "output shape": row.output_shape, "parameters": row.parameters}
        for row in layer_rows(model)
    ]
    return models.count_params(model), pd.DataFrame(rows)


def architecture_panel(dataset) -> None:
    """The architecture picker with its size and layers, the preset picker and the run name."""
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
    st.text_input(
        "Run name (optional)",
        key="train_name",
        max_chars=limits.MAX_RUN_NAME,
        placeholder="e.g. dropout 0.5, 30 epochs",
    )


def settings_panel() -> None:
    """Every training setting, the note a preset or Epochs left, then the augmentation."""
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
    """The augmentation switch and, when on, which settings the run takes and from where."""
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
    """Whether TensorFlow sees a GPU on this server (asked once per server process)."""
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
