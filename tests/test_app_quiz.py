"""AppTests for the Quiz page: a whole quiz played against a model, and the datasets that cannot make one.

The model is the untrained test model, copied into the temporary runs folder as the run ``tiny``;
the dataset is the built-in set unless a test puts a small one in the data folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fertools import data, quiz
from fertools.recognize import Recognizer

ROOT = Path(__file__).resolve().parent.parent
#: Loading TensorFlow, the model and the built-in dataset on a busy 2-core machine takes a while.
TIMEOUT = 180
PAGE = "app_pages/7_Quiz.py"


@pytest.fixture
def tiny_run_model(tiny_model_dir: Path, ferlab_dirs: dict[str, Path]) -> Path:
    """The untrained test model, as the finished run ``tiny`` in the temporary runs folder."""
    target = ferlab_dirs["runs"] / "tiny" / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def quiz_page(model_dir: Path, dataset_source: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT)
    at.session_state["model_dir"] = str(model_dir)
    if dataset_source is not None:
        at.session_state["dataset_source"] = dataset_source
        at.session_state["dataset_label"] = Path(dataset_source).name
    return at.run()


def button(at: AppTest, label: str):
    """The one button whose label contains ``label``."""
    (found,) = [b for b in at.button if label in b.label]
    return found


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def current(at: AppTest) -> tuple[quiz.Quiz, list[str]]:
    state = at.session_state["quiz"]
    return state["quiz"], state["answers"]


def answer(at: AppTest, name: str) -> None:
    at.button(key=f"quiz_answer_{name}").click().run()
    assert not at.exception


def wrong_for(drawn: quiz.Quiz, position: int) -> str:
    return next(name for name in drawn.classes if name != drawn.truth[position])


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def small_npz(ferlab_dirs: dict[str, Path], name: str, dataset: data.Dataset) -> str:
    path = ferlab_dirs["data"] / name
    data.save_npz(dataset, path)
    return str(path)


def test_a_whole_quiz_against_the_model(tiny_run_model: Path, ferlab_dirs: dict[str, Path]):
    before = files_under(ferlab_dirs["runs"]) | files_under(ferlab_dirs["data"])
    at = quiz_page(tiny_run_model)
    assert not at.exception
    assert at.selectbox(key="quiz_model").value == "Run tiny"
    assert any(c.value == "Faces from the test split, held out from training." for c in at.caption)
    button(at, "Start the quiz").click().run()
    assert not at.exception
    drawn, answers = current(at)
    assert len(drawn) == 10 and drawn.seed == 1 and drawn.balanced and answers == []
    assert drawn == quiz.draw(data.load_builtin(), 10, seed=1)  # the same faces as the library draws
    assert len(at.get("image")) == 1  # one face on screen

    # Seven right, three wrong; one wrong answer taken back on the way.
    answer(at, wrong_for(drawn, 0))
    button(at, "Previous face").click().run()
    assert current(at)[1] == []
    for position in range(10):
        assert at.get("progress")[0].proto.text == f"Face {position + 1} of 10"
        answer(at, drawn.truth[position] if position < 7 else wrong_for(drawn, position))
    drawn, answers = current(at)
    assert len(answers) == 10

    # The results: the same numbers as the library gives for the model on these faces.
    recognizer = Recognizer.load(tiny_run_model)
    model = quiz.model_guesses(recognizer, data.load_builtin().images[list(drawn.rows)])
    expected = quiz.score(drawn.truth, answers, model, drawn.classes)
    shown = metrics(at)
    assert shown["You"] == "70%"
    assert shown["The model"] == f"{expected.model_accuracy:.0%}"
    assert shown["Same answer as the model"] == f"{expected.same_answer} of 10"
    assert any("about 65%" in info.value for info in at.info)  # the lesson on label noise
    (agreement,) = at.table
    assert agreement.value.to_numpy().tolist() == [list(row) for row in expected.agreement]
    (per_class,) = at.dataframe
    assert per_class.value["faces"].sum() == 10 and per_class.value["you right"].sum() == 7
    captions = [caption for gallery in at.get("image") for caption in gallery.captions]
    assert len(captions) == len(expected.disagreements) >= 3  # at least your three mistakes
    assert sorted(captions) == sorted(
        f"label {item.truth} · you {item.human} · model {item.model}" for item in expected.disagreements
    )

    # New faces: the next quiz number, other faces, no answers yet.
    button(at, "New faces").click().run()
    assert not at.exception
    again, answers = current(at)
    assert again.seed == 2 and answers == [] and again.rows != drawn.rows
    button(at, "Stop this quiz").click().run()
    assert not at.exception
    assert at.session_state["quiz"] is None
    assert at.number_input(key="quiz_number").value == 2
    assert at.radio(key="quiz_size").value == 10

    # Nothing of the quiz was written to the runs or data folders (shared on a hosted server).
    assert files_under(ferlab_dirs["runs"]) | files_under(ferlab_dirs["data"]) == before


def test_twenty_faces_replayed_and_a_random_draw(tiny_run_model: Path):
    at = quiz_page(tiny_run_model)
    at.radio(key="quiz_size").set_value(20).run()
    at.toggle(key="quiz_balanced").set_value(False).run()
    at.number_input(key="quiz_number").set_value(5).run()
    assert not at.exception
    assert any(c.value == "Faces from the test split, held out from training." for c in at.caption)
    button(at, "Start the quiz").click().run()
    drawn, _ = current(at)
    assert (len(drawn), drawn.seed, drawn.balanced) == (20, 5, False)
    for position in range(20):
        answer(at, drawn.truth[position])
    assert metrics(at)["You"] == "100%"
    button(at, "Same faces again").click().run()
    assert not at.exception
    assert current(at) == (drawn, [])


def test_a_tiny_dataset_gets_one_sentence(tiny_run_model: Path, ferlab_dirs: dict[str, Path]):
    three = data.load_builtin(n_per_class=6, seed=1).select(np.arange(3))
    at = quiz_page(tiny_run_model, small_npz(ferlab_dirs, "three.npz", three))
    assert not at.exception
    assert [error.value for error in at.error] == ["This dataset has 3 faces; a quiz needs at least 4."]
    assert not [b for b in at.button if "Start the quiz" in b.label]


def test_few_faces_and_missing_classes_give_a_shorter_quiz(tiny_run_model: Path, ferlab_dirs):
    six = data.load_builtin(n_per_class=6, seed=1)
    six = six.select(np.flatnonzero(np.isin(six.labels, [3, 4]) & (six.split == "train"))[:6])
    at = quiz_page(tiny_run_model, small_npz(ferlab_dirs, "six.npz", six))
    assert not at.exception
    captions = [caption.value for caption in at.caption]
    assert (
        "This dataset has no validation or test split, so the model may have trained on these faces."
        in captions
    )
    assert "The dataset has only 6 faces, so the quiz has 6." in captions
    assert "No angry, disgust, fear, surprise, neutral faces to draw from here." in captions
    button(at, "Start the quiz").click().run()
    drawn, _ = current(at)
    assert len(drawn) == 6 and set(drawn.truth) == {"happy", "sad"}
    for _ in range(6):
        answer(at, "happy")
    assert not at.exception
    expected = sum(truth == "happy" for truth in drawn.truth)
    assert metrics(at)["You"] == f"{expected / 6:.0%}"


def test_a_broken_model_leaves_the_student_scored_alone(tiny_model_dir: Path, ferlab_dirs):
    broken = ferlab_dirs["runs"] / "broken" / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.keras").write_bytes(b"not a keras file")
    at = quiz_page(broken)
    button(at, "Start the quiz").click().run()
    drawn, _ = current(at)
    for position in range(10):
        answer(at, wrong_for(drawn, position) if position < 2 else drawn.truth[position])
    assert not at.exception
    (warning,) = at.warning
    assert warning.value.startswith("The model cannot answer: ")
    assert metrics(at) == {"You": "80%"}
    captions = [caption for gallery in at.get("image") for caption in gallery.captions]
    assert captions == [f"label {drawn.truth[i]} · you {wrong_for(drawn, i)}" for i in (0, 1)]


def test_changing_the_dataset_puts_the_quiz_away(tiny_run_model: Path, ferlab_dirs):
    at = quiz_page(tiny_run_model)
    button(at, "Start the quiz").click().run()
    answer(at, "happy")
    other = small_npz(ferlab_dirs, "tiny.npz", data.load_builtin(n_per_class=20, seed=0))
    at.session_state["dataset_source"] = other
    at.run()
    assert not at.exception
    assert at.session_state["quiz"] is None
    assert any("The dataset in use changed" in info.value for info in at.info)
    assert [b for b in at.button if "Start the quiz" in b.label]


def test_the_router_lists_and_opens_the_quiz(tiny_run_model: Path):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["model_dir"] = str(tiny_run_model)
    at.run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.title[0].value == "🎯 You against the model"
    assert [b for b in at.button if "Start the quiz" in b.label]
