"""The quiz's library: drawing faces reproducibly from held-out splits, the model's answers, scoring."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fertools import quiz
from fertools.constants import FER2013_CLASSES
from fertools.data import Dataset


def dataset_of(labels: list[int], split: list[str] | str = "train") -> Dataset:
    """Faces whose pixels all equal their row number (so a face says which row it is)."""
    n = len(labels)
    splits = [split] * n if isinstance(split, str) else split
    return Dataset(
        images=np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 48, 48), dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        split=np.asarray(splits),
        classes=FER2013_CLASSES,
    )


def test_the_same_seed_draws_the_same_faces_and_another_seed_others(tiny_builtin):
    first = quiz.draw(tiny_builtin, 10, seed=3)
    assert first == quiz.draw(tiny_builtin, 10, seed=3)
    assert first.rows != quiz.draw(tiny_builtin, 10, seed=4).rows
    assert len(first) == 10 and len(set(first.rows)) == 10
    assert first.truth == tuple(FER2013_CLASSES[tiny_builtin.labels[row]] for row in first.rows)
    assert first.classes == FER2013_CLASSES


def test_faces_come_from_the_test_split_when_it_is_large_enough(tiny_builtin):
    # tiny_builtin: 2 test and 2 validation faces per class, 14 each.
    ten = quiz.draw(tiny_builtin, 10, seed=0)
    assert ten.splits == ("test",) and ten.held_out
    assert set(tiny_builtin.split[list(ten.rows)]) == {"test"}
    twenty = quiz.draw(tiny_builtin, 20, seed=0)
    assert twenty.splits == ("val", "test") and twenty.held_out
    assert set(tiny_builtin.split[list(twenty.rows)]) <= {"val", "test"}


def test_too_few_held_out_faces_fall_back_to_the_whole_dataset_and_say_so():
    labels = [index % 7 for index in range(30)]
    dataset = dataset_of(labels, ["train"] * 25 + ["test"] * 5)
    drawn = quiz.draw(dataset, 10, seed=0)
    assert drawn.splits == ("train", "test") and not drawn.held_out
    assert len(drawn) == 10


def test_balanced_quizzes_spread_the_classes_and_random_ones_follow_the_data():
    # 200 happy faces, 2 disgust, 8 of every other class: FER2013's imbalance, exaggerated.
    labels = [3] * 200 + [1] * 2 + [c for c in (0, 2, 4, 5, 6) for _ in range(8)]
    dataset = dataset_of(labels)
    balanced = Counter(quiz.draw(dataset, 20, seed=1, balanced=True).truth)
    assert sorted(balanced.values()) == [2, 3, 3, 3, 3, 3, 3]  # 20 = 7 classes x 2 + 6 extra
    for seed in range(3):
        plain = Counter(quiz.draw(dataset, 20, seed=seed, balanced=False).truth)
        assert plain["happy"] >= 10  # 200 of 242 faces are happy
    # A class with fewer faces than its share gives what it has and the others make up the rest.
    scarce = Counter(quiz.draw(dataset, 20, seed=0).truth)
    assert scarce["disgust"] == 2 and sum(scarce.values()) == 20


def test_missing_classes_are_named_and_never_drawn():
    dataset = dataset_of([3, 4] * 10)  # only happy and sad
    drawn = quiz.draw(dataset, 10, seed=0)
    assert set(drawn.truth) == {"happy", "sad"}
    assert Counter(drawn.truth) == {"happy": 5, "sad": 5}
    assert drawn.missing == ("angry", "disgust", "fear", "surprise", "neutral")


def test_a_small_dataset_gives_a_shorter_quiz_and_a_tiny_one_a_sentence():
    short = quiz.draw(dataset_of([0, 1, 2, 3, 4, 5]), 10, seed=0)
    assert len(short) == 6 and short.requested == 10 and sorted(short.rows) == list(range(6))
    with pytest.raises(quiz.QuizError, match=r"^This dataset has 3 faces; a quiz needs at least 4\.$"):
        quiz.draw(dataset_of([0, 1, 2]), 10, seed=0)
    with pytest.raises(quiz.QuizError, match="This dataset has 0 faces"):
        quiz.draw(dataset_of([]), 10, seed=0)
    with pytest.raises(quiz.QuizError, match="at least 4 faces, not 2"):
        quiz.draw(dataset_of(list(range(7)) * 3), 2, seed=0)


class FakeRecognizer:
    """Answers class (pixel value mod 7) of its own class list; records what it was given."""

    def __init__(self, classes: tuple[str, ...], input_size: int = 48):
        self.classes, self.input_size = classes, input_size
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def classify(self, faces: np.ndarray, tta: bool | None = None) -> np.ndarray:
        self.calls.append((faces.shape, tta))
        probabilities = np.zeros((len(faces), len(self.classes)), dtype=np.float32)
        probabilities[np.arange(len(faces)), faces[:, 0, 0].astype(int) % len(self.classes)] = 1.0
        return probabilities


def test_model_guesses_are_class_names_from_the_model_in_its_own_order():
    faces = np.stack([np.full((48, 48), value, dtype=np.uint8) for value in (0, 1, 9)])
    reversed_classes = tuple(reversed(FER2013_CLASSES))
    recognizer = FakeRecognizer(reversed_classes)
    assert quiz.model_guesses(recognizer, faces) == ("neutral", "surprise", "sad")
    assert recognizer.calls == [((3, 48, 48), True)]
    assert quiz.model_guesses(recognizer, faces[:0]) == ()


def test_model_guesses_resize_faces_to_the_model_input():
    recognizer = FakeRecognizer(FER2013_CLASSES, input_size=96)
    faces = np.full((2, 48, 48), 3, dtype=np.uint8)
    assert quiz.model_guesses(recognizer, faces, tta=False) == ("happy", "happy")
    assert recognizer.calls == [((2, 96, 96), False)]


def test_score_counts_accuracies_agreement_and_classes():
    truth = ["happy", "sad", "sad", "fear", "angry"]
    human = ["happy", "sad", "fear", "sad", "angry"]
    model = ["happy", "fear", "fear", "fear", "disgust"]
    result = quiz.score(truth, human, model, FER2013_CLASSES)
    assert (result.n, result.human_right, result.model_right) == (5, 3, 2)
    assert result.human_accuracy == pytest.approx(0.6) and result.model_accuracy == pytest.approx(0.4)
    # both right: happy; only you: sad (1), angry (4); only the model: fear (3); both wrong: sad (2).
    assert result.agreement == ((1, 2), (1, 1))
    assert result.same_answer == 2  # faces 0 and 2
    assert [(c.name, c.faces, c.human_right, c.model_right) for c in result.per_class] == [
        ("angry", 1, 1, 0),
        ("fear", 1, 0, 1),
        ("happy", 1, 1, 1),
        ("sad", 2, 1, 0),
    ]
    kinds = [(d.position, d.kind) for d in result.disagreements]
    assert kinds == [
        (2, quiz.BOTH_AGREE),
        (3, quiz.HUMAN_WRONG),
        (1, quiz.MODEL_WRONG),
        (4, quiz.MODEL_WRONG),
    ]
    first = result.disagreements[0]
    assert (first.truth, first.human, first.model) == ("sad", "fear", "fear")


def test_score_separates_two_different_wrong_answers_and_foreign_model_classes():
    result = quiz.score(["sad", "sad"], ["fear", "angry"], ["angry", "contempt"], FER2013_CLASSES)
    assert result.agreement == ((0, 0), (0, 2))
    assert [d.kind for d in result.disagreements] == [quiz.BOTH_DIFFER, quiz.BOTH_DIFFER]
    assert result.disagreements[1].model == "contempt"  # a class the dataset lacks counts as wrong


def test_score_refuses_lists_of_different_lengths():
    with pytest.raises(ValueError, match="got 2 labels, 1 answers of yours and 2 of the model's"):
        quiz.score(["sad", "sad"], ["sad"], ["sad", "sad"], FER2013_CLASSES)
    empty = quiz.score([], [], [], FER2013_CLASSES)
    assert empty.human_accuracy == 0.0 and empty.disagreements == ()
