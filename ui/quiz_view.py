"""The Quiz page's panels: its session state, the settings, one face at a time, and the results.

The page calls these top to bottom; the drawing and scoring are :mod:`fertools.quiz`'s. The quiz
lives in this session's state only (``st.session_state["quiz"]``), never on the server's disk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fertools import quiz, stats
from fertools.data import Dataset, DatasetError
from fertools.modelcard import ModelLoadError
from ui import common, projector
from ui.identity import literal

#: The face on screen: 48 px shown 6x with square pixels, large enough to judge.
FACE_SCALE = 6
#: Faces in the results gallery, 3x.
GALLERY_SCALE = 3
ICONS = {
    "angry": "😠",
    "disgust": "🤢",
    "fear": "😨",
    "happy": "😄",
    "sad": "😢",
    "surprise": "😮",
    "neutral": "😐",
}
GROUPS = {
    quiz.BOTH_AGREE: "You and the model agree, the label says otherwise: is the label wrong?",
    quiz.BOTH_DIFFER: "You both missed it, with different answers",
    quiz.HUMAN_WRONG: "You missed it, the model did not",
    quiz.MODEL_WRONG: "The model missed it, you did not",
}


def init_state() -> None:
    """The quiz's session state keys, set once per session."""
    # NOTE: the quiz lives in this session's state only, so every student's quiz is their own. The
    # settings widgets are not drawn while a quiz runs (Streamlit then forgets their values), so the
    # Quiz object carries its own settings and the callbacks below put them back.
    st.session_state.setdefault("quiz", None)  # {"source": dataset source, "quiz": Quiz, "answers": [...]}
    st.session_state.setdefault("quiz_size", quiz.QUIZ_SIZES[0])
    st.session_state.setdefault("quiz_balanced", True)
    st.session_state.setdefault("quiz_number", 1)


def _begin(source: str, drawn: quiz.Quiz) -> None:
    """Start ``drawn`` on the faces of ``source``, with no answers yet."""
    st.session_state["quiz"] = {"source": source, "quiz": drawn, "answers": []}


def _answer(position: int, name: str) -> None:
    """Record ``name`` as the answer for the face at ``position``."""
    state = st.session_state["quiz"]
    if state is not None and len(state["answers"]) == position:  # a double click answers once
        state["answers"].append(name)


def _previous() -> None:
    """Take the last answer back."""
    state = st.session_state["quiz"]
    if state is not None and state["answers"]:
        state["answers"].pop()


def _replay() -> None:
    """The same faces again, with no answers."""
    st.session_state["quiz"]["answers"] = []


def _settings(drawn: quiz.Quiz, seed: int | None = None) -> None:
    """Back to the settings of ``drawn`` (with another quiz number when ``seed`` is given)."""
    st.session_state["quiz_size"] = drawn.requested
    st.session_state["quiz_balanced"] = drawn.balanced
    st.session_state["quiz_number"] = drawn.seed if seed is None else seed
    st.session_state["quiz"] = None


def _new_faces(source: str, dataset: Dataset, drawn: quiz.Quiz) -> None:
    """Start the next quiz number with the same settings."""
    _settings(drawn, drawn.seed + 1)
    _begin(source, quiz.draw(dataset, drawn.requested, drawn.seed + 1, drawn.balanced))


def where_from(drawn: quiz.Quiz, dataset: Dataset) -> list[str]:
    """Sentences on where the faces come from and what the quiz lacks."""
    lines = []
    splits = " and ".join(drawn.splits)
    if drawn.held_out:
        lines.append(
            f"Faces from the {splits} split{'s' if len(drawn.splits) > 1 else ''}, held out from training."
        )
    elif dataset.splits == ["train"]:
        lines.append(
            "This dataset has no validation or test split, so the model may have trained on these faces."
        )
    else:
        lines.append(
            f"The held-out splits have fewer than {drawn.requested} faces, so the quiz also draws from the "
            "training split, which the model may have seen."
        )
    if len(drawn) < drawn.requested:
        lines.append(f"The dataset has only {len(drawn)} faces, so the quiz has {len(drawn)}.")
    if drawn.missing:
        lines.append(f"No {literal(', '.join(drawn.missing))} faces to draw from here.")
    return lines


def load_dataset() -> tuple[str, str, Dataset]:
    """The (source, label, dataset) in use; stops with one sentence if it cannot be loaded."""
    source = st.session_state["dataset_source"]
    label = st.session_state["dataset_label"]
    try:
        with st.spinner(f"Loading {literal(label)}…"):
            dataset = common.get_dataset()
    except (DatasetError, OSError, ValueError) as error:
        st.error(f"Could not load the dataset in use: {literal(error)}")
        st.stop()
    return source, label, dataset


def running_quiz(source: str, dataset: Dataset) -> tuple[quiz.Quiz, list[str]] | None:
    """The quiz under way and its answers so far; None, after saying so, if the dataset changed."""
    state = st.session_state["quiz"]
    if state is None:
        return None
    if state["source"] != source or max(state["quiz"].rows) >= len(dataset):
        _settings(state["quiz"])
        st.info("The dataset in use changed, so the last quiz was put away: start a new one on its faces.")
        return None
    return state["quiz"], state["answers"]


def show_settings(source: str, label: str, dataset: Dataset) -> None:
    """The quiz's size, balance, number and model, where its faces come from, and the start button."""
    st.markdown(f"**Dataset in use:** {literal(label)} · {dataset.describe()}")
    size_column, balance_column, number_column, model_column = st.columns([2, 2, 1, 3])
    size = size_column.radio(
        "Faces", quiz.QUIZ_SIZES, horizontal=True, key="quiz_size", format_func=lambda n: f"{n} faces"
    )
    balanced = balance_column.toggle(
        "Every emotion equally often",
        key="quiz_balanced",
        help="On: about the same number of faces of each emotion. Off: a random sample, with the dataset's "
        "own imbalance (FER2013 has 16 times more happy faces than disgusted ones).",
    )
    number = number_column.number_input(
        "Quiz number",
        min_value=1,
        step=1,
        key="quiz_number",
        help="The same number draws the same faces: a class can all take quiz 3 and compare.",
    )
    with model_column:
        common.model_picker(key="quiz_model")
    try:
        drawn = quiz.draw(dataset, int(size), int(number), bool(balanced))
    except quiz.QuizError as error:
        st.error(str(error))
        st.caption("Choose a larger dataset on the Dataset page.")
        st.stop()
    for line in where_from(drawn, dataset):
        st.caption(line)
    st.button("▶️ Start the quiz", type="primary", on_click=_begin, args=(source, drawn))


def show_face(dataset: Dataset, drawn: quiz.Quiz, position: int) -> None:
    """The progress bar, the face at ``position`` enlarged, one button per emotion, back and stop."""
    st.progress(position / len(drawn), text=f"Face {position + 1} of {len(drawn)}")
    face_column, choice_column = st.columns([2, 3], gap="large")
    face = dataset.images[drawn.rows[position]]
    scale = projector.px(FACE_SCALE)
    face_column.image(stats.upscale(face, scale), caption=f"48×48 pixels, shown {scale}× with square pixels")
    with choice_column:
        st.markdown("**Which emotion is this?**")
        for name in drawn.classes:
            st.button(
                f"{ICONS.get(name, '🔹')} {literal(name)}",
                key=f"quiz_answer_{name}",
                on_click=_answer,
                args=(position, name),
                width="stretch",
            )
        back_column, quit_column = st.columns(2)
        back_column.button("↩️ Previous face", on_click=_previous, disabled=position == 0, width="stretch")
        quit_column.button("⏹️ Stop this quiz", on_click=_settings, args=(drawn,), width="stretch")


def model_answers(dataset: Dataset, drawn: quiz.Quiz, faces: np.ndarray) -> tuple[str, ...] | None:
    """The model picker and the picked model's answers on ``faces``; None without a usable model."""
    model_column, _ = st.columns([2, 3])
    with model_column:
        model_dir = common.model_picker(key="quiz_model")
    if model_dir is None:
        return None
    try:
        recognizer = common.get_recognizer(model_dir)
        with st.spinner("The model is answering…"):
            answers = quiz.model_guesses(recognizer, faces)
    except ModelLoadError as error:
        st.warning(f"The model cannot answer: {literal(error.for_page())}")
        return None
    if set(recognizer.classes) != set(drawn.classes):
        st.caption(
            "The model knows other emotions than this dataset, so its answers outside the dataset's "
            "classes count as wrong."
        )
    if bool(recognizer.card.dataset.get("synthetic")) != dataset.synthetic:
        trained = "synthetic" if recognizer.card.dataset.get("synthetic") else "real"
        st.caption(f"This model was trained on {trained} faces, so it is not at home on these.")
    return answers


def show_scores(result: quiz.QuizScore, with_model: bool) -> None:
    """Your accuracy, and beside it the model's and how often you both answered the same."""
    you, model, same = st.columns(3)
    you.metric("You", f"{result.human_accuracy:.0%}")
    you.caption(f"{result.human_right} of {result.n} faces right")
    if with_model:
        model.metric("The model", f"{result.model_accuracy:.0%}")
        model.caption(
            f"{result.model_right} of {result.n} faces right (each face averaged with its mirror image)"
        )
        same.metric("Same answer as the model", f"{result.same_answer} of {result.n}")
        same.caption("right or wrong")


def show_label_noise(synthetic: bool) -> None:
    """The lesson on label noise, for synthetic or real faces."""
    if synthetic:
        st.info(
            "**Label noise.** These synthetic faces were drawn to order, so their labels are exact and every "
            "disagreement here is a mistake, yours or the model's. Real data is different: on FER2013, faces "
            "labelled by people, humans agree with the label only about 65% of the time (Goodfellow et al., "
            "2013), because many faces are ambiguous and some labels are wrong. Put FER2013 in the data "
            "folder (see the Home page) and try again.",
            icon="🏷️",
        )
    else:
        st.info(
            "**Label noise.** Humans agree with FER2013's labels only about 65% of the time (Goodfellow et "
            "al., 2013): many faces are ambiguous, and some labels are simply wrong. When you and the model "
            "agree against the label, the label may be the one that is wrong. A model trained on noisy "
            "labels learns some of the noise too: the best published networks reach about 73% on FER2013, "
            "not far above people.",
            icon="🏷️",
        )


def show_comparison(result: quiz.QuizScore) -> None:
    """The you-against-the-model table beside the count per emotion."""
    table_column, class_column = st.columns([2, 3], gap="large")
    (both, only_you), (only_model, neither) = result.agreement
    table_column.markdown("**You against the model**")
    table_column.table(
        pd.DataFrame(
            {"model right": [both, only_model], "model wrong": [only_you, neither]},
            index=["you right", "you wrong"],
        )
    )
    class_column.markdown("**Per emotion**")
    class_column.dataframe(
        pd.DataFrame(
            [
                {
                    "emotion": c.name,
                    "faces": c.faces,
                    "you right": c.human_right,
                    "model right": c.model_right,
                }
                for c in result.per_class
            ]
        ),
        hide_index=True,
    )


def show_disagreements(result: quiz.QuizScore, faces: np.ndarray) -> None:
    """The faces where you or the model disagree with the label, one gallery per kind."""
    st.subheader("Where someone disagrees with the label")
    if not result.disagreements:
        st.success("You and the model both agree with every label.")
    for kind, title in GROUPS.items():
        group = [item for item in result.disagreements if item.kind == kind]
        if not group:
            continue
        st.markdown(f"**{title}** ({len(group)})")
        st.image(
            [stats.upscale(faces[item.position], projector.px(GALLERY_SCALE)) for item in group],
            caption=[
                literal(f"label {item.truth} · you {item.human} · model {item.model}") for item in group
            ],
        )


def show_mistakes(drawn: quiz.Quiz, answers: list[str], faces: np.ndarray) -> None:
    """Without a model: the faces where you disagree with the label."""
    mistakes = [(i, t, h) for i, (t, h) in enumerate(zip(drawn.truth, answers)) if t != h]
    if mistakes:
        st.subheader("Where you disagree with the label")
        st.image(
            [stats.upscale(faces[i], projector.px(GALLERY_SCALE)) for i, _, _ in mistakes],
            caption=[literal(f"label {t} · you {h}") for _, t, h in mistakes],
        )


def show_next(source: str, dataset: Dataset, drawn: quiz.Quiz) -> None:
    """New faces, the same faces again, or back to the settings."""
    new_column, again_column, settings_column, _ = st.columns([1, 1, 1, 2])
    new_column.button(
        "🔀 New faces", type="primary", on_click=_new_faces, args=(source, dataset, drawn), width="stretch"
    )
    again_column.button("🔁 Same faces again", on_click=_replay, width="stretch")
    settings_column.button("⚙️ Change settings", on_click=_settings, args=(drawn,), width="stretch")
