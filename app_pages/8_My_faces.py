"""My faces: record your own expressions, fine-tune the model on them, and compare before and after."""

from __future__ import annotations

import streamlit as st

from fertools.album import MIN_PER_CLASS, FaceAlbum
from ui import album_view as view
from ui.common import model_picker, page_setup
from ui.identity import current_user

page_setup("My faces", "🤳")
st.title("🤳 My faces")
st.caption(
    "Make an expression, take a snapshot, say which one it was. After a few of each, fine-tune the model "
    "on your own faces (about a minute) and see what it learned. Your album is yours alone: nobody else "
    "sees it, and one click deletes it."
)

user = current_user()
album_store = FaceAlbum.of(user.id)

# --- recording -----------------------------------------------------------------------------

record_column, last_column = st.columns([3, 2])
with record_column:
    view.record(album_store)
with last_column:
    view.show_last()

# --- the album -----------------------------------------------------------------------------

album = album_store.read()
st.subheader(f"Your album: {len(album)} face{'s' * (len(album) != 1)}")
if not len(album):
    st.info(f"No faces yet. Record at least {MIN_PER_CLASS} of two or more expressions to fine-tune.")
    st.stop()
view.show_album(album_store, album)

# --- fine-tuning ---------------------------------------------------------------------------

st.subheader("Fine-tune on your faces")
model_dir = model_picker(key="album_model")
if model_dir is None:
    st.stop()
latest = view.fine_tune(album_store, album, model_dir, user.id)
if latest is None:
    st.stop()
if latest.active:
    view.watch(latest.id)
    st.stop()
if latest.state != "finished" or latest.model_dir is None:
    st.warning(
        f"The last fine-tuning run did not finish ({latest.state}): {latest.reason or 'no reason given'}."
    )
    st.stop()

# --- before and after ----------------------------------------------------------------------

view.show_comparison(model_dir, latest, album)
