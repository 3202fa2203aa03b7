"""The recognizer: detect, crop and classify every face of a frame in one batched call."""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest

from fertools.constants import DEFAULT_MODEL_DIR, FER2013_CLASSES
from fertools.faces import Detection, HaarFaceDetector
from fertools.modelcard import ModelCard, ModelLoadError, Preprocessing, read_card
from fertools.preprocess import crop_face, to_face
from fertools.recognize import ENGINE_FALLBACK, ENGINE_FALLBACK_NO_TTA, FaceResult, Recognizer, draw_faces


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir) -> Recognizer:
    return Recognizer.load(tiny_model_dir)


class ClassifySpy:
    """Wraps ``Recognizer.classify`` and records the batch shape of every call."""

    def __init__(self, recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch):
        self.shapes: list[tuple[int, ...]] = []
        self._real = recognizer.classify
        monkeypatch.setattr(recognizer, "classify", self)

    def __call__(self, faces: np.ndarray, tta: bool | None = None, views: str | None = None) -> np.ndarray:
        self.shapes.append(faces.shape)
        return self._real(faces, tta, views)


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


# --- the card's preprocessing, read by the Recognizer ------------------------------------------


def _card(**preprocessing) -> ModelCard:
    return ModelCard(
        name="tiny",
        architecture="default",
        classes=list(FER2013_CLASSES),
        input_shape=[48, 48, 1],
        preprocessing=Preprocessing(**preprocessing),
    )


def test_margin_and_alignment_come_from_the_card_unless_overridden(recognizer, haar_face_frame):
    wide = Recognizer(recognizer.model, _card(face_margin=0.25, align=True), tta=False)
    assert (wide.margin, wide.align) == (0.25, True)
    overridden = Recognizer(recognizer.model, _card(face_margin=0.25, align=True), margin=0.0, align=False)
    assert (overridden.margin, overridden.align) == (0.0, False)
    assert (recognizer.margin, recognizer.align) == (0.1, False)  # the defaults, FER Lab's own

    detection = Detection((200, 120, 240, 240))  # no keypoints: cropped from the box
    np.testing.assert_array_equal(
        wide.crop(haar_face_frame, detection), crop_face(haar_face_frame, detection.box, 0.25)
    )
    assert not np.array_equal(
        wide.crop(haar_face_frame, detection), recognizer.crop(haar_face_frame, detection)
    )


def test_cards_without_the_fields_read_as_todays_preprocessing(tmp_path):
    shipped = read_card(DEFAULT_MODEL_DIR).preprocessing  # written before the fields existed: prose only
    structured = ("face_margin", "color", "resize_shrink", "resize_enlarge", "align")
    assert [getattr(shipped, name) for name in structured] == [0.1, "grayscale", "area", "linear", False]
    old_prose = {
        "face_crop": "detector box grown by 10% on each side (Haar cascade for photos and webcam)",
        "color": "grayscale",
        "size": "48x48, cv2.INTER_AREA when shrinking",
        "pixels": "raw uint8 0..255; the model rescales inside its graph",
        "code": "fertools.preprocess.crop_face / to_face",
    }
    card = ModelCard.from_dict({**json.loads(_card().to_json()), "preprocessing": old_prose})
    assert (card.preprocessing.face_margin, card.preprocessing.align) == (0.1, False)
    assert card.preprocessing.code == old_prose["code"]
    # No preprocessing at all, and a round trip of the new fields.
    bare = {key: value for key, value in json.loads(_card().to_json()).items() if key != "preprocessing"}
    assert ModelCard.from_dict(bare).preprocessing == Preprocessing()
    written = _card(face_margin=0.2, align=True)
    assert json.loads(written.to_json())["preprocessing"]["face_margin"] == 0.2
    assert ModelCard.from_dict(json.loads(written.to_json())) == written


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("color", "rgb", "does only \\['grayscale'\\]"),
        ("resize_shrink", "nearest", "does only \\['area'\\]"),
        ("face_margin", 3, "from 0 to 1"),
        ("face_margin", "10%", "from 0 to 1"),
        ("align", "yes", "true or false"),
    ],
)
def test_a_card_asking_for_preprocessing_fer_lab_does_not_do_is_refused(tmp_path, field, value, message):
    values = json.loads(_card().to_json())
    values["preprocessing"][field] = value
    (tmp_path / "card.json").write_text(json.dumps(values))
    with pytest.raises(ModelLoadError, match=message):
        read_card(tmp_path)


def test_the_card_describes_what_to_face_does():
    """The card's interpolation names are what the one preprocessing path really uses."""
    methods = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
    big = np.random.default_rng(0).integers(0, 256, size=(120, 120), dtype=np.uint8)
    small = big[:30, :30]
    defaults = Preprocessing()
    np.testing.assert_array_equal(
        to_face(big), cv2.resize(big, (48, 48), interpolation=methods[defaults.resize_shrink])
    )
    np.testing.assert_array_equal(
        to_face(small), cv2.resize(small, (48, 48), interpolation=methods[defaults.resize_enlarge])
    )


# --- an engine that falls back says so ----------------------------------------------------------------


def test_a_failed_litert_conversion_is_a_visible_fallback(tiny_model_dir, monkeypatch):
    from fertools import engine as engines

    assert Recognizer.load(tiny_model_dir).fallback is None

    def broken(*args):
        raise RuntimeError("converter exploded")

    # The converter fails, whatever is cached in memory or on disk.
    monkeypatch.setattr(engines, "cached_litert_model", broken)
    with pytest.warns(UserWarning, match="converter exploded"):
        slow = Recognizer.load(tiny_model_dir)
    assert slow.engine.name == "keras" and not slow.tta
    assert slow.fallback == ENGINE_FALLBACK_NO_TTA
    assert "without mirror averaging" in slow.fallback and "\n" not in slow.fallback
    with pytest.warns(UserWarning):
        chosen = Recognizer.load(tiny_model_dir, tta=True)
    assert chosen.tta and chosen.fallback == ENGINE_FALLBACK
    # Asking for Keras is no fallback.
    assert Recognizer.load(tiny_model_dir, engine="keras").fallback is None


def test_a_published_model_folder_carries_the_preprocessing_the_recognizer_reads(tmp_path, tiny_builtin):
    from fertools import models
    from fertools.config import TrainConfig
    from fertools.publish import publish
    from fertools.runs import RunDir

    data = tiny_builtin
    model = models.create("default", len(data.classes))
    publish(model, RunDir(tmp_path / "run"), data, TrainConfig(epochs=1), tmp_path / "out")

    written = json.loads((tmp_path / "out" / "card.json").read_text())["preprocessing"]
    assert {
        key: written[key] for key in ("face_margin", "color", "resize_shrink", "resize_enlarge", "align")
    } == {
        "face_margin": 0.1,
        "color": "grayscale",
        "resize_shrink": "area",
        "resize_enlarge": "linear",
        "align": False,
    }
    recognizer = Recognizer.load(tmp_path / "out", engine="keras")
    assert recognizer.card.preprocessing == Preprocessing()
    assert (recognizer.margin, recognizer.align) == (written["face_margin"], written["align"])
