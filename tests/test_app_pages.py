"""AppTests for the Home, Dataset, Augmentation and Photo pages: each runs without an exception.

Every test gets its own data folder (``FERLAB_DATA_DIR``, see conftest.py) holding a small
fer2013-style CSV of synthetic faces with one bad row, so the data-root listing, the
rejected-rows report and switching datasets are exercised. The Photo page runs an untrained
model copied into the temporary runs folder, not the shipped one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fertools import data
from fertools.constants import FER2013_CLASSES

ROOT = Path(__file__).resolve().parent.parent
#: Loading TensorFlow and the built-in dataset on a busy 2-core machine takes a while.
TIMEOUT = 180
CSV_NAME = "tiny_fer2013.csv"


@pytest.fixture
def tiny_csv(ferlab_dirs: dict[str, Path]) -> Path:
    """42 synthetic faces (6 per class) as fer2013.csv, plus one row with too few pixels."""
    dataset = data.load_builtin(n_per_class=6, seed=1)
    path = ferlab_dirs["data"] / CSV_NAME
    path.write_bytes(data.to_fer2013_csv(dataset) + b"3,1 2 3,Training\n")
    return path


def app(page: str) -> AppTest:
    return AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)


def button(at: AppTest, label: str):
    """The one button whose label contains ``label``."""
    (found,) = [b for b in at.button if label in b.label]
    return found


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_home(tiny_csv):
    at = app("app.py").run()
    assert not at.exception
    shown = [element.value for element in at.markdown]
    assert "**Built-in synthetic faces**" in shown
    assert "**CPU**" in shown or any(text.startswith("**GPU") for text in shown)
    assert any(
        "validation accuracy" in caption.value or "not evaluated" in caption.value for caption in at.caption
    )
    assert len(at.get("page_link")) >= 3  # Dataset, Augmentation, Photo (Train and Webcam when present)


def test_home_shows_a_models_name_as_plain_text(tiny_csv, tiny_model_dir, ferlab_dirs):
    # A run's name is what its owner typed; a classmate who uses the shared model sees it here.
    model_dir = ferlab_dirs["runs"] / "named" / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    card = json.loads((model_dir / "card.json").read_text())
    (model_dir / "card.json").write_text(
        json.dumps({**card, "name": "**x** ![t](https://example.invalid/t.png)"})
    )
    at = app("app.py")
    at.session_state["model_dir"] = str(model_dir)
    at.run()
    assert not at.exception, at.exception
    shown = [element.value for element in at.markdown]
    assert any(text.startswith("**\\*\\*x\\*\\* \\!\\[t\\]\\(https") for text in shown), shown


def test_the_frame_starts_without_tensorflow_so_a_first_visit_shows_at_once():
    # TensorFlow takes seconds to import: the router, the frame and the shared page helpers must
    # not need it, so the Home page draws before it has loaded (its Compute box fills in last).
    code = "import sys, ui.frame, ui.common, ui.pages; sys.exit(int('tensorflow' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_router_names_every_page_and_switches_between_them(tiny_csv):
    at = app("app.py").run()
    assert not at.exception
    assert "Home" in [element.value for element in at.title][0] or at.title[0].value == "🙂 FER Lab"
    for path, title in (
        ("app_pages/1_Dataset.py", "Dataset"),
        ("app_pages/2_Augmentation.py", "Augmentation"),
    ):
        at.switch_page(path).run()
        assert not at.exception
        assert title in at.title[0].value
        # The frame draws the sidebar status once, after the page.
        assert sum("**Model:**" in caption.value for caption in at.sidebar.caption) == 1


def test_the_frame_turns_a_page_failure_into_one_sentence(tiny_csv, monkeypatch):
    import ui.common

    def broken(*args, **kwargs):
        raise RuntimeError("/secret/server/path exploded")

    monkeypatch.setenv("FERLAB_HOSTED", "1")
    monkeypatch.setattr(ui.common, "available_sources", broken)
    at = app("app.py").run()
    at.switch_page("app_pages/1_Dataset.py").run()
    assert not at.exception  # caught by the frame, not shown as a traceback
    (error,) = at.error
    assert "Something went wrong on this page (reference" in error.value
    assert "/secret/server/path" not in error.value
    assert not at.get("expander") or all("Details" not in e.label for e in at.expander)


def test_dataset_page_loads_uses_and_reports(tiny_csv):
    at = app("app_pages/1_Dataset.py").run()
    assert not at.exception
    assert metrics(at)["Faces"] == "4,200"  # the built-in set
    options = at.selectbox(key="dataset_choice").options
    assert CSV_NAME in options  # found under FERLAB_DATA_DIR

    at.selectbox(key="dataset_choice").set_value(CSV_NAME).run()
    assert not at.exception
    values = metrics(at)
    assert values["Faces"] == "42" and values["Rejected rows"] == "1"
    expected = data.load(tiny_csv, use_cache=False)
    assert values["train split"] == f"{int((expected.split == 'train').sum()):,}"
    assert len(at.get("plotly_chart")) == 2  # class balance, pixel histogram
    import json

    histogram = json.loads(at.get("plotly_chart")[1].proto.spec)["layout"]
    assert histogram["yaxis"]["rangemode"] == "tozero"  # shares of pixels from 0, not from the lowest
    assert at.tabs[3].label == "Rejected (1)"
    # Both exports are built when clicked (deferred), so the page does not wait for them and the
    # button shows Streamlit's spinner while the file is made (the CSV takes seconds on FER2013).
    downloads = at.get("download_button")
    assert len(downloads) == 2 and all(button.proto.deferred_file_id for button in downloads)
    # Counts in the balance table with the page's thousands separator (28,709), not bare (28709).
    columns = json.loads(at.tabs[0].dataframe[0].proto.columns)
    assert {columns[name]["type_config"]["format"] for name in ("train", "total")} == {"%,d"}

    button(at, "Use this dataset").click().run()
    assert not at.exception
    assert at.session_state["dataset_source"] == str(tiny_csv)
    assert at.session_state["dataset_label"] == CSV_NAME
    assert not [b for b in at.button if "Use this dataset" in b.label]

    # Paging and reshuffling the sample grid.
    button(at, "Reshuffle").click().run()
    assert at.session_state["sample_seed"] == 1
    at.selectbox(key="sample_class").set_value(3).run()
    at.toggle(key="mean_face_difference").set_value(True).run()
    assert not at.exception


def test_dataset_page_reports_bad_files_in_one_sentence(ferlab_dirs):
    (ferlab_dirs["data"] / "notes.csv").write_text("this,is\nnot,faces\n")
    (ferlab_dirs["data"] / "all_bad.csv").write_text("emotion,pixels,Usage\n9,1 2 3,Training\n0,1 2,Oops\n")
    at = app("app_pages/1_Dataset.py").run()
    at.selectbox(key="dataset_choice").set_value("notes.csv").run()
    assert not at.exception
    assert len(at.error) == 1
    assert "not a FER dataset" in at.error[0].value

    at.selectbox(key="dataset_choice").set_value("all_bad.csv").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["all_bad.csv holds no usable faces."]
    assert metrics(at)["Rejected rows"] == "2"
    assert len(at.dataframe) == 2  # reasons, examples


def test_augmentation_page_hands_settings_to_training(tiny_csv):
    at = app("app_pages/2_Augmentation.py").run()
    assert not at.exception
    assert at.session_state["augment_config"] is None

    at.slider(key="aug_rotation").set_value(35.0).run()
    at.slider(key="aug_erasing").set_value(0.5).run()
    button(at, "Use for training").click().run()
    assert not at.exception
    stored = at.session_state["augment_config"]
    assert stored["rotation"] == 35.0 and stored["erasing"] == 0.5
    assert any("will use these settings" in s.value for s in at.success)

    # Re-roll: the same originals, new copies; other faces: new originals, the same seed.
    first = at.get("image")[0].proto.imgs[0].url
    originals = [caption.value for caption in at.caption if caption.value.startswith("Faces:")]
    button(at, "Re-roll").click().run()
    assert at.session_state["aug_seed"] == 1
    assert [caption.value for caption in at.caption if caption.value.startswith("Faces:")] == originals
    assert at.get("image")[0].proto.imgs[0].url != first
    button(at, "Other faces").click().run()
    assert at.session_state["aug_seed"] == 1
    assert [caption.value for caption in at.caption if caption.value.startswith("Faces:")] != originals
    button(at, "All off").click().run()
    assert not at.exception
    assert at.session_state["aug_rotation"] == 0.0
    assert at.session_state["augment_config"]["rotation"] == 35.0  # unchanged until used again


@pytest.fixture
def tiny_run_model(tiny_model_dir: Path, ferlab_dirs: dict[str, Path]) -> Path:
    """The untrained test model, as the finished run ``tiny`` in the temporary runs folder."""
    target = ferlab_dirs["runs"] / "tiny" / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def probability_bars(at) -> int:
    """How many probability bars the Photo page shows; each labelled "<class> <percent>%"."""
    bars = at.get("progress")
    for bar in bars:
        name, share = bar.proto.text.replace("*", "").split()
        assert name in FER2013_CLASSES and share.endswith("%"), bar.proto.text
        assert 0 <= bar.proto.value <= 100
    assert sum("**" in bar.proto.text for bar in bars) == 1  # the top class in bold
    return len(bars)


def test_photo_page_sample_and_whole_image(tiny_run_model):
    at = app("app_pages/4_Photo.py")
    at.session_state["model_dir"] = str(tiny_run_model)
    at.run()
    assert not at.exception
    assert at.selectbox(key="photo_model").value == "Run tiny"
    # The default picture is a sample portrait: one face, found and explained.
    assert at.subheader[0].value.startswith("Face 1: ")
    assert probability_bars(at) == 7  # one per class (progress bars, not a chart: issue 13)
    assert at.selectbox(key="photo_detector").value == "blazeface"
    assert any("sure this is a face" in c.value for c in at.caption)
    at.selectbox(key="photo_detector").set_value("haar").run()
    assert not at.exception
    assert at.subheader[0].value.startswith("Face 1: ")
    assert any("without saying how sure" in c.value for c in at.caption)
    at.selectbox(key="photo_detector").set_value("blazeface").run()

    assert at.toggle(key="photo_tta").value  # mirror averaging is on by default
    at.toggle(key="photo_tta").set_value(False).run()
    assert not at.exception
    assert at.subheader[0].value.startswith("Face 1: ")
    one_view = at.json[0].value  # the raw results
    at.toggle(key="photo_ten_crop").set_value(True).run()  # 12 views for a still picture
    assert not at.exception
    assert at.subheader[0].value.startswith("Face 1: ") and at.toggle(key="photo_tta").disabled
    assert at.json[0].value != one_view  # other probabilities: the views were averaged
    at.toggle(key="photo_ten_crop").set_value(False).run()

    button(at, "New sample").click().run()
    assert not at.exception
    assert at.number_input(key="photo_seed").value == 1

    at.radio(key="photo_kind").set_value("48×48 crop").run()
    assert not at.exception
    assert not any("No face found" in w.value for w in at.warning)  # a crop is one face (issue 16)
    assert at.subheader[0].value.startswith("Face 1: ")
    assert probability_bars(at) == 7

    at.radio(key="photo_source").set_value("Upload a photo").run()
    assert not at.exception
    assert at.info  # asks for a file


def test_a_script_run_leaves_the_shared_keras_state_alone(tiny_csv, monkeypatch):
    # Streamlit clears Keras' session after each run (a full GC and TensorFlow's kernel cache,
    # under every other session's cached models); the frame turns that off.
    import keras

    cleared = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *args, **kwargs: cleared.append(1))
    at = app("app.py").run()
    at.switch_page("app_pages/2_Augmentation.py").run()
    assert not at.exception
    assert cleared == []


def test_projector_mode_holds_across_pages_and_enlarges_text_and_charts(tiny_csv):
    import json

    at = app("app.py").run()
    assert not [h for h in at.get("html") if "font-size" in h.proto.body]
    at.sidebar.toggle(key="ferlab_projector").set_value(True).run()
    at.switch_page("app_pages/1_Dataset.py").run()
    assert not at.exception, at.exception
    assert at.sidebar.toggle(key="ferlab_projector").value is True  # a page switch keeps it
    assert any("font-size: 22px" in h.proto.body for h in at.get("html"))
    fonts = [
        json.loads(chart.proto.spec)["layout"].get("font", {}).get("size") for chart in at.get("plotly_chart")
    ]
    assert fonts and set(fonts) == {20}


def test_a_new_session_gets_back_the_dataset_in_use_and_only_its_own_user_does(tiny_csv, monkeypatch):
    first = app("app.py").run()
    first.switch_page("app_pages/1_Dataset.py").run()
    first.selectbox(key="dataset_choice").set_value(CSV_NAME).run()
    button(first, "Use this dataset").click().run()
    assert not first.exception, first.exception
    again = app("app.py").run()  # a refresh: a new session of the same (local) user
    assert not again.exception, again.exception
    assert again.session_state["dataset_source"] == str(tiny_csv)
    assert any(CSV_NAME in caption.value for caption in again.sidebar.caption)

    # A saved model folder that is gone, or a dataset no longer there, is not restored.
    from fertools import prefs
    from fertools.users import LOCAL_USER

    prefs.save(
        LOCAL_USER.id, {"model_dir": "/nowhere", "dataset_source": "/nowhere.csv", "dataset_label": "x"}
    )
    stale = app("app.py").run()
    assert not stale.exception, stale.exception
    assert (
        stale.session_state["dataset_source"] == "builtin"
        and "nowhere" not in stale.session_state["model_dir"]
    )

    # On a hosted server another visitor starts from the defaults.
    monkeypatch.setenv("FERLAB_HOSTED", "1")
    other = app("app.py").run()
    assert not other.exception, other.exception
    assert other.session_state["dataset_source"] == "builtin"


def test_a_page_that_stops_early_keeps_the_sidebar_and_projector_mode(tiny_csv):
    at = app("app.py").run()
    at.sidebar.toggle(key="ferlab_projector").set_value(True).run()
    at.switch_page("app_pages/4_Photo.py").run()
    at.radio(key="photo_source").set_value("Upload a photo").run()  # no file yet: the page stops
    assert not at.exception, at.exception
    assert any("Upload a photo, or switch" in info.value for info in at.info)
    assert sum("**Model:**" in caption.value for caption in at.sidebar.caption) == 1
    at.switch_page("app_pages/1_Dataset.py").run()
    assert at.sidebar.toggle(key="ferlab_projector").value is True


def test_choosing_a_model_on_photo_shows_in_the_sidebar_of_the_same_run(tiny_run_model):
    at = app("app.py").run()
    at.switch_page("app_pages/4_Photo.py").run()
    assert not at.exception, at.exception
    assert any("**Model:** default" in caption.value for caption in at.sidebar.caption)
    at.selectbox(key="photo_model").set_value("Run tiny").run()
    assert not at.exception, at.exception
    (status,) = [caption.value for caption in at.sidebar.caption if "**Model:**" in caption.value]
    assert status.startswith("**Model:** tiny")


def test_models_of_runs_are_listed_by_the_name_they_were_given(tiny_run_model):
    (tiny_run_model.parent / "job.json").write_text(
        '{"id": "tiny", "name": "my first model", "created": 1.0}'
    )
    at = app("app_pages/4_Photo.py")
    at.session_state["model_dir"] = str(tiny_run_model)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="photo_model").value == "my first model (run tiny)"


def test_the_dataset_page_shows_class_names_and_notes_as_plain_text(ferlab_dirs):
    # Class names come from a folder's or an .npz's names: anyone's text, never Markdown or HTML.
    built = data.load_builtin(n_per_class=4, seed=2)
    names = ("**angry**", "![x](http://evil.example/t.png)", '<a href="http://evil.example">fear</a>')
    names += FER2013_CLASSES[3:]
    hostile = data.Dataset(
        built.images, built.labels, built.split, names, notes=("note with ![p](http://evil.example/n.png)",)
    )
    path = ferlab_dirs["data"] / "hostile.npz"
    data.save_npz(hostile, path)
    at = app("app_pages/1_Dataset.py")
    at.session_state["dataset_source"] = str(path)
    at.session_state["dataset_label"] = "hostile.npz"
    at.run()
    assert not at.exception, at.exception
    texts = [c.value for c in at.caption] + [
        caption for image in at.get("image") for caption in image.captions
    ]
    assert not [text for text in texts if "](http" in text or "**angry**" in text], texts
    assert any("\\!\\[x\\]\\(http" in text for text in texts), texts  # shown, escaped
    figures = " ".join(chart.proto.spec for chart in at.get("plotly_chart"))
    assert "evil.example" in figures and '<a href=\\"http' not in figures and "&lt;a href" in figures
