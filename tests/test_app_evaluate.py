"""AppTests for the Evaluate page: scores on a test split, the cell gallery, and data without one.

The page scores the untrained test model (copied into the temporary runs folder as the run
``tiny``) on a small FER2013-style CSV in the temporary data folder; the expected figures come
from :func:`fertools.evaluate.evaluate_split` on the same data. A click on the confusion matrix
cannot be made in AppTest (it needs a browser), so the gallery is driven by its two pickers,
which a click sets; :func:`fertools.evaluate.cell_at` reads the click and is tested in
tests/test_evaluate_split.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fertools import data
from fertools.evaluate import evaluate_split
from fertools.modelcard import load_model_dir

ROOT = Path(__file__).resolve().parent.parent
PAGE = "app_pages/6_Evaluate.py"
#: Loading TensorFlow and a model on a busy 2-core machine takes a while.
TIMEOUT = 180


@pytest.fixture
def tiny_run_model(tiny_model_dir: Path, ferlab_dirs: dict[str, Path]) -> Path:
    target = ferlab_dirs["runs"] / "tiny" / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def csv_of(dataset: data.Dataset, folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(data.to_fer2013_csv(dataset))
    return path


def page(source: Path, model_dir: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT)
    at.session_state["dataset_source"] = str(source)
    at.session_state["dataset_label"] = source.name
    at.session_state["model_dir"] = str(model_dir)
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_scores_the_test_split_and_shows_a_cells_faces(ferlab_dirs, tiny_run_model):
    # 20 faces per class: 2 per class in each of PublicTest (val) and PrivateTest (test).
    source = csv_of(data.load_builtin(n_per_class=20, seed=3), ferlab_dirs["data"], "tiny_fer2013.csv")
    loaded = data.load(source)
    model, card = load_model_dir(tiny_run_model)
    expected = evaluate_split(model, loaded, "test", tuple(card.classes))

    at = page(source, tiny_run_model).run()
    assert not at.exception
    assert at.selectbox(key="evaluate_model").value == "Run tiny"
    assert at.radio(key="evaluate_split").value == "test"
    assert at.radio(key="evaluate_split").options == ["Test (14 faces)", "Validation (14 faces)"]
    shown = metrics(at)
    assert shown["Accuracy"] == f"{expected.accuracy:.1%}"
    assert shown["Faces"] == "14"
    assert shown["Macro F1"] == f"{expected.macro_f1:.3f}"
    assert any("PrivateTest" in caption.value for caption in at.caption)
    (per_class,) = at.dataframe
    assert per_class.value["class"].tolist() == list(card.classes)
    assert per_class.value["faces"].tolist() == [2] * 7
    assert len(at.get("plotly_chart")) == 1

    # One cell of the matrix: the untrained network sends every happy face somewhere.
    happy = card.classes.index("happy")
    predicted = int(expected.confusion[happy].argmax())
    at.selectbox(key="evaluate_true").set_value("happy")
    at.selectbox(key="evaluate_predicted").set_value(card.classes[predicted]).run()
    assert not at.exception
    captions = [caption for gallery in at.get("image") for caption in gallery.captions]
    assert len(captions) == expected.confusion[happy, predicted] > 0
    assert all(caption.startswith(card.classes[predicted]) for caption in captions)

    # An empty cell says so in one sentence.
    empty = next(j for j in range(7) if expected.confusion[happy, j] == 0)
    at.selectbox(key="evaluate_predicted").set_value(card.classes[empty]).run()
    assert not at.exception
    assert not at.get("image")
    assert any(caption.value.startswith("No happy face was") for caption in at.caption)

    # The validation split: its own faces, scored the same way.
    at.radio(key="evaluate_split").set_value("val").run()
    assert not at.exception
    assert (
        metrics(at)["Accuracy"] == f"{evaluate_split(model, loaded, 'val', tuple(card.classes)).accuracy:.1%}"
    )

    # Ten crops: the 12-view average the Photo page offers, scored the same way.
    at.toggle(key="evaluate_ten_crop").set_value(True).run()
    assert not at.exception and at.toggle(key="evaluate_tta").disabled
    ten = evaluate_split(model, loaded, "val", tuple(card.classes), views="ten_crop")
    one = evaluate_split(model, loaded, "val", tuple(card.classes))
    assert ten.views == "ten_crop" and not np.allclose(ten.probabilities, one.probabilities)
    assert metrics(at)["Macro F1"] == f"{ten.macro_f1:.3f}"


def test_data_without_a_test_split_says_how_to_get_one(ferlab_dirs, tiny_run_model):
    training_only = data.load_builtin(n_per_class=3, seed=0).subset("train")
    source = csv_of(training_only, ferlab_dirs["data"], "training_only.csv")
    at = page(source, tiny_run_model).run()
    assert not at.exception
    (info,) = at.info
    assert "has no test or validation split" in info.value and "fer2013.csv" in info.value
    assert not at.metric and not at.get("plotly_chart")

    # Inside the app (the router), the sentence comes with a link to the Dataset page.
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["dataset_source"] = str(source)
    at.session_state["dataset_label"] = source.name
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert "Evaluate" in at.title[0].value
    assert any("has no test or validation split" in info.value for info in at.info)
    assert [link.label for link in at.get("page_link")] == ["Choose a dataset"]
