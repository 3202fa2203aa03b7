"""The recognizer: detect, crop and classify every face of a frame in one batched call."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fertools.constants import FER2013_CLASSES
from fertools.faces import HaarFaceDetector
from fertools.modelcard import ModelCard, ModelLoadError
from fertools.recognize import FaceResult, Recognizer, draw_faces


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir) -> Recognizer:
    return Recognizer.load(tiny_model_dir)


class ClassifySpy:
    """Wraps ``Recognizer.classify`` and records the batch shape of every call."""

    def __init__(self, recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch):
        self.shapes: list[tuple[int, ...]] = []
        self._real = recognizer.classify
        monkeypatch.setattr(recognizer, "classify", self)

    def __call__(self, faces: np.ndarray, tta: bool | None = None) -> np.ndarray:
        self.shapes.append(faces.shape)
        return self._real(faces, tta)


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def _check_result(result: FaceResult, classes) -> None:
    assert list(result.probabilities) == list(classes)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= p <= 1.0 for p in result.probabilities.values())
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.confidence == result.probabilities[result.label]
    assert result.face.shape == (48, 48) and result.face.dtype == np.uint8


def test_the_fixture_frame_has_a_face_the_detector_finds(haar_face_frame, haar_face_box):
    boxes = HaarFaceDetector().detect(haar_face_frame)
    assert len(boxes) == 1
    assert _iou(boxes[0], haar_face_box) > 0.7


def test_finds_the_face_and_classifies_it(recognizer, haar_face_frame, haar_face_box, monkeypatch):
    spy = ClassifySpy(recognizer, monkeypatch)
    results = recognizer.analyze(haar_face_frame)
    assert len(results) == 1
    (result,) = results
    # BlazeFace boxes the face itself, a little inside the FER-style square that was drawn.
    assert _iou(result.box, haar_face_box) > 0.5
    x, y, w, h = result.box
    fx, fy, fw, fh = haar_face_box
    assert fx <= x and fy <= y and x + w <= fx + fw and y + h <= fy + fh
    assert 0.5 < result.detection_score <= 1.0
    _check_result(result, recognizer.card.classes)
    assert spy.shapes == [(1, 48, 48)]
    assert result.to_dict() == {
        "box": list(result.box),
        "label": result.label,
        "probabilities": result.probabilities,
    }


def test_a_gray_frame_works_too(recognizer, haar_face_frame):
    results = recognizer.analyze(haar_face_frame[:, :, 0])
    assert len(results) == 1


def test_several_faces_go_through_one_classify_call(recognizer, make_face_frame, monkeypatch):
    frame = make_face_frame([(10, 140), (180, 140), (350, 140)], side=150)
    spy = ClassifySpy(recognizer, monkeypatch)

    results = recognizer.analyze(frame)

    assert len(results) == 3
    assert spy.shapes == [(3, 48, 48)]
    for result in results:
        _check_result(result, recognizer.card.classes)
    # Each box sits on a different drawn face.
    lefts = sorted(result.box[0] for result in results)
    assert [round(x / 170) for x in lefts] == [0, 1, 2]
    assert recognizer.analyze(frame, max_faces=2)[:2] == results[:2]


def test_no_face_gives_an_empty_list(recognizer, monkeypatch):
    spy = ClassifySpy(recognizer, monkeypatch)
    assert recognizer.analyze(np.full((480, 640, 3), 128, np.uint8)) == []
    assert spy.shapes == []  # the model is not called at all
    assert recognizer.classify(np.zeros((0, 48, 48), np.uint8)).shape == (0, len(FER2013_CLASSES))


def test_analyze_face_takes_the_whole_image(recognizer):
    colour = np.random.default_rng(0).integers(0, 256, size=(80, 100, 3), dtype=np.uint8)
    result = recognizer.analyze_face(colour)
    assert result.box == (0, 0, 100, 80)
    _check_result(result, recognizer.card.classes)


def test_probabilities_follow_the_card_class_order():
    """A model with its own 3 classes: names come from the card, never from FER2013's list."""
    inputs = keras.Input(shape=(48, 48, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, keras.layers.Softmax()(dense(flat)))
    # Logits (0, 0, mean pixel / 255): a white face is the third class.
    kernel = np.zeros((48 * 48, 3), np.float32)
    kernel[:, 2] = 1.0 / (48 * 48 * 255)
    dense.set_weights([kernel, np.zeros(3, np.float32)])
    card = ModelCard(
        name="three", architecture="custom", classes=["sad", "happy", "angry"], input_shape=[48, 48, 1]
    )
    recognizer = Recognizer(model, card, precision="float32")

    result = recognizer.analyze_face(np.full((48, 48), 255, np.uint8))

    assert list(result.probabilities) == ["sad", "happy", "angry"]
    assert result.label == "angry"
    e = np.e
    np.testing.assert_allclose(
        list(result.probabilities.values()), [1 / (2 + e), 1 / (2 + e), e / (2 + e)], atol=1e-5
    )


def test_tta_averages_with_the_mirror(tiny_model_dir, haar_face_frame):
    plain = Recognizer.load(tiny_model_dir, tta=False)
    tta = Recognizer(plain.model, plain.card, tta=True)
    faces = np.random.default_rng(1).integers(0, 256, size=(2, 48, 48), dtype=np.uint8)
    expected = (plain.classify(faces) + plain.classify(faces[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(tta.classify(faces), expected, atol=1e-5)
    # Per call, either way round.
    np.testing.assert_allclose(plain.classify(faces, tta=True), expected, atol=1e-5)
    np.testing.assert_allclose(tta.classify(faces, tta=False), plain.classify(faces), atol=1e-5)
    mirrored = plain.analyze(haar_face_frame, tta=True)[0]
    assert mirrored.probabilities == tta.analyze(haar_face_frame)[0].probabilities
    whole = plain.analyze_face(faces[0], tta=True)
    assert whole.probabilities == tta.analyze_face(faces[0]).probabilities


def test_mirror_averaging_is_on_by_default_only_with_the_fast_engine(tiny_model_dir, monkeypatch):
    import fertools.recognize

    # A machine where a pass takes 0.3 ms (as measured on one of this project's machines).
    monkeypatch.setattr(fertools.recognize, "one_pass_seconds", lambda engine, size: 0.0003)
    lite = Recognizer.load(tiny_model_dir)
    assert lite.engine.name == "litert" and lite.tta
    keras_engine = Recognizer.load(tiny_model_dir, engine="keras")
    assert keras_engine.engine.name == "keras" and not keras_engine.tta
    assert not Recognizer.load(tiny_model_dir, tta=False).tta
    assert Recognizer.load(tiny_model_dir, engine="keras", tta=True).tta


def test_mirror_averaging_stays_off_where_two_passes_miss_the_budget(tiny_model_dir, monkeypatch):
    import fertools.recognize

    monkeypatch.setattr(fertools.recognize, "one_pass_seconds", lambda engine, size: 0.0015)
    assert not Recognizer.load(tiny_model_dir).tta  # 3 ms for two passes: over the 2 ms budget
    monkeypatch.setattr(fertools.recognize, "one_pass_seconds", lambda engine, size: 0.0004)
    assert Recognizer.load(tiny_model_dir).tta


def test_draw_faces_returns_an_annotated_copy(recognizer, haar_face_frame):
    original = haar_face_frame.copy()
    results = recognizer.analyze(haar_face_frame)

    drawn = draw_faces(haar_face_frame, results)
    with_bars = draw_faces(haar_face_frame, results, bars=True)

    assert drawn.shape == haar_face_frame.shape and drawn.dtype == np.uint8
    assert not np.array_equal(drawn, haar_face_frame)
    assert not np.array_equal(with_bars, drawn)
    np.testing.assert_array_equal(haar_face_frame, original)  # the input is left alone
    gray = draw_faces(haar_face_frame[:, :, 0], results)
    assert gray.shape == haar_face_frame.shape
    np.testing.assert_array_equal(draw_faces(haar_face_frame, []), haar_face_frame)


def test_loading_a_folder_that_is_no_model(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        Recognizer.load(tmp_path)


def test_drop_nested_keeps_separate_faces_and_drops_a_box_inside_a_face():
    from fertools.faces import drop_nested

    face, part_of_face, other_face = (100, 100, 200, 200), (140, 130, 100, 100), (400, 100, 150, 150)
    assert drop_nested([face, other_face, part_of_face]) == [face, other_face]
    # Overlapping but mostly outside: a neighbour's face, kept.
    neighbour = (250, 100, 150, 150)
    assert drop_nested([face, neighbour]) == [face, neighbour]
