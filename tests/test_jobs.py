"""fertools.jobs: background training workers, the queue, cancelling, and dead workers.

Only two tests train (one short epoch each, marked slow); the others hold the
single job slot themselves, so their workers wait in the queue and never load
TensorFlow.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from fertools import jobs
from fertools.config import TrainConfig

#: One short epoch on the tiny set, no augmentation: the cheapest real training run.
ONE_EPOCH = TrainConfig(epochs=1, batch_size=32, augment=None)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def state(run_id: str) -> str:
    return jobs.get_run(run_id).state


def worker_pid(run_id: str) -> int | None:
    run_dir = jobs.get_run(run_id).run_dir
    status = json.loads((run_dir / "status.json").read_text())
    return status.get("pid")


def pid_gone(pid: int) -> bool:
    jobs._reap()  # our own children: reap them so they do not linger as zombies
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture(autouse=True)
def one_slot(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One job at a time; at the end, stop every worker this test started."""
    monkeypatch.setenv("FERLAB_MAX_JOBS", "1")
    yield
    jobs.stop_children()


@contextmanager
def slot_held(runs_root: Path) -> Iterator[None]:
    """Hold the only job slot, as a running job would, so submitted jobs stay queued."""
    folder = runs_root / jobs.SLOTS
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / "slot-0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield
    finally:
        os.close(handle)


@pytest.mark.slow
def test_job_trains_to_finished_and_writes_its_folder(tiny_builtin, ferlab_dirs):
    run_id = jobs.submit(tiny_builtin, ONE_EPOCH, name="tiny", dataset_label="tiny built-in")
    assert run_id[:8].isdigit() and len(run_id.split("-")) == 3
    wait_for(lambda: not jobs.get_run(run_id).active, 300, "the job to end")

    run = jobs.get_run(run_id)
    assert run.state == "finished", (run.reason, (run.run_dir / "worker.log").read_text()[-2000:])
    assert run.run_dir == ferlab_dirs["runs"] / run_id
    assert (run.name, run.dataset_label, run.config) == ("tiny", "tiny built-in", ONE_EPOCH)
    for name in (
        "job.json",
        "status.json",
        "history.csv",
        "metrics.json",
        "progress.json",
        "val_predictions.npz",
        "worker.log",
        "model/model.keras",
        "model/card.json",
    ):
        assert (run.run_dir / name).is_file(), name
    assert run.model_dir == run.run_dir / "model"
    assert 0 <= run.accuracy <= 1 and run.metrics["epochs_run"] == 1
    # The model carries the name the run was given, not its id (issue 16).
    assert json.loads((run.model_dir / "card.json").read_text())["name"] == "tiny" != run.id
    assert run.progress["fraction"] == 1.0
    assert len(jobs.history(run_id)) == 1
    job = json.loads((run.run_dir / "job.json").read_text())
    dataset_file = Path(job["dataset"]["path"])
    assert dataset_file.parent == ferlab_dirs["runs"] / "_datasets" and dataset_file.is_file()
    assert [r.id for r in jobs.list_runs()] == [run_id]

    jobs.delete_run(run_id)
    assert not run.run_dir.exists() and not dataset_file.exists()
    assert jobs.list_runs() == []


@pytest.mark.slow
def test_second_job_queues_behind_a_running_one_and_both_cancel(tiny_builtin):
    long_run = TrainConfig(epochs=500, batch_size=32, augment=None)
    first = jobs.submit(tiny_builtin, long_run, name="first")
    second = jobs.submit(tiny_builtin, long_run, name="second")
    # Wait until the first is really training (TensorFlow loaded, batches running).
    wait_for(lambda: jobs.get_run(first).progress is not None, 300, "the first job to train")

    assert state(first) == "running" and jobs.get_run(first).queue_position is None
    queued = jobs.get_run(second)
    log = (queued.run_dir / "worker.log").read_text()[-1500:]
    assert (queued.state, queued.queue_position) == ("queued", 1), (queued, jobs.get_run(first), log)
    assert jobs.queue_position(second) == 1

    jobs.cancel(second)  # queued: cancelled at once, and its worker leaves without training
    assert state(second) == "cancelled"
    pid = worker_pid(second)
    wait_for(lambda: pid_gone(pid), 30, "the queued worker to exit")
    assert not (jobs.get_run(second).run_dir / "history.csv").exists()

    jobs.cancel(first)  # running: stops at its next batch and keeps its best epoch
    wait_for(lambda: not jobs.get_run(first).active, 120, "the running job to stop")
    run = jobs.get_run(first)
    assert run.state == "cancelled" and run.reason.startswith("cancelled by the user")
    assert len(jobs.history(first)) < 500


def test_queue_positions_follow_submission_order_and_dataset_is_saved_once(tiny_builtin, ferlab_dirs):
    with slot_held(ferlab_dirs["runs"]):
        ids = [jobs.submit(tiny_builtin, ONE_EPOCH) for _ in range(3)]
        wait_for(lambda: all(worker_pid(i) for i in ids), 30, "the workers to start")
        assert [jobs.queue_position(i) for i in ids] == [1, 2, 3]
        assert jobs.run_states() == dict.fromkeys(ids, "queued")
        assert [r.id for r in jobs.list_runs()] == ids[::-1]  # newest first
        assert len(list((ferlab_dirs["runs"] / "_datasets").glob("*.npz"))) == 1

        jobs.cancel(ids[0])
        assert state(ids[0]) == "cancelled"
        assert jobs.run_states()[ids[0]] == "cancelled"
        assert [jobs.queue_position(i) for i in ids] == [None, 1, 2]
        for run_id in ids[1:]:
            jobs.cancel(run_id)
        pids = [worker_pid(i) for i in ids]
        wait_for(lambda: all(pid_gone(p) for p in pids), 30, "the queued workers to exit")
    assert {state(i) for i in ids} == {"cancelled"}
    assert not any((jobs.get_run(i).run_dir / "config.json").exists() for i in ids)  # never trained


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_worker_runs_at_a_lower_priority_than_the_server(tiny_builtin, ferlab_dirs):
    # Training must not starve the pages (issue 13): the worker lowers its own priority first thing.
    from fertools.runtime import WORKER_NICENESS, autogroup_niceness

    with slot_held(ferlab_dirs["runs"]):
        run_id = jobs.submit(tiny_builtin, ONE_EPOCH)
        wait_for(lambda: worker_pid(run_id), 30, "the worker to start")
        pid = worker_pid(run_id)
        assert niceness(pid) == min(19, niceness(os.getpid()) + WORKER_NICENESS)
        # The worker has a session (so, with Linux's autogroup, a scheduler group) of its own:
        # that group is lowered too, or the nice would count for nothing against the server.
        if autogroup_niceness(pid) is not None:
            assert autogroup_niceness(pid) == niceness(pid)
        # Linux: it runs only on CPU time the pages leave idle (SCHED_IDLE, inherited by its threads).
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        jobs.cancel(run_id)
        wait_for(lambda: pid_gone(pid), 30, "the queued worker to exit")


def test_dead_worker_is_reported_failed(tiny_builtin, ferlab_dirs):
    with slot_held(ferlab_dirs["runs"]):
        run_id = jobs.submit(tiny_builtin, ONE_EPOCH)
        wait_for(lambda: worker_pid(run_id) is not None, 30, "the worker to start")
        assert state(run_id) == "queued"
        os.kill(worker_pid(run_id), signal.SIGKILL)
        wait_for(lambda: state(run_id) == "failed", 10, "the dead worker to be noticed")
    run = jobs.get_run(run_id)
    assert run.reason == jobs.DEAD_WORKER
    assert json.loads((run.run_dir / "status.json").read_text())["state"] == "failed"  # recorded
    jobs.delete_run(run_id)
    assert not run.run_dir.exists()


def test_sweep_queues_the_cartesian_product(tiny_builtin, ferlab_dirs):
    grid = {"batch_size": [32, 64], "epochs": [1, 2]}
    with slot_held(ferlab_dirs["runs"]):
        ids = jobs.sweep(tiny_builtin, ONE_EPOCH, grid, dataset_label="tiny")
        runs = [jobs.get_run(i) for i in ids]
        assert [(r.config.batch_size, r.config.epochs) for r in runs] == [(32, 1), (32, 2), (64, 1), (64, 2)]
        assert len({r.sweep["id"] for r in runs}) == 1
        assert runs[3].sweep["values"] == {"batch_size": 64, "epochs": 2}
        assert [r.queue_position for r in runs] == [1, 2, 3, 4]
        for run_id in ids:
            jobs.cancel(run_id)
    with pytest.raises(ValueError, match="cannot sweep over colour"):
        jobs.sweep(tiny_builtin, ONE_EPOCH, {"colour": ["red"]})
    with pytest.raises(ValueError, match="at least 1"):
        jobs.sweep(tiny_builtin, ONE_EPOCH, {"epochs": [1, 0]})
    assert len(jobs.list_runs()) == 4  # a bad grid queues nothing


def test_refusals_are_one_sentence(tiny_builtin, ferlab_dirs):
    with pytest.raises(jobs.JobError, match="there is no run"):
        jobs.get_run("19990101-000000-dead")
    with pytest.raises(ValueError, match="learning rate"):
        jobs.submit(tiny_builtin, TrainConfig(learning_rate=0.0))
    with slot_held(ferlab_dirs["runs"]):
        run_id = jobs.submit(tiny_builtin, ONE_EPOCH)
        with pytest.raises(jobs.JobError, match="still queued"):
            jobs.delete_run(run_id)
        jobs.cancel(run_id)


def test_command_line_runs_are_listed_read_only(ferlab_dirs):
    run_dir = ferlab_dirs["runs"] / "fer-cli"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(ONE_EPOCH.to_dict()))
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": 2**22 + 7, "started": 1.0}))
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    [run] = jobs.list_runs()
    assert (run.id, run.managed, run.config) == ("fer-cli", False, ONE_EPOCH)
    assert run.state == "failed"  # its process is gone...
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"  # ...but we never write
    with pytest.raises(jobs.JobError, match="command line"):
        jobs.cancel("fer-cli")
    with pytest.raises(jobs.JobError, match="command line"):
        jobs.delete_run("fer-cli")


def test_a_double_click_on_start_queues_one_run(tiny_builtin, ferlab_dirs):
    with slot_held(ferlab_dirs["runs"]):
        first = jobs.submit(tiny_builtin, ONE_EPOCH, name="tiny", once=True)
        again = jobs.submit(tiny_builtin, ONE_EPOCH, name="tiny", once=True)
        other = jobs.submit(tiny_builtin, replace(ONE_EPOCH, seed=1), name="tiny", once=True)
        assert again == first and other != first
        assert len(jobs.list_runs()) == 2
        # Start pressed again while the first is being cancelled (its worker not yet gone): a new run.
        jobs.get_run(first).run.request_cancel()  # what cancel() asks of a running worker
        assert jobs.get_run(first).active
        after_cancel = jobs.submit(tiny_builtin, ONE_EPOCH, name="tiny", once=True)
        assert after_cancel not in (first, other)
        for run_id in (first, other, after_cancel):
            jobs.cancel(run_id)
