"""Quiz: you against the model. Label faces of the dataset in use, then compare with the model."""

from __future__ import annotations

import streamlit as st

from fertools import quiz
from ui import quiz_view as view
from ui.common import page_setup

page_setup("Quiz", "🎯")
st.title("🎯 You against the model")
st.caption(
    "Label faces of the dataset in use, one at a time, then see your accuracy beside the model's on "
    "the same faces, and the faces where you, the model and the dataset's label disagree. Your answers "
    "stay in this browser tab: nothing is saved on the server."
)

view.init_state()
source, label, dataset = view.load_dataset()
running = view.running_quiz(source, dataset)

# --- settings ------------------------------------------------------------------------------

if running is None:
    view.show_settings(source, label, dataset)
    st.stop()
drawn, answers = running

# --- one face at a time --------------------------------------------------------------------

if len(answers) < len(drawn):
    view.show_face(dataset, drawn, len(answers))
    st.stop()

# --- results -------------------------------------------------------------------------------

st.progress(1.0, text=f"Quiz {drawn.seed} done: {len(drawn)} faces")
faces = dataset.images[list(drawn.rows)]
model_answers = view.model_answers(dataset, drawn, faces)
# Without a model the student is scored alone: the model's columns below are not shown.
result = quiz.score(drawn.truth, answers, answers if model_answers is None else model_answers, drawn.classes)
view.show_scores(result, with_model=model_answers is not None)
view.show_label_noise(dataset.synthetic)
if model_answers is not None:
    view.show_comparison(result)
    view.show_disagreements(result, faces)
else:
    view.show_mistakes(drawn, answers, faces)
view.show_next(source, dataset, drawn)
