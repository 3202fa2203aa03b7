"""Train a model in the background, watch it learn, and read what it learned."""

from __future__ import annotations

import streamlit as st

from fertools import jobs
from fertools.data import DatasetError
from ui import train_form as form
from ui.common import get_dataset, page_setup
from ui.identity import current_user
from ui.train_runs import runs_section
from ui.train_setup import configure_section
from ui.train_watch import follow_runs, watch_section

page_setup("Train", "🏋️")
form.restore(st.session_state)

st.title("Train a model")
st.caption(
    "Training runs in its own process on the server: clicking around, reloading the page or closing "
    "the browser never stops it. Come back to this page to find it again."
)

try:
    current_dataset = get_dataset()
except DatasetError as error:
    st.error(f"The dataset in use cannot be loaded: {error} Choose another one on the Dataset page.")
    current_dataset = None

user = current_user()
# Every run folder is read once per page run; again only when Start has just queued one.
all_runs = jobs.list_runs()
if configure_section(current_dataset, user, all_runs):
    all_runs = jobs.list_runs()
watch_section(all_runs, user)
runs_section(all_runs, current_dataset, user)
follow_runs(all_runs, user)
form.remember(st.session_state)
