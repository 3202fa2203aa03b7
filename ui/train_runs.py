"""The Train page's view of every run: the table, the leaderboard, the overlay and the sweeps.

A sweep is queued in two steps: the form asks, the page shows what it costs (runs, epochs and a
time from the speed measured on this server, see :mod:`fertools.estimate`), and one more click queues it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fertools import jobs
from fertools.estimate import estimate_sweep, format_duration
from fertools.users import QuotaError, User, hosted
from ui import projector
from ui import train_figures as figures
from ui import train_form as form


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
    sweep_form(dataset, user, runs)
    sweep_results(runs, user)


def compare_runs(runs: list[jobs.RunInfo]) -> None:
    with_curves = [run for run in runs if run.run.has_history]
    if not with_curves:
        return
    labels = {run.id: f"{run.id} · {run.name}" for run in with_curves}
    finished = [run.id for run in with_curves if run.state == "finished"]
    if "train_compare" not in st.session_state:
        st.session_state["train_compare"] = finished[:3]  # the newest three
        st.session_state["train_compare_offered"] = set(finished)
    # A run that finished since then joins the overlay once (one the user removed stays removed);
    # runs deleted since the last visit leave it.
    offered = st.session_state.setdefault("train_compare_offered", set())
    new = [run_id for run_id in finished if run_id not in offered]
    offered.update(new)
    kept = dict.fromkeys([*new, *st.session_state["train_compare"]])  # in order, once each
    st.session_state["train_compare"] = [run_id for run_id in kept if run_id in labels]
    chosen = st.multiselect(
        "Compare validation accuracy of", list(labels), format_func=labels.get, key="train_compare"
    )
    figure = figures.compare_figure({labels[run_id]: jobs.history(run_id) for run_id in chosen})
    if figure is not None:
        projector.chart(figure, key="compare_curves")


def sweep_form(dataset, user: User, runs: list[jobs.RunInfo]) -> None:
    st.subheader("Sweep: batch size × epochs")
    st.caption(
        "Queues one run per combination, with every other setting as configured above (the "
        "internship report's Table 1 compared batch sizes 32–256 at 50 and 100 epochs)."
    )
    with st.form("train_sweep"):
        a, b = st.columns(2)
        a.multiselect("Batch sizes", form.SWEEP_BATCH_SIZES, key="train_sweep_batches")
        b.multiselect("Epochs", form.SWEEP_EPOCHS, key="train_sweep_epochs")
        asked = st.form_submit_button("Queue sweep", disabled=dataset is None)
    if asked:
        batch_sizes, epochs = st.session_state["train_sweep_batches"], st.session_state["train_sweep_epochs"]
        if not batch_sizes or not epochs:
            st.error("Choose at least one batch size and one number of epochs.")
            st.session_state.pop("train_sweep_pending", None)
        else:
            st.session_state["train_sweep_pending"] = {
                "batch_size": sorted(batch_sizes),
                "epochs": sorted(epochs),
            }
    if dataset is not None and (grid := st.session_state.get("train_sweep_pending")):
        confirm_sweep(dataset, user, runs, grid)
    if message := st.session_state.pop("train_sweep_message", None):
        st.success(message)


def confirm_sweep(dataset, user: User, runs: list[jobs.RunInfo], grid: dict[str, list[int]]) -> None:
    """What the sweep costs, from the speed measured here, and the one button that queues it."""
    architecture = st.session_state["train_arch"]
    faces = len(dataset.with_validation(st.session_state["train_val_fraction"]).subset("train"))
    estimate = estimate_sweep(grid["batch_size"], grid["epochs"], architecture, faces, runs)
    if estimate.seconds is None:
        timing = (
            f"no run of {architecture} has measured its speed on this server yet, so there is no time "
            "estimate (one short run gives one)"
        )
    else:
        measured = ", ".join(
            f"{s.faces_per_second:,.0f} faces/s at batch {s.batch_size}" for s in estimate.speeds
        )
        timing = (
            f"about {format_duration(estimate.seconds)} of training at the speed measured here ({measured})"
        )
    st.warning(
        f"This sweep queues {estimate.runs} runs of {architecture}, {estimate.epochs:,} epochs in all "
        f"over {faces:,} training faces: {timing}."
    )
    yes, no = st.columns(2)
    if no.button("Don't queue it", key="train_sweep_abandon"):
        del st.session_state["train_sweep_pending"]
        st.rerun()
    if not yes.button(f"Queue these {estimate.runs} runs", type="primary", key="train_sweep_confirm"):
        return
    try:
        ids = jobs.sweep(
            dataset,
            form.config_from(st.session_state),
            grid,
            st.session_state["dataset_label"],
            owner=user.id,
            once=True,
        )
    except (QuotaError, form.FormError) as error:
        st.error(str(error))
    except (ValueError, jobs.JobError) as error:
        st.error(f"Cannot queue the sweep: {error}")
    else:
        # Rerun so the tables below list the new runs; the message survives in session state.
        del st.session_state["train_sweep_pending"]
        st.session_state["train_sweep_message"] = f"Queued {len(ids)} runs; they train one after another."
        st.rerun()


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
    if not done.empty:
        projector.chart(figures.sweep_figure(done, keys), key="sweep_chart")
