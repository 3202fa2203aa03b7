"""The run folder: atomic writes, and readers that survive damaged files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fertools import jobs, limits
from fertools.config import TrainConfig
from fertools.modelcard import ModelCard, card_markdown
from fertools.runs import RunDir, write_json


def make_run(tmp_path, name="r1", state="finished") -> RunDir:
    run = RunDir(tmp_path / name).create()
    run.write_job(
        {"id": name, "name": name, "created": 1.0, "config": TrainConfig().to_dict(), "dataset": {}}
    )
    run.write_config(TrainConfig())
    run.update_status(state, started=1.0, finished=2.0, reason="")
    return run


def test_history_leaves_out_keras_na_values_of_a_run_without_validation(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.2,NA,NA\n1,0.6,1.0,NA,NA\n"
    )
    assert run.read_history() == [
        {"epoch": 0.0, "accuracy": 0.5, "loss": 1.2},
        {"epoch": 1.0, "accuracy": 0.6, "loss": 1.0},
    ]
    assert run.damage == []


@pytest.mark.parametrize(
    "text",
    [
        "epoch,accuracy\n0,0.5\ngarbage-row-without-commas\n",
        "epoch,accuracy\n0,0.5\n1,0.6,extra,fields\n",
        "epoch,accuracy\n0,0.5\nxyz,0.7\n",
        "\x00\x01\x02 not a csv at all",
    ],
)
def test_a_garbled_history_keeps_its_good_rows_and_says_what_is_damaged(tmp_path, text):
    run = RunDir(tmp_path)
    (tmp_path / "history.csv").write_text(text)
    rows = run.read_history()
    assert all("epoch" in row for row in rows)
    assert run.damage and "history.csv" in run.damage[0]


def test_an_oversized_history_is_not_read(tmp_path):
    run = RunDir(tmp_path)
    with open(tmp_path / "history.csv", "wb") as handle:
        handle.truncate(9 << 20)
    assert run.read_history() == [] and "larger" in run.damage[0]


@pytest.mark.parametrize("text", ['{"state": "runn', "[1, 2]", "", "\xff\xfe"])
def test_a_damaged_status_reads_as_empty(tmp_path, text):
    run = RunDir(tmp_path)
    (tmp_path / "status.json").write_text(text, errors="surrogateescape")
    assert run.read_status() == {}
    assert run.damage


def test_damaged_or_inconsistent_predictions_read_as_none(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "val_predictions.npz").write_bytes(b"PK\x03\x04 truncated")
    assert run.read_predictions() is None and run.damage
    run = RunDir(tmp_path)
    images = np.zeros((3, 48, 48), np.uint8)
    # A label outside the class list would index past the confusion matrix.
    run.write_predictions(images, np.array([0, 1, 9]), np.full((3, 2), 0.5, np.float32), ("a", "b"))
    assert run.read_predictions() is None and "do not fit" in run.damage[0]
    run = RunDir(tmp_path)
    run.write_predictions(images, np.array([0, 1, 1]), np.full((3, 2), 0.5, np.float32), ("a", "b"))
    good = run.read_predictions()
    assert good["classes"] == ("a", "b") and good["images"].shape == (3, 48, 48)


def test_atomic_writes_leave_no_partial_file(tmp_path):
    tmp_path = tmp_path / "fresh"
    tmp_path.mkdir()
    write_json(tmp_path / "x.json", {"a": np.float32(1.5), "b": np.arange(2), "c": tmp_path})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5, "b": [0, 1], "c": str(tmp_path)}
    assert os.listdir(tmp_path) == ["x.json"]
    with pytest.raises(TypeError):
        write_json(tmp_path / "y.json", {"a": object()})
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("status.json", '{"state": "running", "pid": "not a pid", "started": "yesterday"'),
        ("status.json", '{"state": {"nested": true}, "started": [1]}'),
        ("job.json", '{"name": ["x"], "created": "soon", "config": 7, "dataset": "here", "sweep": 3}'),
        ("metrics.json", '{"accuracy": "high"}'),
        ("progress.json", "null"),
        ("history.csv", "epoch,loss\n0,NA\nboom"),
    ],
)
def test_one_damaged_run_never_breaks_the_list_of_runs(tmp_path, file, text):
    make_run(tmp_path, "good")
    bad = make_run(tmp_path, "bad")
    (bad.path / file).write_text(text)

    runs = {run.id: run for run in jobs.list_runs(tmp_path)}

    assert set(runs) == {"good", "bad"}
    assert runs["good"].damage == "" and runs["good"].state == "finished"
    assert runs["bad"].state in ("finished", "failed", "queued", "running")
    jobs.get_run("bad", tmp_path)  # never raises either
    jobs.history("bad", tmp_path)


def test_a_status_with_an_unknown_state_shows_as_a_damaged_failed_run(tmp_path):
    run = make_run(tmp_path, "odd")
    write_json(run.path / "status.json", {"state": "exploded"})
    (info,) = jobs.list_runs(tmp_path)
    assert info.state == "failed" and "no known state" in info.damage


def test_the_card_says_epochs_run_and_the_best_epoch_apart():
    # The bug: a 4-epoch run whose best epoch was 3 read "4 epochs (best epoch 4)".
    card = ModelCard("m", "default", ["a"], [48, 48, 1], training={"epochs_run": 4, "best_epoch": 3})
    assert "Training: 4 epochs (best epoch 3)" in card_markdown(card)
    card.training = {"epochs_run": 1, "best_epoch": 1}
    assert "Training: 1 epoch (best epoch 1)" in card_markdown(card)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": ["a", "b"]}, "names 2 classes but the network gives"),
        ({"classes": ["angry"] * 7}, "distinct names"),
        ({"classes": [1, 2, 3, 4, 5, 6, 7]}, "distinct names"),
        ({"input_shape": [64, 64, 1]}, "says input [64, 64, 1]"),
        ({"input_shape": "48x48"}, "its input_shape is str, not a list"),  # refused as it is read
    ],
)
def test_a_card_that_disagrees_with_its_network_is_refused_at_load(tmp_path, change, message):
    from fertools import models
    from fertools.constants import FER2013_CLASSES
    from fertools.modelcard import ModelLoadError, load_model_dir, save_model_dir

    model = models.create("mini_xception")
    card = ModelCard("m", "mini_xception", list(FER2013_CLASSES), [48, 48, 1])
    folder = save_model_dir(model, card, tmp_path / "model")
    values = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**values, **change}))
    with pytest.raises(ModelLoadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_model_dir(folder)


def test_the_log_tail_reads_only_the_end_and_leaves_tensorflow_chatter_out(tmp_path):
    run = RunDir(tmp_path / "run").create()
    assert run.log_tail() is None
    lines = [f"epoch {i}" for i in range(200_000)]  # about 2.3 MB
    lines.insert(-3, "I0000 00:00:1796178011.49 port.cc:153] oneDNN custom operations are on.")
    lines.insert(-2, "E0000 00:00:1796178013.63 cuda_platform.cc:52] failed call to cuInit")
    (run.path / "worker.log").write_text("\n".join(lines) + "\n")
    assert run.log_tail(lines=3) == ["epoch 199997", "epoch 199998", "epoch 199999"]
    assert run.log_tail(lines=10_000, max_bytes=1000)[0].startswith("epoch ")  # no half line first
    assert len("\n".join(run.log_tail(lines=10_000, max_bytes=1000))) < 1000


def test_an_exported_tflite_is_fresh_only_when_newer_than_its_model(tmp_path):
    run = RunDir(tmp_path / "run").create()
    assert not run.tflite_fresh
    run.model_dir.mkdir()
    (run.model_dir / "model.keras").write_bytes(b"model")
    run.tflite_path.parent.mkdir(parents=True, exist_ok=True)
    run.tflite_path.write_bytes(b"tflite")
    assert run.tflite_fresh
    later = run.tflite_path.stat().st_mtime + 10
    os.utime(run.model_dir / "model.keras", (later, later))  # retrained after the export
    assert not run.tflite_fresh


def test_saved_choices_keep_only_known_keys_and_survive_damage(ferlab_dirs):
    from fertools import prefs

    prefs.save("u-alice", {"model_dir": "models/default", "dataset_source": "builtin", "password": "x"})
    assert prefs.load("u-alice") == {"model_dir": "models/default", "dataset_source": "builtin"}
    assert prefs.load("u-bob") == {}
    path = ferlab_dirs["runs"] / prefs.PREFS / "u-alice.json"
    path.write_text("[1, 2")  # truncated
    assert prefs.load("u-alice") == {}
    path.write_text('["not", "a", "dict"]')
    assert prefs.load("u-alice") == {}
    with pytest.raises(ValueError, match="not a user id"):
        prefs.load("../../etc/passwd")


def test_a_runs_name_is_the_one_it_was_given_else_its_folders(tmp_path):
    run = make_run(tmp_path, "20261202-101010-abcd")
    assert run.name() == "20261202-101010-abcd"
    run.write_job({**run.read_job(), "name": "  happy faces v2 "})
    assert run.name() == "happy faces v2"
    # A hostile name: one line, bounded, wherever it is shown (tables, pickers, the card).
    run.write_job({**run.read_job(), "name": "line one\n\n  line two " + "x" * 5000})
    assert run.name() == ("line one line two " + "x" * 5000)[: limits.MAX_RUN_NAME]
    run.write_job({**run.read_job(), "name": ["not", "a", "name"]})
    assert run.name() == run.id
    assert RunDir(tmp_path / "from-the-command-line").name() == "from-the-command-line"  # no job.json


def test_a_run_queued_with_a_hostile_name_keeps_it_on_one_bounded_line():
    config = TrainConfig(epochs=3)
    assert jobs._run_name(config, "a\r\nb\t" + "z" * 500) == ("a b " + "z" * 500)[: limits.MAX_RUN_NAME]
    assert jobs._run_name(config, " \n ") == "default, 3 epochs, batch 64"  # blank: the settings name it
