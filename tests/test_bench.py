"""``fertools.bench``: generated data, target judging, the report's shape, units and text, and the CLI.

The measuring sections run at ``quick`` sizes; the whole quick benchmark (with
training) runs once, through the CLI, as a slow test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fertools import bench, cli, data
from fertools.bench import generated
from fertools.bench import report as bench_report
from fertools.bench.recognition import load_recognizer
from fertools.constants import FER2013_CLASSES, PROJECT_ROOT

# --- helpers -------------------------------------------------------------------------------------


def _walk_numbers(value, path=""):
    """(path, number) for every number in a nested report."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_numbers(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def _check_common(report: dict, quick: bool = True) -> None:
    assert json.loads(json.dumps(report)) == report  # plain JSON types only
    assert report["meta"]["quick"] is quick
    assert report["meta"]["seconds"] > 0
    env = report["environment"]
    assert env["hardware"]["cores"] >= 1
    assert env["hardware"]["cpu"]
    assert set(env["versions"]) == {"python", "tensorflow", "keras", "numpy", "opencv"}
    assert set(env["threads"]) == {"tf_inter_op", "tf_intra_op", "OMP_NUM_THREADS", "cv2"}
    for path, number in _walk_numbers(report):
        assert math.isfinite(number), path
        # Every measured time and rate is positive; only counts, thread settings and load may be 0.
        if path.endswith(("_s", "_ms", "_per_s", "ratio", "ratio_cold", "ratio_cached")):
            assert number > 0, path
    text = bench.format_report(report)
    assert "## Targets" in text
    assert env["hardware"]["cpu"] in text
    statuses = {t["key"]: t["status"] for t in report["targets"]}
    assert set(statuses) == {key for key, *_ in bench.TARGETS}


def _check_loading(loading: dict, sizes: bench.Sizes) -> None:
    csv_report = loading["csv"]
    assert csv_report["source"] == "generated"
    assert csv_report["rows"] == csv_report["faces"] == sizes.csv_rows
    for timing in (csv_report["cold"], csv_report["cached"]):
        assert timing["repeats"] == sizes.repeats
        assert 0 < timing["min_s"] <= timing["median_s"] <= timing["p90_s"]
        assert timing["rows_per_s"] > 0
    assert loading["folder"]["images"] == sizes.folder_images
    assert loading["folder"]["images_per_s"] > 0
    assert loading["convert"]["images_per_s"] > 0
    for name in ("notebook_loop", "numpy_per_row"):
        baseline = loading["baselines"][name]
        assert baseline["rows_timed"] == sizes.baseline_rows
        assert baseline["subset"] is True
        assert baseline["seconds_for_file"] > baseline["seconds"]
    assert "first 300 rows" in loading["baselines"]["note"]


def _check_recognition(recognition: dict, sizes: bench.Sizes) -> None:
    assert set(recognition["frames"]) == {"0", "1", "3"}
    for key, frame in recognition["frames"].items():
        assert frame["intended_faces"] == int(key)
        # The frames are built so that the Haar detector finds exactly the faces pasted in.
        assert frame["detected_faces"] == frame["analyzed_faces"] == int(key)
        assert frame["detection_ok"] is True
        assert frame["analyze"]["calls"] == sizes.frames
        assert 0 < frame["analyze"]["p50_ms"] <= frame["analyze"]["p90_ms"]
        # Detection and classification are parts of the same calls: each is below the whole
        # call by call, so also in the median. A frame without faces has nothing to classify.
        assert frame["detect"]["calls"] == sizes.frames
        assert 0 < frame["detect"]["p50_ms"] <= frame["analyze"]["p50_ms"]
        if key == "0":
            assert frame["classify"] is None
        else:
            assert frame["classify"]["calls"] == sizes.frames
            assert 0 < frame["classify"]["p50_ms"] <= frame["analyze"]["p50_ms"]
    assert recognition["classify_batch1"]["calls"] == sizes.classify_calls
    assert recognition["classify_batch256"]["faces_per_s"] > 0
    # The Recognizer's path (LiteRT with flip TTA), the engine's single pass and the Keras model,
    # each at batch 1 and 256.
    assert recognition["engine"] == "litert"
    assert list(recognition["engines"]) == [
        "litert (Recognizer's, flip TTA)",
        "litert, one pass",
        "keras (compiled tf.function)",
    ]
    for timing in recognition["engines"].values():
        assert timing["batch1"]["calls"] == sizes.classify_calls
        assert 0 < timing["batch1"]["p50_ms"] <= timing["batch1"]["p90_ms"]
        assert timing["batch256"]["faces_per_s"] > 0
    assert "note" in recognition["fer_package"]


def _check_training(training: dict, sizes: bench.Sizes) -> None:
    assert training["timed_steps"] == sizes.train_steps
    assert training["input_pipeline"]["ms_per_batch"] > 0
    names = [run["architecture"] for run in training["runs"]]
    expected = bench.QUICK_TRAIN_ARCHITECTURES if sizes == bench.QUICK else bench.TRAIN_ARCHITECTURES
    assert set(names) == set(expected)
    for run in training["runs"]:
        assert "error" not in run, run
        assert run["images_per_s"] > 0
        assert run["parameters"] > 0
        # epoch_s is the epoch's images at the measured rate (both rounded).
        assert run["epoch_s"] == pytest.approx(bench.EPOCH_IMAGES / run["images_per_s"], rel=0.01)


# --- generated data and small pieces ----------------------------------------------------------------


def test_generated_csv_has_fer2013_format_split_and_classes(tmp_path):
    path = tmp_path / "fer.csv"
    bench.write_fer2013_csv(path, rows=700)
    assert path.read_text().splitlines()[0] == "emotion,pixels,Usage"
    dataset = data.load(path, use_cache=False)
    assert len(dataset) == 700 and not dataset.rejected
    # 28,709 / 3,589 / 3,589 scaled to 700 rows.
    assert {name: int((dataset.split == name).sum()) for name in dataset.splits} == {
        "train": 560,
        "val": 70,
        "test": 70,
    }
    per_class = np.bincount(dataset.labels, minlength=len(FER2013_CLASSES))
    assert per_class.tolist() == generated.scaled(generated.FER2013_CLASS_ROWS, 700)
    # Realistic pixel strings: the whole 0..255 range in use, no two rows alike.
    assert dataset.images.min() < 20 and dataset.images.max() > 235
    assert len({face.tobytes() for face in dataset.images}) == 700


def test_pixel_fields_round_trip():
    block = np.random.default_rng(0).integers(0, 256, size=(5, 2304), dtype=np.uint8)
    block[0, :3] = (0, 9, 255)
    for row, field in zip(block, generated.pixel_fields(block)):
        assert field == " ".join(map(str, row.tolist())).encode()


def test_generated_folder_has_kaggle_layout(tmp_path):
    bench.write_image_folder(tmp_path, images=70)
    files = sorted(tmp_path.rglob("*.jpg"))
    assert len(files) == 70
    assert {f.parent.parent.name for f in files} == {"train"}
    dataset = data.load(tmp_path)
    assert len(dataset) == 70 and set(dataset.classes) <= set(FER2013_CLASSES)


def test_scaled_counts_add_up():
    assert generated.scaled(generated.FER2013_USAGE.values(), 35_887) == [28_709, 3_589, 3_589]
    assert sum(generated.scaled(generated.FOLDER_CLASS_IMAGES.values(), 1_000)) == 1_000


def test_notebook_baselines_parse_like_fer_lab(tmp_path):
    path = tmp_path / "fer.csv"
    bench.write_fer2013_csv(path, rows=20)
    dataset = data.load(path, use_cache=False)
    for parser in (bench.notebook_csv_loop, bench.numpy_per_row):
        images, labels = parser(path, limit=15)
        assert images.shape == (15, 48, 48, 1) and images.dtype == np.float32
        np.testing.assert_array_equal(images[..., 0], dataset.images[:15])
        np.testing.assert_array_equal(labels, dataset.labels[:15])


def _fake_report(
    quick: bool,
    gpus: list[str],
    *,
    cold=1.0,
    cached=0.1,
    folder=4.0,
    analyze=3.0,
    three=6.0,
    fer=40.0,
    model=0.5,
    ratio=1.2,
):
    default_rate = 100.0 * ratio
    return {
        "meta": {"quick": quick},
        "environment": {"hardware": {"gpus": gpus}},
        "loading": {
            "csv": {"cold": {"median_s": cold}, "cached": {"median_s": cached}},
            "folder": {"median_s": folder},
        },
        "recognition": {
            "frames": {
                "1": {"analyze": {"p50_ms": analyze}, "detection_ok": True, "detected_faces": 1},
                "3": {"analyze": {"p50_ms": three}, "detection_ok": True, "detected_faces": 3},
            },
            "classify_batch1": {"p50_ms": model},
            "fer_package": {"1": {"p50_ms": fer, "ratio": round(fer / analyze, 2)}},
        },
        "training": {
            "device": "GPU" if gpus else "CPU",
            "runs": [
                {"architecture": "gr5243_improved", "images_per_s": 100.0, "epoch_s": 287.1},
                {
                    "architecture": "default",
                    "images_per_s": default_rate,
                    "epoch_s": bench.EPOCH_IMAGES / default_rate,
                },
            ],
        },
    }


def test_targets_pass_and_fail_in_full_mode():
    statuses = {t["key"]: t["status"] for t in bench.judge_targets(_fake_report(False, []), quick=False)}
    assert statuses == {
        "csv_cold": "pass",
        "csv_cached": "pass",
        "folder_load": "pass",
        "analyze_one_face": "pass",
        "analyze_three_faces": "pass",
        "fer_ratio_one_face": "pass",
        "model_one_face": "pass",
        "default_vs_gr5243": "pass",
        "gpu_default_epoch": "not applicable (no GPU)",
    }
    slow = _fake_report(
        False,
        ["H200"],
        cold=2.0,
        cached=0.3,
        folder=6.0,
        analyze=6.0,
        three=9.0,
        fer=40.0,
        model=3.0,
        ratio=0.9,
    )
    judged = {t["key"]: t for t in bench.judge_targets(slow, quick=False)}
    assert {key: t["status"] for key, t in judged.items()} == dict.fromkeys(judged, "fail")
    assert judged["default_vs_gr5243"]["value"] == pytest.approx(0.9)


def test_targets_are_not_judged_in_quick_mode_nor_when_not_measured():
    report = _fake_report(True, [])
    del report["training"]
    statuses = {t["key"]: t["status"] for t in bench.judge_targets(report, quick=True)}
    assert statuses["csv_cold"] == "not judged (quick)"
    assert statuses["default_vs_gr5243"] == "not measured"
    assert statuses["gpu_default_epoch"] == "not applicable (no GPU)"


def test_analyze_target_is_not_judged_when_the_detector_misses():
    report = _fake_report(False, [])
    report["recognition"]["frames"]["1"].update(detection_ok=False, detected_faces=0)
    statuses = {t["key"]: t["status"] for t in bench.judge_targets(report, quick=False)}
    assert statuses["analyze_one_face"] == "not judged (detector found 0 faces)"
    assert statuses["fer_ratio_one_face"] == "not judged (detector found 0 faces)"
    assert statuses["analyze_three_faces"] == "pass"


def test_a_failed_training_variant_is_a_row_not_a_lost_report():
    training = {
        "device": "GPU",
        "batch_size": 64,
        "warmup_steps": 1,
        "timed_steps": 3,
        "note": "n",
        "input_pipeline": {"ms_per_batch": 1.0, "images_per_s": 64000.0},
        "runs": [
            {
                "architecture": "gr5243_improved",
                "precision": "float32",
                "xla": False,
                "parameters": 1,
                "images_per_s": 100.0,
                "step_ms": 640.0,
                "epoch_s": 287.1,
                "warmup_s": 2.0,
            },
            {
                "architecture": "default",
                "precision": "mixed_float16",
                "xla": True,
                "error": "InvalidArgumentError: XLA compilation failed",
            },
        ],
    }
    assert "failed: InvalidArgumentError" in "\n".join(bench_report.format_training(training))
    report = {**_fake_report(False, ["H200"]), "training": training}
    statuses = {t["key"]: t["status"] for t in bench.judge_targets(report, quick=False)}
    assert statuses["default_vs_gr5243"] == statuses["gpu_default_epoch"] == "not measured"


def test_bad_arguments_raise_one_clear_error(tmp_path):
    with pytest.raises(bench.BenchInputError, match="unknown section"):
        bench.run(quick=True, skip={"everything"})
    with pytest.raises(bench.BenchInputError, match="does not exist"):
        bench.run(quick=True, csv_path=tmp_path / "missing.csv")
    garbage = tmp_path / "notes.csv"
    garbage.write_text("shopping list\nmilk, eggs\n")
    with pytest.raises(bench.BenchInputError, match="not a FER dataset"):
        bench.run(quick=True, csv_path=garbage, skip={"recognition", "training", "baselines"})


def test_cli_bad_csv_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--csv", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


# --- the measuring sections at quick sizes -----------------------------------------------------------


def test_quick_loading_section():
    messages = []
    report = bench.run(quick=True, skip={"recognition", "training"}, progress=messages.append)
    _check_common(report)
    _check_loading(report["loading"], bench.QUICK)
    assert any("CSV, cold" in message for message in messages)
    statuses = {t["key"]: t["status"] for t in report["targets"]}
    assert statuses["csv_cold"] == statuses["folder_load"] == "not judged (quick)"
    assert statuses["analyze_one_face"] == "not measured"
    text = bench.format_report(report)
    assert "GR5243 per-pixel loop" in text and "quick" in text
    # The temporary data is gone, and the caller's cache folder is untouched.
    assert os.environ["FERLAB_CACHE_DIR"] and not any(Path(os.environ["FERLAB_CACHE_DIR"]).iterdir())


def test_quick_loading_of_a_given_csv(tmp_path):
    path = tmp_path / "given.csv"
    bench.write_fer2013_csv(path, rows=400)
    folder = tmp_path / "images"
    bench.write_image_folder(folder, images=50)
    report = bench.run(quick=True, csv_path=path, folder=folder, skip={"recognition", "training"})
    loading = report["loading"]
    assert loading["csv"]["source"] == str(path) and loading["csv"]["rows"] == 400
    assert loading["folder"]["images"] == 50
    assert loading["baselines"]["notebook_loop"]["rows_timed"] == bench.QUICK.baseline_rows


def test_quick_recognition_section(tiny_model_dir):
    report = bench.run(quick=True, skip={"loading", "training"}, model_dir=tiny_model_dir)
    _check_common(report)
    _check_recognition(report["recognition"], bench.QUICK)
    assert report["recognition"]["model"] == str(tiny_model_dir)
    text = bench.format_report(report)
    assert "## Recognition" in text and "| detect p50 ms | classify p50 ms |" in text


def test_recognition_falls_back_to_an_untrained_model(tmp_path):
    recognizer, source = load_recognizer(tmp_path)  # no model folder there
    assert source.startswith("untrained default")
    assert recognizer.classes == FER2013_CLASSES


@pytest.mark.slow
def test_cli_quick_json_is_the_whole_report():
    """The CI command: every section at quick sizes, as JSON on stdout, progress on stderr."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "fertools", "bench", "--quick", "--json"],
        check=False,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    _check_common(report)
    _check_loading(report["loading"], bench.QUICK)
    _check_recognition(report["recognition"], bench.QUICK)
    _check_training(report["training"], bench.QUICK)
    statuses = {t["key"]: t["status"] for t in report["targets"]}
    fer = statuses.pop("fer_ratio_one_face")  # the fer package is not installed in CI
    assert fer in ("not measured", "not judged (quick)")
    assert set(statuses.values()) <= {"not judged (quick)", "not applicable (no GPU)"}
    assert "training: default" in done.stderr
