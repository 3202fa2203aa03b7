"""Quiz: you against the model. Label faces of the dataset in use, then compare with the model."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fertools import quiz, stats
from fertools.data import Dataset, DatasetError
from fertools.modelcard import ModelLoadError
from ui import projector
from ui.common import get_dataset, get_recognizer, model_picker, page_setup
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

page_setup("Quiz", "🎯")
st.title("🎯 You against the model")
st.caption(
    "Label faces of the dataset in use, one at a time, then see your accuracy beside the model's on "
    "the same faces, and the faces where you, the model and the dataset's label disagree. Your answers "
    "stay in this browser tab: nothing is saved on the server."
)

# NOTE: the quiz lives in this session's state only, so every student's quiz is their own. The
# settings widgets are not drawn while a quiz runs (Streamlit then forgets their values), so the
# Quiz object carries its own settings and the callbacks below put them back.
st.session_state.setdefault("quiz", None)  # {"source": dataset source, "quiz": Quiz, "answers": [...]}
st.session_state.setdefault("quiz_size", quiz.QUIZ_SIZES[0])
st.session_state.setdefault("quiz_balanced", True)
st.session_state.setdefault("quiz_number", 1)


def begin(source: str, drawn: quiz.Quiz) -> None:
    st.session_state["quiz"] = {"source": source, "quiz": drawn, "answers": []}


def answer(position: int, name: str) -> None:
    state = st.session_state["quiz"]
    if state is not None and len(state["answers"]) == position:  # a double click answers once
        state["answers"].append(name)


def previous() -> None:
    state = st.session_state["quiz"]
    if state is not None and state["answers"]:
        state["answers"].pop()


def replay() -> None:
    st.session_state["quiz"]["answers"] = []


def settings(drawn: quiz.Quiz, seed: int | None = None) -> None:
    """Back to the settings of ``drawn`` (with another quiz number when ``seed`` is given)."""
    st.session_state["quiz_size"] = drawn.requested
    st.session_state["quiz_balanced"] = drawn.balanced
    st.session_state["quiz_number"] = drawn.seed if seed is None else seed
    st.session_state["quiz"] = None


def new_faces(source: str, dataset: Dataset, drawn: quiz.Quiz) -> None:
    settings(drawn, drawn.seed + 1)
    begin(source, quiz.draw(dataset, drawn.requested, drawn.seed + 1, drawn.balanced))


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
        lines.append(f"No {', '.join(drawn.missing)} faces to draw from here.")
    return lines


source = st.session_state["dataset_source"]
label = st.session_state["dataset_label"]
try:
    with st.spinner(f"Loading {literal(label)}…"):
        dataset = get_dataset()
except (DatasetError, OSError, ValueError) as error:
    st.error(f"Could not load the dataset in use: {literal(error)}")
    st.stop()

state = st.session_state["quiz"]
if state is not None and (state["source"] != source or max(state["quiz"].rows) >= len(dataset)):
    settings(state["quiz"])
    state = None
    st.info("The dataset in use changed, so the last quiz was put away: start a new one on its faces.")

# --- settings ------------------------------------------------------------------------------

if state is None:
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
        model_picker(key="quiz_model")
    try:
        drawn = quiz.draw(dataset, int(size), int(number), bool(balanced))
    except quiz.QuizError as error:
        st.error(str(error))
        st.caption("Choose a larger dataset on the Dataset page.")
        st.stop()
    for line in where_from(drawn, dataset):
        st.caption(line)
    st.button("▶️ Start the quiz", type="primary", on_click=begin, args=(source, drawn))
    st.stop()

drawn: quiz.Quiz = state["quiz"]
answers: list[str] = state["answers"]

# --- one face at a time --------------------------------------------------------------------

if len(answers) < len(drawn):
    position = len(answers)
    st.progress(position / len(drawn), text=f"Face {position + 1} of {len(drawn)}")
    face_column, choice_column = st.columns([2, 3], gap="large")
    face = dataset.images[drawn.rows[position]]
    scale = projector.px(FACE_SCALE)
    face_column.image(stats.upscale(face, scale), caption=f"48×48 pixels, shown {scale}× with square pixels")
    with choice_column:
        st.markdown("**Which emotion is this?**")
        for name in drawn.classes:
            st.button(
                f"{ICONS.get(name, '🔹')} {name}",
                key=f"quiz_answer_{name}",
                on_click=answer,
                args=(position, name),
                width="stretch",
            )
        back_column, quit_column = st.columns(2)
        back_column.button("↩️ Previous face", on_click=previous, disabled=position == 0, width="stretch")
        quit_column.button("⏹️ Stop this quiz", on_click=settings, args=(drawn,), width="stretch")
    st.stop()

# --- results -------------------------------------------------------------------------------

st.progress(1.0, text=f"Quiz {drawn.seed} done: {len(drawn)} faces")
faces = dataset.images[list(drawn.rows)]
model_column, _ = st.columns([2, 3])
with model_column:
    model_dir = model_picker(key="quiz_model")
model_answers = None
if model_dir is not None:
    try:
        recognizer = get_recognizer(model_dir)
        with st.spinner("The model is answering…"):
            model_answers = quiz.model_guesses(recognizer, faces)
    except ModelLoadError as error:
        st.warning(f"The model cannot answer: {literal(error)}")
    else:
        if set(recognizer.classes) != set(drawn.classes):
            st.caption(
                "The model knows other emotions than this dataset, so its answers outside the dataset's "
                "classes count as wrong."
            )
        if bool(recognizer.card.dataset.get("synthetic")) != dataset.synthetic:
            trained = "synthetic" if recognizer.card.dataset.get("synthetic") else "real"
            st.caption(f"This model was trained on {trained} faces, so it is not at home on these.")

# Without a model the student is scored alone: the model's columns below are not shown.
result = quiz.score(drawn.truth, answers, answers if model_answers is None else model_answers, drawn.classes)
you, model, same = st.columns(3)
you.metric("You", f"{result.human_accuracy:.0%}")
you.caption(f"{result.human_right} of {result.n} faces right")
if model_answers is not None:
    model.metric("The model", f"{result.model_accuracy:.0%}")
    model.caption(
        f"{result.model_right} of {result.n} faces right (each face averaged with its mirror image)"
    )
    same.metric("Same answer as the model", f"{result.same_answer} of {result.n}")
    same.caption("right or wrong")

if dataset.synthetic:
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

if model_answers is not None:
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
            caption=[f"label {item.truth} · you {item.human} · model {item.model}" for item in group],
        )
else:
    mistakes = [(i, t, h) for i, (t, h) in enumerate(zip(drawn.truth, answers)) if t != h]
    if mistakes:
        st.subheader("Where you disagree with the label")
        st.image(
            [stats.upscale(faces[i], projector.px(GALLERY_SCALE)) for i, _, _ in mistakes],
            caption=[f"label {t} · you {h}" for _, t, h in mistakes],
        )

new_column, again_column, settings_column, _ = st.columns([1, 1, 1, 2])
new_column.button(
    "🔀 New faces", type="primary", on_click=new_faces, args=(source, dataset, drawn), width="stretch"
)
again_column.button("🔁 Same faces again", on_click=replay, width="stretch")
settings_column.button("⚙️ Change settings", on_click=settings, args=(drawn,), width="stretch")
