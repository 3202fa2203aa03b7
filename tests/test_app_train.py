"""The Train page (app_pages/3_Train.py) under Streamlit's AppTest.

The page reads the dataset in use from session state; the tests point it at a
tiny built-in set saved as an .npz, so the one real training run takes seconds.
"""

from __future__ import annotations

import base64
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
from fertools.estimate import format_duration
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


def test_resnet_preset_fills_its_single_cycle_and_says_what_it_measured(tiny_source):
    at = app(tiny_source).run()
    at.selectbox(key="train_preset").set_value("resnet").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_arch").value == "resnet"
    assert at.number_input(key="train_epochs").value == PRESETS["resnet"].epochs == 50
    assert at.text_input(key="train_cycles").value == ""
    assert at.number_input(key="train_average").value == 8
    assert "64.5% on PublicTest" in texts(at)


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


def test_a_distilled_run_shows_its_teachers_progress_before_training(tiny_source, ferlab_dirs, fake_worker):
    run_id = fake_running_run(ferlab_dirs["runs"], fake_worker)
    run_dir = ferlab_dirs["runs"] / run_id
    (run_dir / "progress.json").unlink()  # no epoch yet: the teachers are still answering
    status = {"state": "running", "pid": fake_worker, "started": time.time() - 50}
    (run_dir / "status.json").write_text(
        json.dumps({**status, "phase": "asking the teachers", "teacher_progress": [6144, 25000]})
    )
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    [bar] = at.get("progress")
    assert bar.value == 24  # 6,144 of 25,000
    assert "the teachers have answered 6,144 of 25,000 faces" in bar.proto.text
    assert "Starting: loading TensorFlow" not in texts(at)

    # A garbled count is no reason to break the page: it says the run is starting.
    (run_dir / "status.json").write_text(
        json.dumps({**status, "phase": "asking the teachers", "teacher_progress": ["x", -1]})
    )
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    assert "Starting: loading TensorFlow" in texts(at) and not at.get("progress")


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
        # The shipped recipe's cosine cycles and weight average are rescaled to each swept epochs.
        at.selectbox(key="train_preset").set_value("default").run()
        at.number_input(key="train_epochs").set_value(3)  # swept over, so this value is not used
        at.multiselect[-2].set_value([32, 64])
        at.multiselect[-1].set_value([1, 2])
        button(at, "Queue sweep").click().run()
        assert not at.exception, at.exception
        # First what it costs, and nothing queued until the student says yes.
        assert "This sweep queues 4 runs of default, 6 epochs in all" in texts(at)
        assert "no time estimate" in texts(at)
        assert jobs.list_runs() == []
        button(at, "Queue these 4 runs").click().run()
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
        assert all(sum(r.config.cycle_epochs) in (0, r.config.epochs) for r in runs)
        assert {r.config.augment for r in runs} == {PRESETS["default"].augment}

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

    # The next run's time estimate comes from this run's measured speed.
    assert f"from run {run.id}" in texts(at)

    # The history and the curves leave with the run: CSV, and a page that opens offline.
    labels = [element.proto.label for element in at.get("download_button")]
    assert "Download history (.csv)" in labels and "Download curves (.html)" in labels
    from ui.train_results import _curves_html, _history_csv

    rows = _history_csv(jobs.get_run(run.id)).decode().splitlines()
    assert rows[0].startswith("epoch") and len(rows) == 2  # a header and the one epoch
    page = _curves_html(jobs.get_run(run.id)).decode()
    assert "<html>" in page and "https://cdn" not in page.split("<body>")[0]

    button(at, "Use this model").click().run()
    assert at.session_state["model_dir"] == str(run.run_dir / "model")


@pytest.fixture
def held_slot(ferlab_dirs) -> Iterator[None]:
    """Hold the only job slot, so queued runs wait in the queue and never train."""
    (ferlab_dirs["runs"] / jobs.SLOTS).mkdir(parents=True)
    slot = os.open(ferlab_dirs["runs"] / jobs.SLOTS / "slot-0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
    yield
    os.close(slot)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def numbers(values) -> list[float]:
    """A trace's values, which Plotly may send as typed base64 (``{"dtype", "bdata"}``)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_a_preset_fills_every_field_with_its_own_augmentation(tiny_source, held_slot):
    at = app(tiny_source)
    at.session_state["augment_config"] = {"rotation": 33.0, "zoom": 0.0}  # from the Augmentation page
    at.run()
    at.selectbox(key="train_preset").set_value("default").run()
    assert not at.exception, at.exception
    assert "Augmentation (from the default preset): rotation 10" in texts(at)
    assert "erasing 0.25" in texts(at)
    button(at, "Start training").click().run()
    assert not at.exception, at.exception
    [run] = jobs.list_runs()
    assert run.config == PRESETS["default"]  # the shipped recipe, augmentation included

    # The Augmentation page's settings are one click away again.
    button(at, "Use the Augmentation page's settings instead").click().run()
    assert "Augmentation (from the Augmentation page): rotation 33.0" in texts(at)


def test_fewer_epochs_after_a_preset_adapt_the_settings_that_count_epochs(tiny_source, held_slot):
    at = app(tiny_source).run()
    at.selectbox(key="train_preset").set_value("default").run()
    at.number_input(key="train_epochs").set_value(3).run()
    assert not at.exception, at.exception
    [note] = [i.value for i in at.info if "For 3 epochs" in i.value]
    assert "Cosine cycles" in note and "Average the final epochs to 1" in note
    assert at.text_input(key="train_cycles").value == ""
    assert at.number_input(key="train_average").value == 1
    button(at, "Start training").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    [run] = jobs.list_runs()
    assert (run.config.epochs, run.config.cycle_epochs, run.config.average_epochs) == (3, (), 1)

    # Cycles typed by hand that do not fit: one sentence naming the widget, no field names.
    at.text_input(key="train_cycles").set_value("2, 2").run()
    button(at, "Start training").click().run()
    [error] = [e.value for e in at.error]
    assert "Cosine cycles" in error and "add up to 4 epochs but Epochs is 3" in error
    assert "cycle_epochs" not in error and "average_epochs" not in error


def test_a_sweep_estimate_uses_the_speed_measured_here(tiny_source, tiny_builtin, ferlab_dirs, held_slot):
    run_id = fake_finished_run(ferlab_dirs["runs"], tiny_builtin)
    progress = {"epoch": 12, "epochs": 12, "batch": 2, "batches": 2, "images_per_second": 50.0, "logs": {}}
    (ferlab_dirs["runs"] / run_id / "progress.json").write_text(json.dumps(progress))
    at = app(tiny_source).run()
    at.multiselect(key="train_sweep_batches").set_value([32, 64])
    at.multiselect(key="train_sweep_epochs").set_value([1, 2])
    button(at, "Queue sweep").click().run()
    assert not at.exception, at.exception
    faces = len(tiny_builtin.with_validation(0.1).subset("train"))
    seconds = 2 * faces * 3 / 50.0  # two batch sizes, 1 + 2 epochs each, at 50 faces a second
    assert f"about {format_duration(seconds)} of training at the speed measured here" in texts(at)
    button(at, "Don't queue it").click().run()
    assert "This sweep queues" not in texts(at)
    assert [run.id for run in jobs.list_runs()] == [run_id]


def test_the_form_survives_a_visit_to_another_page(tiny_source, held_slot):
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "app.py"), default_timeout=180)
    at.session_state["dataset_source"] = tiny_source
    at.session_state["dataset_label"] = "tiny built-in"
    at.run()
    at.switch_page("app_pages/3_Train.py").run()
    at.number_input(key="train_epochs").set_value(7).run()
    at.multiselect(key="train_sweep_batches").set_value([16])
    at.multiselect(key="train_sweep_epochs").set_value([2])
    button(at, "Queue sweep").click().run()
    assert not at.exception, at.exception

    at.switch_page("app_pages/1_Dataset.py").run()
    at.switch_page("app_pages/3_Train.py").run()
    assert not at.exception, at.exception
    assert at.number_input(key="train_epochs").value == 7
    assert at.multiselect(key="train_sweep_batches").value == [16]
    assert at.multiselect(key="train_sweep_epochs").value == [2]
    assert "This sweep queues 1 runs of default, 2 epochs in all" in texts(at)


def test_a_cancelled_runs_accuracy_is_plotted_on_0_to_100_percent(tiny_source, tiny_builtin, ferlab_dirs):
    run_id = fake_finished_run(ferlab_dirs["runs"], tiny_builtin)
    run_dir = ferlab_dirs["runs"] / run_id
    job = json.loads((run_dir / "job.json").read_text())
    job["sweep"] = {"id": "20261120-100000-aaaa", "values": {"batch_size": 64, "epochs": 12}}
    (run_dir / "job.json").write_text(json.dumps(job))
    status = {"state": "cancelled", "reason": "cancelled at epoch 2", "started": 1.0, "finished": 61.0}
    (run_dir / "status.json").write_text(json.dumps(status))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "accuracy": 0.143}))
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    specs = chart_specs(at)
    sweep = [
        spec
        for spec in specs
        if spec["data"][0]["type"] == "scatter" and numbers(spec["data"][0]["y"]) == [0.143]
    ]
    assert sweep and sweep[0]["layout"]["yaxis"]["range"] == [0, 1]
    compare = [
        spec
        for spec in specs
        if spec["layout"].get("yaxis", {}).get("title", {}).get("text") == "val. accuracy"
    ]
    assert all(spec["layout"]["yaxis"]["range"] == [0, 1] for spec in compare)


def test_the_first_epoch_draws_batch_curves_and_the_evaluation_step_shows(
    tiny_source, ferlab_dirs, fake_worker
):
    run_id = fake_running_run(ferlab_dirs["runs"], fake_worker)
    run_dir = ferlab_dirs["runs"] / run_id
    (run_dir / "history.csv").unlink()  # still in its first epoch
    progress = json.loads((run_dir / "progress.json").read_text())
    curve = [{"x": 0.1 * i, "loss": 2.0 - 0.1 * i, "accuracy": 0.1 + 0.02 * i} for i in range(1, 6)]
    (run_dir / "progress.json").write_text(json.dumps({**progress, "epoch": 1, "curve": curve}))
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    traces = [trace for spec in chart_specs(at) for trace in spec["data"]]
    batch_traces = [t for t in traces if t.get("name", "").startswith("training loss (per batch")]
    assert batch_traces and len(numbers(batch_traces[0]["x"])) == 5
    assert "evaluation and saving follow" in at.get("progress")[1].proto.text

    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "phase": "evaluating"}))
    at.run()
    assert "evaluating the chosen weights" in at.get("progress")[0].proto.text
    assert "evaluating" in [m.value for m in at.metric]


def test_a_fresh_session_watches_your_run_in_progress_not_the_newest(
    tiny_source, tiny_builtin, ferlab_dirs, held_slot
):
    # Yours, queued (in progress); then a newer run from the command line, ended.
    mine = jobs.submit(tiny_builtin, TrainConfig(epochs=1, augment=None), "mine", owner="local")
    time.sleep(1.1)  # run ids and creation times are per second
    cli = ferlab_dirs["runs"] / "zz-cli"
    cli.mkdir()
    (cli / "config.json").write_text(json.dumps(TrainConfig(epochs=1).to_dict()))
    (cli / "status.json").write_text(
        json.dumps({"state": "running", "pid": 2**22 + 7, "started": time.time()})
    )
    assert jobs.list_runs()[0].id == "zz-cli"
    at = app(tiny_source).run()  # a refresh: a new session with nothing chosen
    assert not at.exception, at.exception
    assert at.session_state["train_run"] == mine
    jobs.cancel(mine)


def test_the_page_estimates_nothing_it_has_not_measured_and_warns_before_a_big_cpu_model(tiny_source):
    at = app(tiny_source).run()
    assert "No default run has trained on this server yet" in texts(at)
    assert not at.warning
    at.selectbox(key="train_arch").set_value("resnet50").run()
    assert not at.exception, at.exception
    assert any("23,602,055 parameters and this server has no GPU" in w.value for w in at.warning)


def test_a_classroom_preset_says_what_it_measured(tiny_source, held_slot):
    from fertools.config import PRESET_NOTES

    assert set(PRESET_NOTES) <= set(PRESETS) and {"class_2min", "class_5min"} <= set(PRESET_NOTES)
    at = app(tiny_source).run()
    at.selectbox(key="train_preset").set_value("class_5min").run()
    assert not at.exception, at.exception
    assert any(PRESET_NOTES["class_5min"] in info.value for info in at.info)
    assert at.session_state["train_epochs"] == PRESETS["class_5min"].epochs


def test_a_refresh_keeps_the_run_settings(tiny_source):
    router = str(Path(PAGE).parent.parent / "app.py")
    first = AppTest.from_file(router, default_timeout=180).run()
    first.switch_page("app_pages/3_Train.py").run()
    first.number_input(key="train_epochs").set_value(7).run()
    first.select_slider(key="train_batch").set_value(32).run()
    assert not first.exception, first.exception
    again = AppTest.from_file(router, default_timeout=180).run()  # a new session of the same user
    again.switch_page("app_pages/3_Train.py").run()
    assert not again.exception, again.exception
    assert again.number_input(key="train_epochs").value == 7
    assert again.select_slider(key="train_batch").value == 32


def test_a_run_that_ends_later_joins_the_overlay_and_redraws_the_page(
    tiny_source, tiny_builtin, ferlab_dirs, fake_worker, monkeypatch
):
    from ui import train_watch

    finished = fake_finished_run(ferlab_dirs["runs"], tiny_builtin)
    running = fake_running_run(ferlab_dirs["runs"], fake_worker)
    at = app(tiny_source).run()
    assert not at.exception, at.exception
    assert at.multiselect(key="train_compare").value == [finished]

    # The page follows the running run: once its state changes, the follower asks for a full rerun.
    root = str(ferlab_dirs["runs"])
    reruns = []
    with monkeypatch.context() as patch:
        patch.setattr(train_watch.st, "rerun", lambda: reruns.append(True))
        train_watch._run_states.clear()
        train_watch._redraw_if_changed(root, {running: "running"})
        assert reruns == []
        status = json.loads((ferlab_dirs["runs"] / running / "status.json").read_text())
        (ferlab_dirs["runs"] / running / "status.json").write_text(
            json.dumps({**status, "state": "finished"})
        )
        train_watch._run_states.clear()
        train_watch._redraw_if_changed(root, {running: "running"})
    assert reruns == [True]

    # That rerun shows the run finished everywhere, and the overlay now includes it; a run the
    # user takes out of the overlay stays out.
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="train_compare").value == [running, finished]
    at.multiselect(key="train_compare").unselect(running).run()
    at.run()
    assert at.multiselect(key="train_compare").value == [finished]
