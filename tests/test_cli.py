"""``python -m fertools``: exit codes, one-line errors, and the JSON each command prints.

Error paths that never reach TensorFlow run as real subprocesses (exit code and
raw stderr); the rest call ``cli.main(argv)`` in this process, which is much
faster than importing TensorFlow once per command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertools import cli, data, synthetic
from fertools.constants import FER2013_CLASSES, PROJECT_ROOT
from fertools.runs import RunDir

# --- helpers -------------------------------------------------------------------------------------


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "fertools", *map(str, argv)],
        check=False,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


def main(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """``root/<class>/*.png``: 3 happy, 2 sad and 1 angry synthetic face (6 in all)."""
    faces, _ = synthetic.generate(n_per_class=1, seed=3)
    root = tmp_path / "faces"
    for cls, count in (("happy", 3), ("sad", 2), ("angry", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / cls / f"{i}.png"), faces[i])
    return root


@pytest.fixture
def photos(tmp_path, haar_face_frame) -> list[Path]:
    """A photo with one face the Haar cascade finds, and one with none."""
    face, blank = tmp_path / "face.png", tmp_path / "blank.png"
    cv2.imwrite(str(face), haar_face_frame)
    cv2.imwrite(str(blank), np.full((240, 320, 3), 90, np.uint8))
    return [face, blank]


@pytest.fixture
def tiny_npz(tmp_path, tiny_builtin) -> Path:
    path = tmp_path / "tiny.npz"
    data.save_npz(tiny_builtin, path)
    return path


# --- one-line errors and exit code 2, as a real process ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["info", "{tmp}/missing.csv"], ["does not exist"]),
        (["info", "{tmp}/notes.txt"], ["notes.txt", "is not a FER dataset"]),
        (["info", "{tmp}/broken.zip"], ["broken.zip", "not a readable zip"]),
        (["info", "--bogus", "builtin"], ["unrecognized arguments: --bogus"]),
        (["frobnicate"], ["invalid choice"]),
        ([], ["required"]),
        (["convert", "builtin", "{tmp}/out.txt"], ["must end in .csv or .npz"]),
        (["evaluate", "--model", "{tmp}/no_model", "--data", "builtin"], ["no_model", "not a model folder"]),
        (["predict", "--model", "{tmp}/no_model", "{tmp}/notes.txt"], ["not a model folder"]),
        (["train", "--out", "{tmp}/run", "--epochs", "many"], ["invalid int value"]),
        (["train", "--out", "{tmp}/run", "--resume"], ["holds no run to resume"]),
        (["train", "--out", "{tmp}/run", "--cycles", "30,0"], ["like 30,50,45", "'30,0'"]),
    ],
    ids=[
        "missing-file",
        "wrong-format",
        "corrupt-zip",
        "bad-option",
        "bad-command",
        "no-command",
        "bad-output",
        "missing-model-evaluate",
        "missing-model-predict",
        "bad-int",
        "nothing-to-resume",
        "bad-cycles",
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, argv, fragments):
    (tmp_path / "notes.txt").write_text("dear diary\n")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 nope")
    result = run_cli(*[arg.format(tmp=tmp_path) for arg in argv])
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert_one_line_error(result.stderr, *fragments)


# --- the same promise for errors found after TensorFlow is loaded (in-process) ----------------------------


def test_unknown_preset(tmp_path, tiny_npz, capsys):
    code, out, err = main(
        ["train", "--data", tiny_npz, "--out", tmp_path / "run", "--preset", "nope"], capsys
    )
    assert code == 2 and out == ""
    assert_one_line_error(err, "unknown preset 'nope'", "quick")


@pytest.mark.parametrize(
    ("options", "epochs", "cycles", "average"),
    [
        ([], 245, (30, 50, 45, 60, 60), 20),  # the preset as it is
        (["--cycles", "30,50,45,60,60,80"], 325, (30, 50, 45, 60, 60, 80), 20),  # one more warm restart
        (["--epochs", "30"], 30, (), 20),  # the preset's cycles do not fit: one cycle
        (["--epochs", "10"], 10, (), 0),  # nor does its average
        (["--cycles", "4,6", "--epochs", "10", "--average", "3"], 10, (4, 6), 3),
        (["--average", "0"], 245, (30, 50, 45, 60, 60), 0),
    ],
)
def test_cosine_cycles_and_weight_averaging_from_the_command_line(tmp_path, options, epochs, cycles, average):
    from fertools.cli import _train_config, build_parser

    args = build_parser().parse_args(
        ["train", "--out", str(tmp_path / "run"), "--preset", "default", *options]
    )
    config = _train_config(args)
    config.validate()
    assert (config.epochs, config.cycle_epochs, config.average_epochs) == (epochs, cycles, average)


def test_an_average_longer_than_the_run_is_refused(tmp_path, tiny_npz, capsys):
    argv = ["train", "--data", tiny_npz, "--out", tmp_path / "run", "--epochs", "3", "--average", "5"]
    code, _, err = main(argv, capsys)
    assert code == 2
    assert_one_line_error(err, "average_epochs must be between 0 and the 3 epochs")


def test_cycles_that_do_not_add_up_to_the_epochs(tmp_path, tiny_npz, capsys):
    argv = ["train", "--data", tiny_npz, "--out", tmp_path / "run", "--cycles", "2,2", "--epochs", "5"]
    code, _, err = main(argv, capsys)
    assert code == 2
    assert_one_line_error(err, "must be positive and sum to the 5 epochs")


def test_invalid_setting(tmp_path, tiny_npz, capsys):
    code, _, err = main(["train", "--data", tiny_npz, "--out", tmp_path / "run", "--lr", "100"], capsys)
    assert code == 2
    assert_one_line_error(err, "learning rate 100.0 is out of range")


def test_training_data_without_a_train_split(tmp_path, tiny_builtin, capsys):
    path = tmp_path / "test_only.npz"
    data.save_npz(tiny_builtin.subset("test"), path)
    code, _, err = main(["train", "--out", tmp_path / "run", "--data", path], capsys)
    assert code == 2
    assert_one_line_error(err, "has no training rows")
    assert not (tmp_path / "run").exists()


def test_evaluate_errors(tmp_path, tiny_model_dir, class_folder, tiny_npz, capsys):
    code, _, err = main(["evaluate", "--model", tiny_model_dir, "--data", tmp_path / "nope"], capsys)
    assert code == 2
    assert_one_line_error(err, "does not exist")

    code, _, err = main(
        ["evaluate", "--model", tiny_model_dir, "--data", class_folder, "--split", "test"], capsys
    )
    assert code == 2
    assert_one_line_error(err, "no 'test' split")

    (class_folder / "contempt").mkdir()
    cv2.imwrite(str(class_folder / "contempt" / "x.png"), np.zeros((48, 48), np.uint8))
    code, _, err = main(["evaluate", "--model", tiny_model_dir, "--data", class_folder], capsys)
    assert code == 2
    assert_one_line_error(err, "does not know the classes ['contempt']")


def test_predict_errors(tmp_path, tiny_model_dir, photos, capsys):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg")
    for argv, fragment in [
        ([photos[0], garbage], "garbage.jpg is not an image"),
        ([tmp_path / "missing.png"], "cannot read"),
        ([photos[0], "--annotate", tmp_path / "out"], "cannot write an image named 'out'"),
        ([photos[0], "--annotate", tmp_path / "nowhere" / "out.png"], "does not exist"),
    ]:
        code, out, err = main(["predict", "--model", tiny_model_dir, *argv], capsys)
        assert code == 2 and out == ""
        assert_one_line_error(err, fragment)


# --- info and convert ---------------------------------------------------------------------------------


def test_info_text_and_json(tmp_path, class_folder, capsys):
    (class_folder / "sad" / "broken.png").write_bytes(b"nope")

    code, out, _ = main(["info", class_folder], capsys)
    assert code == 0
    assert out.splitlines()[0] == "6 faces: train 6; 3 classes"
    assert "rejected: 1 unreadable image" in out

    code, out, _ = main(["info", class_folder, "--json"], capsys)
    assert code == 0
    values = json.loads(out)
    assert values["size"] == 6 and values["classes"] == ["angry", "happy", "sad"]
    assert values["counts"] == {"train": {"angry": 1, "happy": 3, "sad": 2}}
    assert values["rejected"] == {"unreadable image": 1}
    assert values["synthetic"] is False


def test_info_in_a_real_process():
    result = run_cli("info", "builtin", "--json")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["size"] == 4200 and values["synthetic"] is True


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_convert(tmp_path, class_folder, capsys, suffix):
    out_path = tmp_path / f"converted{suffix}"
    code, out, _ = main(["convert", class_folder, out_path], capsys)

    assert code == 0
    assert re.fullmatch(
        rf"wrote 6 faces to {re.escape(str(out_path))} in [\d.]+ s \(\d+ images/s\); rejected 0\n", out
    )
    original, converted = data.load(class_folder), data.load(out_path)
    np.testing.assert_array_equal(
        np.sort(converted.images.reshape(6, -1), axis=0), np.sort(original.images.reshape(6, -1), axis=0)
    )
    names = sorted(converted.classes[i] for i in converted.labels)
    assert names == sorted(original.classes[i] for i in original.labels)


# --- evaluate and predict ----------------------------------------------------------------------------


def test_evaluate_json_on_a_class_folder(tiny_model_dir, class_folder, capsys):
    code, out, _ = main(["evaluate", "--model", tiny_model_dir, "--data", class_folder, "--json"], capsys)

    assert code == 0
    values = json.loads(out)
    assert {"accuracy", "n", "per_class", "confusion"} <= set(values)
    assert values["n"] == 6  # a folder without splits is evaluated whole
    assert 0.0 <= values["accuracy"] <= 1.0
    assert list(values["per_class"]) == list(FER2013_CLASSES)  # the model's classes, in card order
    assert set(values["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}
    assert values["per_class"]["happy"]["support"] == 3
    assert np.array(values["confusion"]).shape == (7, 7)
    assert np.array(values["confusion"]).sum() == 6


def test_evaluate_table_on_the_test_split(tiny_model_dir, tiny_npz, capsys):
    code, out, _ = main(["evaluate", "--model", tiny_model_dir, "--data", tiny_npz, "--tta"], capsys)
    assert code == 0
    assert re.match(r"accuracy [\d.]+ on 14 faces \(flip TTA\)", out)  # test split: 2 per class


def test_predict_json(tiny_model_dir, photos, capsys):
    code, out, _ = main(["predict", "--model", tiny_model_dir, *photos, "--json"], capsys)

    assert code == 0
    results = json.loads(out)
    assert len(results) == 2  # one list per image
    (face,), none = results
    assert none == []
    assert set(face) == {"box", "label", "probabilities"}
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert list(face["probabilities"]) == list(FER2013_CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)

    code, out, _ = main(["predict", "--model", tiny_model_dir, photos[0], "--json", "--tta"], capsys)
    assert code == 0
    (mirrored,) = json.loads(out)[0]
    assert mirrored["box"] == face["box"]
    assert sum(mirrored["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_whole_and_text(tiny_model_dir, photos, capsys):
    code, out, _ = main(["predict", "--model", tiny_model_dir, photos[1], "--whole", "--json"], capsys)
    assert code == 0
    assert json.loads(out)[0][0]["box"] == [0, 0, 320, 240]

    code, out, _ = main(["predict", "--model", tiny_model_dir, photos[0]], capsys)
    assert code == 0
    assert out.splitlines()[0] == f"{photos[0]}: 1 face(s)"


def test_predict_annotate(tmp_path, tiny_model_dir, photos, capsys):
    out_path = tmp_path / "annotated.png"
    code, _, _ = main(["predict", "--model", tiny_model_dir, photos[0], "--annotate", out_path], capsys)
    assert code == 0
    annotated = cv2.imread(str(out_path))
    assert annotated.shape == (480, 640, 3)
    assert not np.array_equal(annotated, cv2.imread(str(photos[0])))

    # Several images: one file each, named after the image.
    code, _, _ = main(["predict", "--model", tiny_model_dir, *photos, "--annotate", out_path], capsys)
    assert code == 0
    assert (tmp_path / "annotated_face.png").exists() and (tmp_path / "annotated_blank.png").exists()


# --- train ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_then_resume(tmp_path, tiny_npz, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", tiny_npz, "--out", run, "--epochs", "1", "--batch-size", "16", "--no-augment"]

    code, out, err = main(argv, capsys)

    assert code == 0, err
    assert err.startswith("training default on 140 faces (synthetic)")
    assert re.match(r"finished: validation accuracy [\d.]+ \(flip TTA [\d.]+\); model saved in ", out)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert (run / "model" / "model.keras").exists() and (run / "model" / "card.json").exists()
    card = json.loads((run / "model" / "card.json").read_text())
    assert card["training"]["command"].startswith("python -m fertools ")
    assert len(RunDir(run).read_history()) == 1

    # --resume takes the saved config; ask it for one more epoch than was run.
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 2}))
    code, out, err = main(["train", "--data", tiny_npz, "--out", run, "--resume"], capsys)

    assert code == 0, err
    assert err.startswith("resuming default")
    assert [row["epoch"] for row in RunDir(run).read_history()] == [0, 1]
    assert json.loads((run / "config.json").read_text())["epochs"] == 2

    # export writes the run's weights elsewhere with a measured card, and leaves the run as it was.
    metrics_before = (run / "metrics.json").read_bytes()
    code, out, err = main(["export", run, "--data", tiny_npz, "--out", tmp_path / "shipped"], capsys)

    assert code == 0, err
    assert "exported default to" in out and "2 epochs run" in out
    card = json.loads((tmp_path / "shipped" / "card.json").read_text())
    assert card["training"]["epochs_run"] == 2
    assert card["training"]["best_epoch"] in (1, 2) and "epochs" not in card["training"]
    assert card["inference"]["engine"] == "litert"
    assert (run / "metrics.json").read_bytes() == metrics_before


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    code, _, err = main(["export", tmp_path, "--data", "builtin"], capsys)
    assert code == 2
    assert_one_line_error(err, "is not a training run")
    (tmp_path / "config.json").write_text("{}")
    code, _, err = main(["export", tmp_path], capsys)
    assert code == 2
    assert_one_line_error(err, "has no finished epoch")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": 5}))
    code, _, err = main(["export", tmp_path], capsys)
    assert code == 2
    assert_one_line_error(err, "config.json cannot be used: unknown architecture 5")


def test_evaluate_on_data_with_no_faces_and_card_of_odd_types(tmp_path, tiny_model_dir, capsys):
    rejected = tmp_path / "all_bad.csv"
    rejected.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n9,4 5,Training\n")
    code, _, err = main(["evaluate", "--model", tiny_model_dir, "--data", rejected], capsys)
    assert code == 2
    assert_one_line_error(err, "has no faces to evaluate")

    card = json.loads((tiny_model_dir / "card.json").read_text())
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "card.json").write_text(json.dumps({**card, "parameters": "lots"}))
    code, _, err = main(["card", odd], capsys)
    assert code == 2
    assert_one_line_error(err, "is not a valid model card (its parameters is str, not a whole number)")
    (odd / "card.json").write_text(json.dumps({**card, "metrics": {"accuracy": "high"}}))
    code, _, err = main(["card", odd], capsys)
    assert_one_line_error(err, "its metrics.accuracy is str, not a number")


def test_evaluate_and_predict_with_ten_crops(tiny_model_dir, tiny_npz, tmp_path, capsys):
    code, out, _ = main(
        ["evaluate", "--model", tiny_model_dir, "--data", tiny_npz, "--views", "ten_crop", "--json"], capsys
    )
    assert code == 0 and json.loads(out)["views"] == "ten_crop"
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((48, 48), 120, np.uint8))
    code, out, _ = main(
        ["predict", str(face), "--model", tiny_model_dir, "--whole", "--views", "ten_crop", "--json"], capsys
    )
    assert code == 0 and len(json.loads(out)) == 1
    code, _, err = main(
        ["evaluate", "--model", tiny_model_dir, "--data", tiny_npz, "--views", "many"], capsys
    )
    assert code == 2 and "invalid choice" in err
