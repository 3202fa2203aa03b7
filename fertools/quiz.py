"""You against the model: draw faces for a student to label, then score the student and the model.

:func:`draw` picks a quiz's faces from a :class:`~fertools.data.Dataset`, seeded and so
reproducible (the same seed gives every student the same faces), from the held-out splits when
they are large enough, so the model has not trained on them. :func:`model_guesses` asks a
:class:`~fertools.recognize.Recognizer` for its answers on the same faces, and :func:`score`
compares both with the dataset's labels: accuracies, a you-against-the-model agreement table, a
per-class count, and the faces where someone disagrees with the label, the lesson on label noise.

Answers are class names (strings), never indices: the model's class order comes from its card,
the dataset's from the dataset, and the two need not match.

Example::

    quiz = draw(dataset, n_faces=10, seed=1)
    faces = dataset.images[list(quiz.rows)]
    result = score(quiz.truth, human_answers, model_guesses(recognizer, faces), quiz.classes)
    print(f"you {result.human_accuracy:.0%}, the model {result.model_accuracy:.0%}")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fertools.data import Dataset
from fertools.preprocess import to_face

if TYPE_CHECKING:
    from fertools.recognize import Recognizer

#: Quiz lengths the app offers.
QUIZ_SIZES: tuple[int, ...] = (10, 20)
#: Below this many faces a score says nothing: a dataset this small gets no quiz.
MIN_FACES = 4
#: Held-out pools, in order of preference: the test split alone has never steered training (the
#: validation split picks the best epoch), so it comes first.
HELD_OUT_POOLS: tuple[tuple[str, ...], ...] = (("test",), ("val", "test"))
#: Human accuracy on FER2013 measured by its authors (Goodfellow et al., 2013): 65 ± 5 %.
FER2013_HUMAN_ACCURACY = 0.65


class QuizError(ValueError):
    """A dataset that cannot make a quiz; the message is one sentence for the user."""


@dataclass(frozen=True)
class Quiz:
    """The faces of one quiz.

    ``rows`` index the dataset's arrays, in the order the faces are shown; ``truth`` holds their
    labels as class names; ``classes`` are the answer choices (the dataset's classes, in its
    order). ``splits`` are the splits drawn from and ``held_out`` says whether they exclude the
    training split; ``missing`` lists classes with no face in that pool. ``requested`` is the
    length asked for: a dataset with fewer faces gives a shorter quiz.
    """

    rows: tuple[int, ...]
    truth: tuple[str, ...]
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    held_out: bool
    missing: tuple[str, ...]
    seed: int
    balanced: bool
    requested: int

    def __len__(self) -> int:
        return len(self.rows)


def draw(dataset: Dataset, n_faces: int, seed: int, balanced: bool = True) -> Quiz:
    """Draw ``n_faces`` faces of ``dataset`` for a quiz, the same ones for the same ``seed``.

    The faces come from the test split if it has ``n_faces`` faces, else from validation and
    test together, else from the whole dataset (``Quiz.held_out`` is then False unless the
    dataset has no training faces). A dataset with fewer than ``n_faces`` faces gives a quiz of
    all of them. With ``balanced`` every class present in the pool gets the same number of faces
    (one more for some when it does not divide evenly); without, the faces are a plain random
    sample, so the quiz has the dataset's class balance. The order is shuffled either way.

    Raises :class:`QuizError` when ``n_faces`` is below :data:`MIN_FACES` or the dataset has
    fewer than :data:`MIN_FACES` faces.
    """
    if n_faces < MIN_FACES:
        raise QuizError(f"A quiz needs at least {MIN_FACES} faces, not {n_faces}.")
    if len(dataset) < MIN_FACES:
        raise QuizError(
            f"This dataset has {len(dataset)} face{'s' if len(dataset) != 1 else ''}; "
            f"a quiz needs at least {MIN_FACES}."
        )
    pool, splits = _pool(dataset, n_faces)
    rng = np.random.default_rng(seed)
    take = min(n_faces, len(pool))
    if balanced:
        chosen = _balanced(pool, dataset.labels[pool], take, rng)
    else:
        chosen = rng.choice(pool, size=take, replace=False)
    chosen = rng.permutation(chosen)
    present = set(np.unique(dataset.labels[pool]).tolist())
    return Quiz(
        rows=tuple(int(row) for row in chosen),
        truth=tuple(dataset.classes[int(label)] for label in dataset.labels[chosen]),
        classes=tuple(dataset.classes),
        splits=splits,
        held_out="train" not in splits,
        missing=tuple(name for index, name in enumerate(dataset.classes) if index not in present),
        seed=int(seed),
        balanced=bool(balanced),
        requested=int(n_faces),
    )


def _pool(dataset: Dataset, n_faces: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The rows to draw from, and the splits they belong to (train, val, test order)."""
    for names in HELD_OUT_POOLS:
        rows = np.flatnonzero(np.isin(dataset.split, names))
        if len(rows) >= n_faces:
            return rows, tuple(name for name in dataset.splits if name in names)
    return np.arange(len(dataset)), tuple(dataset.splits)


def _balanced(rows: np.ndarray, labels: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
    """``take`` of ``rows``, as evenly spread over their labels as the labels' counts allow."""
    per_class = [rng.permutation(rows[labels == label]).tolist() for label in np.unique(labels)]
    order = rng.permutation(len(per_class))  # who gets the extra face when take does not divide
    chosen: list[int] = []
    while len(chosen) < take:
        for index in order:
            if per_class[index] and len(chosen) < take:
                chosen.append(per_class[index].pop())
    return np.asarray(chosen, dtype=np.int64)


def model_guesses(recognizer: Recognizer, faces: np.ndarray, tta: bool = True) -> tuple[str, ...]:
    """The model's answer (a class name from its card) for each ``uint8`` face (N, 48, 48).

    Faces are resized to the model's input size when it differs from 48. ``tta`` averages each
    face with its mirror image, as the Photo page does by default.
    """
    if len(faces) == 0:
        return ()
    if faces.shape[1:] != (recognizer.input_size, recognizer.input_size):
        faces = np.stack([to_face(face, recognizer.input_size) for face in faces])
    probabilities = recognizer.classify(faces, tta=tta)
    return tuple(recognizer.classes[int(index)] for index in probabilities.argmax(axis=1))


@dataclass(frozen=True)
class ClassScore:
    """One class of a quiz: how many of its faces there were and how many each got right."""

    name: str
    faces: int
    human_right: int
    model_right: int


#: Kinds of :class:`Disagreement`, the likeliest label noise first.
BOTH_AGREE, BOTH_DIFFER, HUMAN_WRONG, MODEL_WRONG = "both agree", "both differ", "you wrong", "model wrong"
_KIND_ORDER = (BOTH_AGREE, BOTH_DIFFER, HUMAN_WRONG, MODEL_WRONG)


@dataclass(frozen=True)
class Disagreement:
    """A face whose label the student or the model (or both) did not give.

    ``position`` is the face's place in the quiz (0-based). ``kind`` is :data:`BOTH_AGREE`
    (both gave the same other class: the label itself may be wrong), :data:`BOTH_DIFFER`,
    :data:`HUMAN_WRONG` or :data:`MODEL_WRONG`.
    """

    position: int
    truth: str
    human: str
    model: str
    kind: str


@dataclass(frozen=True)
class QuizScore:
    """The student and the model against the labels, on the same faces.

    ``agreement`` counts faces as ``((both right, only you right), (only the model right, both
    wrong))``; ``same_answer`` is how many faces got the same answer from both, right or wrong.
    ``per_class`` follows ``classes`` and lists only classes with faces in the quiz;
    ``disagreements`` are ordered by kind (see :class:`Disagreement`), then by position.
    """

    n: int
    human_right: int
    model_right: int
    same_answer: int
    agreement: tuple[tuple[int, int], tuple[int, int]]
    per_class: tuple[ClassScore, ...]
    disagreements: tuple[Disagreement, ...]

    @property
    def human_accuracy(self) -> float:
        return self.human_right / self.n if self.n else 0.0

    @property
    def model_accuracy(self) -> float:
        return self.model_right / self.n if self.n else 0.0


def score(
    truth: tuple[str, ...] | list[str],
    human: tuple[str, ...] | list[str],
    model: tuple[str, ...] | list[str],
    classes: tuple[str, ...],
) -> QuizScore:
    """Compare the student's and the model's answers (class names) with the labels.

    A model answer that is no class of ``classes`` (a model with other classes) counts as wrong.
    Raises ``ValueError`` when the three lists differ in length.
    """
    if not len(truth) == len(human) == len(model):
        raise ValueError(
            f"every face needs a label and two answers: got {len(truth)} labels, "
            f"{len(human)} answers of yours and {len(model)} of the model's."
        )
    human_ok = [h == t for h, t in zip(human, truth)]
    model_ok = [m == t for m, t in zip(model, truth)]
    both = sum(h and m for h, m in zip(human_ok, model_ok))
    only_human = sum(h and not m for h, m in zip(human_ok, model_ok))
    only_model = sum(m and not h for h, m in zip(human_ok, model_ok))
    neither = len(truth) - both - only_human - only_model
    per_class = tuple(
        ClassScore(
            name,
            faces=sum(t == name for t in truth),
            human_right=sum(ok and t == name for ok, t in zip(human_ok, truth)),
            model_right=sum(ok and t == name for ok, t in zip(model_ok, truth)),
        )
        for name in classes
        if name in truth
    )
    disagreements = []
    for position, (t, h, m) in enumerate(zip(truth, human, model)):
        if h == t and m == t:
            continue
        if h != t and m != t:
            kind = BOTH_AGREE if h == m else BOTH_DIFFER
        else:
            kind = HUMAN_WRONG if h != t else MODEL_WRONG
        disagreements.append(Disagreement(position, t, h, m, kind))
    disagreements.sort(key=lambda item: (_KIND_ORDER.index(item.kind), item.position))
    return QuizScore(
        n=len(truth),
        human_right=sum(human_ok),
        model_right=sum(model_ok),
        same_answer=sum(h == m for h, m in zip(human, model)),
        agreement=((both, only_human), (only_model, neither)),
        per_class=per_class,
        disagreements=tuple(disagreements),
    )
