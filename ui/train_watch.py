"""The Train page's "watch a run" half: pick a run, its live status and curves, cancel, share, delete.

The live part is a fragment that reruns itself while the run is queued or running; once the run
ends it hands over to :func:`ui.train_results.results_section`.
"""

from __future__ import annotations

import streamlit as st

from fertools import jobs
from fertools.constants import runs_dir
from fertools.estimate import format_duration
from fertools.users import User, hosted
from ui import projector
from ui import train_figures as figures
from ui.identity import literal
from ui.train_results import results_section

#: Seconds between refreshes of the live view while a run is queued or running.
REFRESH_SECONDS = 1.5
STATE_ICONS = {"queued": "⏳", "running": "🏃", "finished": "✅", "failed": "❌", "cancelled": "🛑"}


def _run_label(run: jobs.RunInfo) -> str:
    """The run picker's line for ``run``: state icon, id, name and accuracy when it has one."""
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
    """One line (or the progress panel) for where ``run`` stands; a failure's reason only to its managers."""
    if run.state == "queued":
        st.info(
            f"Queued, position {run.queue_position}: {jobs.max_jobs()} job(s) train at a time, "
            "and this one starts when a slot is free."
        )
    elif run.state == "running" and run.progress is None:
        asked = teachers_progress(run)
        if asked is None:
            st.info("Starting: loading TensorFlow and the data…")
        else:
            done, total = asked
            st.progress(
                done / total,
                text=f"Distillation: the teachers have answered {done:,} of {total:,} faces "
                "(once per run; training starts after them)…",
            )
    elif run.state == "running":
        progress_panel(run)
    elif run.state == "failed" and allowed.manages:
        st.error(f"This run failed: {run.reason or 'no reason recorded'}")
    elif run.state == "failed":
        st.error("This run failed.")
    elif run.state == "cancelled":
        st.warning(f"{(run.reason or 'cancelled').capitalize()}.")


def teachers_progress(run: jobs.RunInfo) -> tuple[int, int] | None:
    """(faces answered, faces to answer) while a distilled run's teachers are at work, else None."""
    status = run.run.read_status()
    asked = status.get("teacher_progress")
    if status.get("phase") != "asking the teachers" or not isinstance(asked, list) or len(asked) != 2:
        return None
    done, total = asked
    if (
        not all(isinstance(n, int) and not isinstance(n, bool) for n in asked)
        or not 0 <= done <= total
        or total == 0
    ):
        return None
    return done, total


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
    """The last lines of the worker's output, folded away; nothing when the run has no log."""
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
    """The run picker, delete and share, the live view, and the results once the run has ended."""
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
    """Inside the Delete… popover: the confirming button, then a rerun without the run."""
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


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _run_states(root: str) -> dict[str, str]:
    # Cached for the whole server: one read of the status files per refresh period, however many
    # students have the page open.
    return jobs.run_states(root)


def _redraw_if_changed(root: str, shown: dict[str, str]) -> None:
    """Rerun the whole page when one of the runs in ``shown`` has started or ended since it was drawn."""
    states = _run_states(root)
    if any(states.get(run_id) != state for run_id, state in shown.items()):
        st.rerun()


def follow_runs(runs: list[jobs.RunInfo], user: User) -> None:
    """Keep the runs table, the sweeps and the overlay current while one of your runs is active.

    Only the watched run's fragment refreshes by itself; without this, a run that starts or a sweep
    that finishes while another run is watched keeps its old state in the tables until a click.
    On a hosted server only the visitor's own runs are followed (the teacher's: all of them), so a
    class's many runs do not redraw every student's page each time one of them ends.
    """
    followed = [run for run in runs if not hosted() or user.is_teacher or run.owner == user.id]
    if not any(run.active for run in followed):
        return
    root = str(runs_dir())
    states = _run_states(root)
    shown = {run.id: states.get(run.id, run.state) for run in followed}
    st.fragment(_redraw_if_changed, run_every=REFRESH_SECONDS)(root, shown)
