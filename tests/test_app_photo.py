"""AppTests of the Photo page's face handling: crops, sizes, the detection threshold, model warnings.

The page runs the untrained test model, copied into the temporary runs folder; where the test
needs to know exactly which boxes the detector returns, the photo detector's underlying
detector is replaced by a scripted one (the filtering and ordering stay the real ones).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fertools import faces
from fertools.faces import Detection
from fertools.samples import sample_photo
from ui import photo_view
from ui.model_notes import SYNTHETIC_MODEL

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "4_Photo.py")


@pytest.fixture
def model_dir(tiny_model_dir: Path, ferlab_dirs: dict[str, Path]) -> Path:
    target = ferlab_dirs["runs"] / "tiny" / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


@pytest.fixture
def app(model_dir: Path) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["model_dir"] = str(model_dir)
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [w.value for w in at.warning] + [s.value for s in at.subheader]
    parts += [caption for image in at.get("image") for caption in image.captions]
    return "\n".join(parts)


def jpeg(frame) -> bytes:
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buffer.tobytes()


def upload(at: AppTest, name: str, payload: bytes) -> None:
    at.radio(key="photo_source").set_value("Upload a photo").run()
    at.file_uploader(key="photo_upload").set_value((name, payload, "image/jpeg")).run()
    assert not at.exception, at.exception


class ScriptedDetector:
    """Returns the same detections for any frame, largest first as every detector does."""

    def __init__(self, detections: list[Detection]):
        self.detections = sorted(detections, key=lambda d: -d.box[2] * d.box[3])

    def detect_faces(self, frame):
        return list(self.detections)

    def detect(self, frame):
        return [d.box for d in self.detections]


def test_a_48x48_crop_is_classified_as_one_face(app):
    app.run()
    app.radio(key="photo_kind").set_value("48×48 crop").run()
    assert not app.exception, app.exception
    assert "No face found" not in texts(app)
    assert app.subheader[0].value.startswith("Face 1: ")
    assert "The whole 48×48 picture, used as one face" in texts(app)


def test_the_caption_gives_the_size_of_the_uploaded_picture(app):
    app.run()
    big = cv2.resize(sample_photo("happy", seed=1), (2560, 1920), interpolation=cv2.INTER_CUBIC)
    upload(app, "big.jpg", jpeg(big))
    # Searched at the shrunk size, but the caption names the picture the user sent.
    assert "1 face(s) in 2560×1920 pixels, searched at 1280×960" in texts(app)


def test_the_surest_face_comes_first_and_the_threshold_drops_weak_boxes(app, monkeypatch):
    false_box = Detection((0, 0, 420, 420), 0.55)  # large, and the detector is unsure
    real_face = Detection((300, 120, 180, 180), 0.95)
    faces.photo_detector("blazeface")  # the real one built, then its detector swapped
    monkeypatch.setitem(faces._photo_detectors, "blazeface", (ScriptedDetector([false_box, real_face]), None))
    app.run()
    assert not app.exception, app.exception
    assert "2 face(s)" in texts(app)
    captions = [c.value for c in app.caption if "sure this is a face" in c.value]
    assert captions == [
        "The detector is 95% sure this is a face.",
        "The detector is 55% sure this is a face.",
    ]
    app.slider(key="photo_min_score").set_value(0.6).run()
    assert not app.exception, app.exception
    assert "1 face(s)" in texts(app)
    assert [c.value for c in app.caption if "sure this is a face" in c.value] == [captions[0]]


def test_the_threshold_is_off_for_the_haar_cascade(app):
    app.run()
    assert not app.slider(key="photo_min_score").disabled
    app.selectbox(key="photo_detector").set_value("haar").run()
    assert app.slider(key="photo_min_score").disabled


def test_a_model_trained_on_synthetic_faces_warns_on_real_photos(app, model_dir):
    card_file = model_dir / "card.json"
    card = json.loads(card_file.read_text())
    card["dataset"] = {"source": "builtin", "synthetic": True}
    card_file.write_text(json.dumps(card))
    app.run()
    assert not app.exception, app.exception
    assert SYNTHETIC_MODEL not in texts(app)  # the samples are cartoons too
    upload(app, "portrait.jpg", jpeg(sample_photo("sad", seed=2)))
    assert SYNTHETIC_MODEL in texts(app)


def test_the_engine_fallback_is_shown(app, engine_fallback):
    app.run()
    assert not app.exception, app.exception
    assert any("could not be built" in w.value for w in app.warning)


def test_the_ten_crop_help_quotes_the_models_own_card(app, model_dir):
    # Without view accuracies on the card the help claims no figure.
    app.run()
    assert not app.exception, app.exception
    assert "%" not in app.toggle(key="photo_ten_crop").help

    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["metrics"] = {"accuracy": 0.61, "accuracy_flip_tta": 0.625, "accuracy_ten_crop": 0.6384, "n": 3589}
    card_path.write_text(json.dumps(card))
    app.run()
    assert not app.exception, app.exception
    assert "on this model's 3589 validation faces 63.8% against 62.5% with the mirror image alone" in (
        app.toggle(key="photo_ten_crop").help
    )


def test_a_strip_used_whole_as_one_face_is_shown_at_a_bounded_size(app):
    app.run()
    strip = cv2.imencode(".png", np.full((1, 20000, 3), 128, np.uint8))[1].tobytes()
    upload(app, "strip.png", strip)  # shrunk to 1x1280: no face in it
    app.checkbox(key="photo_whole_image").check().run()
    assert not app.exception, app.exception
    assert "The whole 20000×1 picture, used as one face" in texts(app)
    assert app.subheader[0].value.startswith("Face 1: ")


@pytest.mark.parametrize(("shape", "factor"), [((48, 48), 6), ((1, 1280), 1), ((1, 20), 64), ((400, 300), 1)])
def test_a_whole_picture_is_enlarged_to_be_seen_but_never_beyond_the_photo_size(shape, factor):
    assert photo_view.enlargement(shape) == factor
    assert max(shape) * factor <= max(1280, max(shape))


def test_a_models_class_names_are_shown_as_plain_text(app, model_dir):
    card = json.loads((model_dir / "card.json").read_text())
    card["classes"] = [f"![t{i}](https://example.invalid/{i}.png) :red[**{i}**]" for i in range(7)]
    (model_dir / "card.json").write_text(json.dumps(card))
    app.run()
    app.radio(key="photo_kind").set_value("48×48 crop").run()
    assert not app.exception, app.exception
    heading = app.subheader[0].value
    assert (
        heading.startswith("Face 1: \\!\\[t") and "\\:red\\[\\*\\*" in heading
    )  # escaped, so shown as typed


def test_a_model_that_cannot_load_is_one_sentence_without_the_servers_path(app, model_dir):
    card = json.loads((model_dir / "card.json").read_text())
    (model_dir / "card.json").write_text(json.dumps({**card, "classes": ["sad", *["x"] * 5, " "]}))
    app.run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == [
        "Could not load the model: the card in the chosen model does not list its classes as distinct names."
    ]
    assert str(model_dir) not in texts(app)
