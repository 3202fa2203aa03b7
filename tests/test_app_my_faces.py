"""The My faces page: record snapshots into your album, fine-tune on it, compare, delete."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fertools import jobs
from fertools.album import FaceAlbum
from fertools.users import LOCAL_USER
from fertools.webcam import demo_frame

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "8_My_faces.py")


def jpeg(frame: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", frame)
    assert ok
    return encoded.tobytes()


def snapshot(at: AppTest, expression: str, seed: int, frame: np.ndarray | None = None) -> AppTest:
    at.radio(key="album_label").set_value(expression)
    picture = demo_frame(expression, seed=seed) if frame is None else frame
    at.camera_input(key="album_camera").set_value((f"shot{seed}.jpg", jpeg(picture), "image/jpeg"))
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(
        e.value for kind in ("markdown", "caption", "info", "warning", "error") for e in at.get(kind)
    )


@pytest.mark.slow
def test_record_fine_tune_compare_and_delete(tiny_model_dir, ferlab_dirs):
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception, at.exception
    assert "No faces yet" in texts(at)

    snapshot(at, "happy", 0)
    assert not at.exception, at.exception
    album = FaceAlbum.of(LOCAL_USER.id)
    assert album.read().counts()["happy"] == 1
    at.run()  # the same snapshot, still in the widget, is not added twice
    assert len(album.read()) == 1
    assert at.session_state["album_last"][1] == "happy"  # shown beside the camera: the crop and its label

    snapshot(at, "sad", 99, frame=np.full((480, 640, 3), 90, np.uint8))
    assert "No face found" in texts(at)
    assert len(album.read()) == 1

    for seed in (1, 2):
        snapshot(at, "happy", seed)
    for seed in (3, 4, 5):
        snapshot(at, "sad", seed)
    assert album.read().counts()["sad"] == 3 and len(album.read()) == 6
    assert not at.exception, at.exception

    [start] = [b for b in at.button if "Fine-tune the model" in b.label]
    start.click().run()
    assert not at.exception, at.exception
    [run] = jobs.list_runs()
    assert run.owner == LOCAL_USER.id and run.config.start_from and run.config.val_fraction == 0
    deadline = time.monotonic() + 300
    while jobs.get_run(run.id).active:
        assert time.monotonic() < deadline, "fine-tuning did not finish in time"
        time.sleep(0.5)
    assert jobs.get_run(run.id).state == "finished", jobs.get_run(run.id).reason

    at.run()
    assert not at.exception, at.exception
    shown = {metric.label: metric.value for metric in at.metric}
    assert "Before: the model you started from" in shown and "After fine-tuning" in shown
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 6

    # "Before" is the model the run started from, not whichever model is picked afterwards.
    other = ferlab_dirs["runs"] / "20261203-120000-0the" / "model"
    shutil.copytree(tiny_model_dir, other)
    at.run()  # the picker lists the new model
    picker = at.selectbox(key="album_model")
    [label] = [option for option in picker.options if "0the" in option]
    picker.set_value(label).run()
    assert not at.exception, at.exception
    assert at.session_state["model_dir"] == str(other)
    assert {metric.label: metric.value for metric in at.metric} == shown

    [delete] = [b for b in at.button if "Delete my album" in b.label]
    delete.click().run()
    assert not at.exception, at.exception
    assert len(album.read()) == 0
    assert "No faces yet" in texts(at)


def test_an_album_is_per_user_on_a_hosted_server(monkeypatch):
    # Two visitors of a hosted server: each page run sees only its own visitor's album.
    monkeypatch.setenv("FERLAB_HOSTED", "1")
    first = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not first.exception, first.exception
    snapshot(first, "happy", 0)
    assert not first.exception, first.exception
    second = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not second.exception, second.exception
    assert "No faces yet" in texts(second)
    assert "Your album: 1 face" in [s.value for s in first.subheader]
