"""The Train page (app_pages/3_Train.py) under Streamlit's AppTest.

The page reads the dataset in use from session state; the tests point it at a
tiny built-in set saved as an .npz, so the one real training run takes seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fertools import jobs
from fertools.config import PRESETS, TrainConfig
from fertools.data import save_npz
from fertools.evaluate import report

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "3_Train.py")


@pytest.fixture
def tiny_source(tiny_builtin, ferlab_dirs) -> str:
    path = ferlab_dirs["data"] / "tiny.npz"
    save_npz(tiny_builtin, path)
    return str(path)


@pytest.fixture(autouse=True)
def stop_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One job at a time; at the end, stop and reap every worker the page started."""
    monkeypatch.setenv("FERLAB_MAX_JOBS", "1")
    yield
    jobs.stop_children()


@pytest.fixture
def fake_worker() -> Iterator[int]:
    """A live process whose command line looks like a FER Lab worker's (it only sleeps)."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "fertools.jobs"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def fake_running_run(runs_root: Path, pid: int) -> str:
    """A run folder as a worker writes it 2 batches into epoch 3, without training anything."""
    run_id = "20261120-120000-f00d"
    run_dir = runs_root / run_id
    run_dir.mkdir(parents=True)
    now = time.time()
    job = {
        "id": run_id,
        "name": "pretend run",
        "created": now - 60,
        "config": TrainConfig(epochs=10).to_dict(),
        "dataset": {"label": "tiny built-in"},
        "pid": pid,
    }
    (run_dir / "job.json").write_text(json.dumps(job))
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": pid, "started": now - 50}))
    progress = {
        "epoch": 3,
        "epochs": 10,
        "batch": 2,
        "batches": 4,
        "elapsed": 40.0,
        "eta": 120.0,
        "images_per_second": 50.0,
        "logs": {},
        "epoch_end": False,
        "fraction": 0.25,
    }
    (run_dir / "progress.json").write_text(json.dumps(progress))
    rows = ["epoch,accuracy,loss,val_accuracy,val_loss", "0,0.2,1.9,0.21,1.8", "1,0.3,1.7,0.28,1.7"]
    (run_dir / "history.csv").write_text("\n".join(rows) + "\n")
    return run_id


def fake_finished_run(runs_root: Path, dataset) -> str:
    """A finished 12-epoch run that overfitted, with metrics and validation predictions, but no model."""
    run_id = "20261120-110000-beef"
    run_dir = runs_root / run_id
    run_dir.mkdir(parents=True)
    job = {
        "id": run_id,
        "name": "finished run",
        "created": time.time() - 600,
        "config": TrainConfig(epochs=12).to_dict(),
        "dataset": {"label": "tiny built-in"},
    }
    (run_dir / "job.json").write_text(json.dumps(job))
    (run_dir / "status.json").write_text(json.dumps({"state": "finished", "started": 1.0, "finished": 61.0}))
    rows = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    for epoch in range(12):  # training runs away from validation; validation loss turns up at epoch 5
        rows.append(
            f"{epoch},{0.3 + 0.06 * epoch},{1.8 - 0.15 * epoch},{min(0.5, 0.3 + 0.05 * epoch)},"
            f"{1.5 - 0.1 * min(epoch, 4) + 0.08 * max(0, epoch - 4)}"
        )
    (run_dir / "history.csv").write_text("\n".join(rows) + "\n")
    val = dataset.subset("val")
    probabilities = np.random.default_rng(0).dirichlet(np.ones(7), size=len(val)).astype("float32")
    evaluation = report(probabilities, val.labels, dataset.classes)
    (run_dir / "metrics.json").write_text(
        json.dumps({**evaluation.to_dict(), "epochs": 12, "train_seconds": 60})
    )
    np.savez_compressed(
        run_dir / "val_predictions.npz",
        images=val.images,
        labels=val.labels,
        probabilities=probabilities,
        classes=np.array(dataset.classes),
    )
    return run_id


def app(source: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["dataset_source"] = source
    at.session_state["dataset_label"] = "tiny built-in"
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "success", "warning", "error")
        for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def test_page_renders_with_no_runs(tiny_source):
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train a model"
    assert "No runs yet" in texts(at)
    assert at.selectbox(key="train_arch").value == "default"
    assert "140 faces" in texts(at)  # the dataset in use is described
    assert button(at, "Start training")


def test_bad_dataset_is_one_sentence(tiny_source, ferlab_dirs):
    at = app(str(ferlab_dirs["data"] / "missing.csv")).run()
    assert not at.exception, at.exception
    assert "cannot be loaded" in at.error[0].value
    assert not [b for b in at.button if b.label == "Start training"]


def test_preset_fills_in_settings(tiny_source):
    at = app(tiny_source).run()
    at.selectbox(key="train_preset").set_value("internship").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_arch").value == "internship_cnn"
    assert at.number_input(key="train_epochs").value == 100

    # The shipped model's preset, warm restarts included.
    at.selectbox(key="train_preset").set_value("default").run()
    preset = PRESETS["default"]
    assert at.number_input(key="train_epochs").value == preset.epochs
    assert at.text_input(key="train_cycles").value == ", ".join(map(str, preset.cycle_epochs))
    assert at.number_input(key="train_average").value == preset.average_epochs > 0

    at.text_input(key="train_cycles").set_value("30, sixty").run()
    button(at, "Start training").click().run()
    assert any("cosine cycles must be whole numbers" in e.value for e in at.error)


def test_live_view_of_a_running_run_and_cancel(tiny_source, ferlab_dirs, fake_worker):
    run_id = fake_running_run(ferlab_dirs["runs"], fake_worker)
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    assert at.session_state["train_run"] == run_id  # the latest run is shown
    assert [p.value for p in at.get("progress")] == [50, 25]  # within the epoch, whole run
    assert "Epoch 3/10" in at.get("progress")[0].proto.text
    assert [m.value for m in at.metric][-2:] == ["2:00", "50"]  # time left, faces per second
    assert len(at.get("plotly_chart")) >= 1  # the curves so far
    assert "Results" not in [h.value for h in at.subheader]

    button(at, "Cancel this run").click().run()
    assert not at.exception, at.exception
    assert (ferlab_dirs["runs"] / run_id / "cancel").exists()
    assert "Cancelling" in texts(at)
    assert not [b for b in at.button if b.label == "Cancel this run"]


def test_results_of_a_finished_run_then_delete_it(tiny_source, tiny_builtin, ferlab_dirs):
    run_id = fake_finished_run(ferlab_dirs["runs"], tiny_builtin)
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Confusion matrix" in shown
    assert "Overfitting" in shown and "dropout" in shown  # the diagnosis, with remedies
    assert [t.label for t in at.tabs] == ["Confusion matrix", "Per class", "Mistakes", "Diagnosis", "Model"]
    assert len(at.tabs[1].dataframe[0].value) == 7  # per-class precision, recall, F1
    assert at.tabs[2].get("image")  # the gallery of the most frequent confusion
    assert "This run saved no model" in shown

    # Pick the other confusion pair: the predicted-class list never offers the true class itself.
    true_box = at.selectbox(key=f"mistake_true_{run_id}")
    true_box.set_value("happy").run()
    assert not at.exception, at.exception
    assert "happy" not in at.selectbox(key=f"mistake_pred_{run_id}").options

    button(at, "Delete for good").click().run()
    assert not at.exception, at.exception
    assert not (ferlab_dirs["runs"] / run_id).exists()
    assert "No runs yet" in texts(at)


def test_sweep_form_queues_the_grid(tiny_source, ferlab_dirs):
    # Hold the only job slot, so the sweep's workers wait in the queue and never train.
    (ferlab_dirs["runs"] / jobs.SLOTS).mkdir(parents=True)
    slot = os.open(ferlab_dirs["runs"] / jobs.SLOTS / "slot-0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        at = app(tiny_source).run()
        at.number_input(key="train_epochs").set_value(3)  # swept over, so this value is not used
        at.multiselect[-2].set_value([32, 64])
        at.multiselect[-1].set_value([1, 2])
        button(at, "Queue sweep").click().run()
        assert not at.exception, at.exception
        assert "Queued 4 runs" in texts(at)
        runs = jobs.list_runs()
        assert sorted((r.config.batch_size, r.config.epochs) for r in runs) == [
            (32, 1),
            (32, 2),
            (64, 1),
            (64, 2),
        ]
        assert sorted(r.queue_position for r in runs) == [1, 2, 3, 4]

        assert at.selectbox(key="train_sweep_shown").value == runs[0].sweep["id"]
        assert len(at.dataframe[-1].value) == 4  # the sweep's table under All runs

        button(at, "Cancel this sweep's 4 unfinished run(s)").click().run()
        assert not at.exception, at.exception
        assert {run.state for run in jobs.list_runs()} == {"cancelled"}
    finally:
        os.close(slot)


@pytest.mark.slow
def test_start_a_run_watch_it_finish_and_see_results(tiny_source):
    at = app(tiny_source).run()
    at.number_input(key="train_epochs").set_value(1)
    at.select_slider(key="train_batch").set_value(32)
    at.toggle(key="train_augment").set_value(False)
    at.run()
    button(at, "Start training").click().run()
    assert not at.exception, at.exception

    [run] = jobs.list_runs()
    assert at.session_state["train_run"] == run.id
    assert (run.config.epochs, run.config.batch_size, run.config.augment) == (1, 32, None)
    assert run.dataset_label == "tiny built-in"

    # The page is not needed while the job trains: it runs in its own process.
    deadline = time.monotonic() + 300
    while jobs.get_run(run.id).active:
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(0.5)
    assert jobs.get_run(run.id).state == "finished"

    at.run()  # a later visit reattaches to the run and shows its results
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Confusion matrix" in shown
    assert "Too few epochs" in shown  # the diagnosis of a 1-epoch run
    assert len(at.get("plotly_chart")) >= 2  # curves and the confusion matrix
    assert at.get("tab")  # results tabs
    assert at.toggle(key="train_cm_normalise").set_value(True).run() and not at.exception

    button(at, "Use this model").click().run()
    assert at.session_state["model_dir"] == str(run.run_dir / "model")
