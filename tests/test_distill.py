"""Knowledge distillation: soft targets, the teachers' checks, the cache, and a run that learns from a teacher."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from fertools import distill, train
from fertools.cli import main
from fertools.config import NO_AUGMENTATION, TrainConfig
from fertools.constants import FER2013_CLASSES, INPUT_SHAPE
from fertools.evaluate import predict_proba
from fertools.modelcard import ModelCard, card_markdown, load_model_dir, read_card, save_model_dir
from fertools.runs import RunDir

HAPPY = FER2013_CLASSES.index("happy")


def one_class_teacher(folder: Path, classes=FER2013_CLASSES, winner: int = HAPPY) -> Path:
    """A model folder whose network says ``classes[winner]`` with 99% for every face."""
    inputs = keras.Input(INPUT_SHAPE)
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(len(classes), activation="softmax")
    model = keras.Model(inputs, dense(flat))
    bias = np.full(len(classes), 0.0, dtype="float32")
    bias[winner] = np.log(0.99 / (0.01 / (len(classes) - 1)))
    dense.set_weights([np.zeros_like(dense.get_weights()[0]), bias])
    card = ModelCard(
        name=f"always {classes[winner]}",
        architecture="test",
        classes=list(classes),
        input_shape=list(INPUT_SHAPE),
        metrics={"accuracy": 0.25, "split": "val"},
    )
    return save_model_dir(model, card, folder)


def student_config(**overrides) -> TrainConfig:
    values = {
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "optimizer": "adam",
        "augment": NO_AUGMENTATION,
        "model_kwargs": {"widths": (8, 16, 16, 32), "dense_units": 32},
        "mixed_precision": "off",
    }
    return TrainConfig(**{**values, **overrides})


def test_soft_targets_mix_the_label_and_the_teacher():
    teacher = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6]], dtype="float32")
    mixed = distill.soft_targets(np.array([0, 1]), teacher, 0.25)
    assert np.allclose(mixed, [[0.875, 0.125, 0.0], [0.05, 0.8, 0.15]])
    assert np.allclose(distill.soft_targets(np.array([0, 1]), teacher, 1.0), teacher)
    assert np.allclose(mixed.sum(axis=1), 1) and mixed.dtype == np.float32


def test_teachers_are_averaged_over_their_views(tmp_path, tiny_model_dir, tiny_builtin):
    faces = tiny_builtin.images[:10]
    happy = one_class_teacher(tmp_path / "happy")
    found = distill.teacher_probabilities([str(tiny_model_dir), str(happy)], faces, FER2013_CLASSES, "mirror")
    model, _ = load_model_dir(tiny_model_dir)
    expected = (
        predict_proba(model, faces, views="mirror")
        + np.eye(7)[HAPPY] * 0.99
        + (1 - np.eye(7)[HAPPY]) * 0.01 / 6
    ) / 2
    assert found.shape == (10, 7)
    assert np.allclose(found, expected, atol=1e-5)


def test_the_teachers_report_their_progress_chunk_by_chunk(tmp_path, tiny_builtin, monkeypatch):
    monkeypatch.setattr(distill, "CHUNK_FACES", 4)
    happy, sad = one_class_teacher(tmp_path / "happy"), one_class_teacher(tmp_path / "sad", winner=4)
    heard = []
    distill.teacher_probabilities(
        [str(happy), str(sad)],
        tiny_builtin.images[:10],
        FER2013_CLASSES,
        "one",
        progress=lambda *n: heard.append(n),
    )
    assert heard == [(4, 20), (8, 20), (10, 20), (14, 20), (18, 20), (20, 20)]


def test_a_teacher_of_other_classes_is_refused_in_one_sentence(tmp_path, tiny_builtin):
    other = one_class_teacher(tmp_path / "other", classes=("cat", "dog"), winner=0)
    with pytest.raises(ValueError, match=r"knows the classes \['cat', 'dog'\], not this dataset's"):
        distill.teacher_probabilities([str(other)], tiny_builtin.images[:4], FER2013_CLASSES)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"teacher": ("no/such/folder",)}, "is not a model folder"),
        ({"distill": 0.0}, r"must be in \(0, 1\]"),
        ({"distill": 1.5}, r"must be in \(0, 1\]"),
        ({"teacher_views": "forty"}, "teacher_views must be one of"),
    ],
)
def test_settings_that_cannot_distill_are_refused(tiny_model_dir, change, message):
    config = student_config(
        teacher=(str(tiny_model_dir),), **{k: v for k, v in change.items() if k != "teacher"}
    )
    if "teacher" in change:
        config = student_config(teacher=change["teacher"])
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_the_teachers_survive_the_config_round_trip(tiny_model_dir):
    config = TrainConfig(teacher=(str(tiny_model_dir),), distill=0.7, teacher_views="ten_crop")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({**config.to_dict(), "teacher": "one/folder"}).teacher == ("one/folder",)


def test_make_dataset_feeds_the_soft_targets(tiny_builtin):
    targets = np.tile(np.linspace(0.04, 0.24, 7, dtype="float32"), (8, 1))
    ds = train.make_dataset(tiny_builtin.images[:8], tiny_builtin.labels[:8], 7, 8, False, 0, targets=targets)
    _, y = next(iter(ds))
    assert np.allclose(y.numpy(), targets)


def test_a_student_learns_what_its_teacher_says(tmp_path, tiny_builtin):
    # The labels are balanced over 7 classes; a teacher that always says "happy", given the whole
    # target, makes a student that says "happy" for (nearly) every face. (Without validation
    # faces the run keeps its best epoch on the training targets, which are the teacher's.)
    happy = one_class_teacher(tmp_path / "happy")
    faces = tiny_builtin.subset("train")
    config = student_config(epochs=8, teacher=(str(happy),), distill=1.0, val_fraction=0.0)
    result = train.train(faces, config, tmp_path / "run")
    assert result.status == "finished"
    # The run's status told the page how far the teachers had got (all of them, by now).
    assert RunDir(tmp_path / "run").read_status()["teacher_progress"] == [len(faces), len(faces)]
    model, card = load_model_dir(tmp_path / "run" / "model")
    predicted = model.predict(faces.images[..., None], verbose=0).argmax(axis=1)
    assert (predicted == HAPPY).mean() > 0.8
    assert (faces.labels == HAPPY).mean() < 0.2
    # The card says where the model's knowledge came from.
    assert card.training["teachers"] == [
        {"path": str(happy), "name": "always happy", "architecture": "test", "accuracy": 0.25, "split": "val"}
    ]
    assert "Distilled from always happy (25.00%)" in card_markdown(card)


def test_a_resumed_run_reuses_the_cached_targets_and_a_new_teacher_does_not(
    tmp_path, tiny_builtin, monkeypatch
):
    happy = one_class_teacher(tmp_path / "happy")
    run = tmp_path / "run"
    train.train(tiny_builtin, student_config(teacher=(str(happy),)), run)
    assert (run / "teacher.npz").is_file()

    asked: list[list[str]] = []
    original = distill.teacher_probabilities

    def counting(teachers, *args, **kwargs):
        asked.append(list(teachers))
        return original(teachers, *args, **kwargs)

    monkeypatch.setattr(distill, "teacher_probabilities", counting)
    train.train(tiny_builtin, student_config(epochs=2, teacher=(str(happy),)), run)  # resumes: epoch 2
    assert asked == []
    angry = one_class_teacher(tmp_path / "angry", winner=0)
    train.train(tiny_builtin, student_config(epochs=3, teacher=(str(angry),)), run)
    assert asked == [[str(angry)]]


def test_a_damaged_target_cache_is_recomputed(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.write_teacher_targets("key", np.full((3, 7), 1 / 7, dtype="float32"))
    assert run.read_teacher_targets("key").shape == (3, 7)
    assert run.read_teacher_targets("other key") is None
    (run.path / "teacher.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert run.read_teacher_targets("key") is None


def test_the_cli_refuses_a_teacher_that_is_no_model_in_one_line(tmp_path, capsys):
    code = main(
        ["train", "--out", str(tmp_path / "run"), "--teacher", str(tmp_path / "missing"), "--epochs", "1"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"train: the teacher {tmp_path / 'missing'} is not a model folder (it has no card.json)"]


def test_the_cli_passes_the_teachers_and_the_start_to_the_run(tmp_path, tiny_model_dir):
    happy = one_class_teacher(tmp_path / "happy")
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--no-augment",
            "--teacher",
            str(happy),
            "--distill",
            "0.8",
            "--teacher-views",
            "one",
            "--start-from",
            str(tiny_model_dir),
        ]
    )
    assert code == 0
    config = RunDir(out).read_config()
    assert (config.teacher, config.distill, config.teacher_views) == ((str(happy),), 0.8, "one")
    assert config.start_from == str(tiny_model_dir)
    assert read_card(out / "model").training["teachers"][0]["name"] == "always happy"
