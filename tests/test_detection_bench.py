"""The detection and alignment benchmark on frames composed from synthetic faces written to a temporary folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fertools import synthetic
from fertools.constants import FER2013_CLASSES
from fertools.detection_bench import (
    alignment_benchmark,
    detection_benchmark,
    iou,
    load_faces,
    make_frames,
    match,
)
from fertools.faces import make_detector


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    """Three synthetic faces per class as ``<class>/<n>.png``, like FER2013's image release."""
    root = tmp_path_factory.mktemp("faces")
    images, labels = synthetic.generate(n_per_class=3, seed=0)
    for number, (image, label) in enumerate(zip(images, labels)):
        folder = root / FER2013_CLASSES[label]
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{number}.png"), image)
    return root


def test_load_faces_labels_by_subfolder(face_folder, tmp_path):
    faces, labels = load_faces(face_folder)
    assert faces.shape == (21, 48, 48) and faces.dtype == np.uint8
    assert sorted(set(labels)) == sorted(FER2013_CLASSES)
    some, _ = load_faces(face_folder, limit=5, seed=1)
    assert len(some) == 5
    cv2.imwrite(str(tmp_path / "loose.png"), faces[0])
    assert load_faces(tmp_path)[1] == [None]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no faces here")
    with pytest.raises(ValueError, match="no readable face"):
        load_faces(empty)
    with pytest.raises(ValueError, match="not a folder"):
        load_faces(tmp_path / "nowhere")
    cv2.imwrite(str(tmp_path / "huge.png"), np.zeros((1100, 20), np.uint8))
    with pytest.raises(ValueError, match="larger than 1024"):
        load_faces(tmp_path)


def test_frames_are_reproducible_and_faces_fit(face_folder):
    frames = make_frames(face_folder, n_frames=12, seed=3, max_angle=25.0)
    again = make_frames(face_folder, n_frames=12, seed=3, max_angle=25.0)
    assert all(np.array_equal(a.frame, b.frame) and a.faces == b.faces for a, b in zip(frames, again))
    assert any(bench.faces for bench in frames)
    for bench in frames:
        assert bench.frame.shape == (480, 640, 3) and bench.frame.dtype == np.uint8
        assert len(bench.faces) <= 4
        for face in bench.faces:
            x, y, side, height = face.box
            assert side == height and 40 <= side <= 300
            assert 0 <= x and 0 <= y and x + side <= 640 and y + side <= 480
            assert abs(face.angle) <= 25.0 and face.label in FER2013_CLASSES
        for i, a in enumerate(bench.faces):
            assert all(iou(a.box, b.box) == 0 for b in bench.faces[i + 1 :])
    empty = make_frames(face_folder, n_frames=3, empty_fraction=1.0)
    assert all(bench.faces == () for bench in empty)


def test_match_is_one_to_one_and_greedy():
    truth = [(0, 0, 100, 100), (300, 0, 100, 100)]
    found = [(5, 5, 90, 90), (0, 0, 100, 100), (600, 400, 20, 20)]
    assert match(found, truth) == [(1, 0)]  # the exact box wins face 0; the other box is left over
    assert match([], truth) == [] and match(found, []) == []


class Oracle:
    """Finds exactly the pasted faces (looked up by frame), to check the counting."""

    def __init__(self, frames):
        self.truth = {id(bench.frame): [face.box for face in bench.faces] for bench in frames}

    def detect(self, frame):
        return self.truth[id(frame)]


class Blind:
    def detect(self, frame):
        return []


class Sloppy(Oracle):
    """Each face framed twice too large (a box on the face that does not match it), plus one box in a corner."""

    def detect(self, frame):
        boxes = [(x - w // 2, y - h // 2, 2 * w, 2 * h) for x, y, w, h in self.truth[id(frame)]]
        return [*boxes, (0, 0, 12, 12)]


def test_benchmark_counts_hits_misses_and_false_boxes(face_folder):
    frames = make_frames(face_folder, n_frames=10, seed=1)
    faces = sum(len(bench.faces) for bench in frames)
    table = detection_benchmark(
        {"oracle": Oracle(frames), "blind": Blind(), "blazeface": make_detector("blazeface")}, frames
    )
    oracle, blind, real = table["oracle"], table["blind"], table["blazeface"]
    assert (oracle["recall"], oracle["precision"], oracle["true_positives"]) == (1.0, 1.0, faces)
    assert oracle["mean_iou"] == 1.0 and oracle["false_positives_on_empty_frames"] == 0
    assert (blind["recall"], blind["missed"], blind["false_positives"]) == (0.0, faces, 0)
    assert real["true_positives"] + real["missed"] == faces
    assert 0.0 <= real["recall"] <= 1.0 and 0.0 <= real["precision"] <= 1.0
    assert set(real["recall_by_side"]) == {"40-79px", "80-149px", "150-300px"}
    assert set(real["recall_by_angle"]) == {"0-10deg", "10-20deg", "20-30deg"}
    assert real["ms_per_frame_p50"] > 0
    assert oracle["boxes_on_no_face"] == blind["boxes_on_no_face"] == 0


def test_a_box_on_a_face_that_does_not_match_is_no_box_on_no_face(face_folder):
    frames = make_frames(face_folder, n_frames=12, seed=1)
    faces = sum(len(bench.faces) for bench in frames)
    # Faces placed in a corner would overlap the corner box: keep the count exact.
    assert all(face.box[0] > 12 or face.box[1] > 12 for bench in frames for face in bench.faces)
    sloppy = detection_benchmark({"sloppy": Sloppy(frames)}, frames)["sloppy"]
    assert sloppy["true_positives"] == 0 and sloppy["false_positives"] == faces + len(frames)
    assert sloppy["boxes_on_no_face"] == len(frames)  # only the corner boxes
    assert sloppy["false_positives_on_empty_frames"] == sum(1 for bench in frames if not bench.faces)


def test_the_command_line_reports_every_page_detector(face_folder, capsys):
    from fertools import cli

    assert cli.main(["detection-bench", str(face_folder), "--frames", "6"]) == 0
    text = capsys.readouterr().out
    for name in (
        "BlazeFace, Webcam page",
        "Haar cascade, Webcam page",
        "BlazeFace, Photo page",
        "Haar cascade, Photo page",
    ):
        assert f"| {name} |" in text
    assert "6 frames" in text and "boxes on no face" in text
    assert cli.main(["detection-bench", str(face_folder / "missing")]) == 2


def test_alignment_benchmark_compares_both_crops(face_folder, tiny_model_dir, tmp_path):
    from fertools.recognize import Recognizer

    recognizer = Recognizer.load(tiny_model_dir, engine="keras")
    result = alignment_benchmark(recognizer, face_folder, n_faces=8, seed=0)
    assert result["faces"] == 8 and 0 < result["detected"] <= 8
    for key in ("upright_crop_accuracy", "plain_accuracy", "aligned_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["by_angle"]) == {"0-10deg", "10-20deg", "20-30deg"}
    cv2.imwrite(str(tmp_path / "unlabelled.png"), load_faces(face_folder)[0][0])
    with pytest.raises(ValueError, match="no subfolders named after"):
        alignment_benchmark(recognizer, tmp_path, n_faces=2)
