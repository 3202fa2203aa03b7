"""My faces: record your own expressions, fine-tune the model on them, and compare before and after."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fertools import jobs
from fertools.album import MIN_PER_CLASS, FaceAlbum, compare, fine_tune_config
from fertools.constants import FER2013_CLASSES
from fertools.faces import photo_detector
from fertools.modelcard import ModelLoadError
from fertools.preprocess import load_photo
from fertools.users import QuotaError
from ui import projector
from ui.common import get_recognizer, model_picker, page_setup
from ui.identity import count_upload, current_user

#: The name every fine-tuning run of this page gets, so the page finds the latest one again.
RUN_NAME = "my faces"
#: Faces shown per row of the album gallery.
GALLERY_COLUMNS = 10

page_setup("My faces", "🤳")
st.title("🤳 My faces")
st.caption(
    "Make an expression, take a snapshot, say which one it was. After a few of each, fine-tune the model "
    "on your own faces (about a minute) and see what it learned. Your album is yours alone: nobody else "
    "sees it, and one click deletes it."
)

user = current_user()
album_store = FaceAlbum.of(user.id)
EXPRESSION_HELP = "The expression you are making in this snapshot: the label the model will learn."


def add_picture(picture, name: str, label: str) -> None:
    """Find the largest face in an uploaded picture and add its crop to the album, once per upload.

    Once per upload (``file_id``), not per content: a camera pointed at a still face can take two
    identical snapshots, and a student may mean both.
    """
    seen = st.session_state.setdefault("album_seen", set())
    if picture.file_id in seen:
        return
    seen.add(picture.file_id)
    try:
        count_upload(picture.file_id, picture.size)  # a hosted server's upload quota per session
    except QuotaError as error:
        st.error(str(error))
        return
    payload = picture.getvalue()
    try:
        frame = load_photo(payload)
    except ValueError as error:
        st.error(f"{name}: {error}")
        return
    recognizer = get_recognizer()
    results = recognizer.analyze(frame, max_faces=1, detector=photo_detector())
    if not results:
        st.warning("No face found in this picture: face the camera in good light and take another one.")
        return
    face = results[0]
    try:
        album_store.add(face.face, label)
    except ValueError as error:
        st.error(str(error))
        return
    st.session_state["album_last"] = (face.face, label, face.label, face.confidence)


# --- recording -----------------------------------------------------------------------------

record, last = st.columns([3, 2])
with record:
    label = st.radio("Expression", FER2013_CLASSES, horizontal=True, key="album_label", help=EXPRESSION_HELP)
    camera, upload = st.tabs(["Camera", "Upload a photo"])
    with camera:
        shot = st.camera_input("Take a snapshot", key="album_camera")
        if shot is not None:
            add_picture(shot, "the snapshot", label)
    with upload:
        photo = st.file_uploader(
            "A photo of your face", type=["jpg", "jpeg", "png", "webp"], key="album_upload"
        )
        if photo is not None:
            add_picture(photo, photo.name, label)
with last:
    if "album_last" in st.session_state:
        face, recorded, guess, confidence = st.session_state["album_last"]
        st.image(face, width=projector.px(144), caption=f"Added as {recorded}")
        st.caption(f"The model in use reads it as **{guess}** ({confidence:.0%}).")

# --- the album -----------------------------------------------------------------------------

album = album_store.read()
st.subheader(f"Your album: {len(album)} face{'s' * (len(album) != 1)}")
if not len(album):
    st.info(f"No faces yet. Record at least {MIN_PER_CLASS} of two or more expressions to fine-tune.")
    st.stop()
counts = album.counts()
st.caption(" · ".join(f"{name} {n}" for name, n in counts.items()))
order = np.argsort(album.labels, kind="stable")
for start in range(0, len(order), GALLERY_COLUMNS):
    row = st.columns(GALLERY_COLUMNS)
    for column, index in zip(row, order[start : start + GALLERY_COLUMNS], strict=False):
        column.image(album.faces[index], caption=FER2013_CLASSES[album.labels[index]], width=projector.px(72))
if st.button("Delete my album", icon="🗑️", key="album_delete"):
    album_store.clear()
    st.session_state.pop("album_last", None)  # "album_seen" stays: the camera still holds its last shot
    st.rerun()

# --- fine-tuning ---------------------------------------------------------------------------

st.subheader("Fine-tune on your faces")
model_dir = model_picker(key="album_model")
if model_dir is None:
    st.stop()
mine = [run for run in jobs.list_runs() if run.owner == user.id and run.name == RUN_NAME]
latest = max(mine, key=lambda run: run.created, default=None)
problem = album.ready_to_fine_tune()
if problem:
    st.info(problem)
elif st.button(
    "Fine-tune the model on my faces",
    type="primary",
    disabled=bool(latest and latest.active),
    help="Starts from the model above and trains it for a short while on your album (no validation "
    "split: the album is too small). It runs in the background, like a Train page run.",
):
    try:
        config = fine_tune_config(model_dir)
        jobs.submit(album_store.dataset(), config, RUN_NAME, "your own faces", owner=user.id, once=True)
    except (ValueError, ModelLoadError) as error:
        st.error(str(error))
    else:
        st.rerun()


@st.fragment(run_every=1.0)
def watch(run_id: str) -> None:
    run = jobs.get_run(run_id)
    if run.active:
        fraction = float((run.progress or {}).get("fraction") or 0.0)
        st.progress(min(1.0, fraction), text=f"Fine-tuning ({run.state})… {fraction:.0%}")
    else:
        st.rerun()  # the whole page, to show the comparison


if latest is None:
    st.stop()
if latest.active:
    watch(latest.id)
    st.stop()
if latest.state != "finished" or latest.model_dir is None:
    st.warning(
        f"The last fine-tuning run did not finish ({latest.state}): {latest.reason or 'no reason given'}."
    )
    st.stop()

# --- before and after ----------------------------------------------------------------------

try:
    before = get_recognizer(model_dir)
    after = get_recognizer(str(latest.model_dir))
except ModelLoadError as error:
    st.error(str(error))
    st.stop()
seen = album.added <= latest.created
result = compare(before.classify, after.classify, album)
left, right = st.columns(2)
left.metric("Before: the model you started from", f"{result.accuracy_before:.0%}")
right.metric(
    "After fine-tuning",
    f"{result.accuracy_after:.0%}",
    delta=f"{(result.accuracy_after - result.accuracy_before) * 100:+.0f} points",
)
st.caption(
    "On the faces of your album. The faces recorded before the run are the ones it trained on, so of "
    "course it does better on them; the honest test is a face it has not seen: record a few more now."
)
if (~seen).any():
    fresh = compare(before.classify, after.classify, album.select(~seen))
    st.metric(
        f"On the {int((~seen).sum())} face(s) recorded after fine-tuning",
        f"{fresh.accuracy_after:.0%}",
        delta=f"{(fresh.accuracy_after - fresh.accuracy_before) * 100:+.0f} points vs before",
    )
rows = result.rows()
for row, trained in zip(rows, seen, strict=True):
    row["trained on"] = bool(trained)
st.dataframe(
    rows,
    column_config={
        "before_p": st.column_config.ProgressColumn("before, p", format="percent", min_value=0, max_value=1),
        "after_p": st.column_config.ProgressColumn("after, p", format="percent", min_value=0, max_value=1),
    },
    hide_index=True,
)
st.caption(
    f"Use the fine-tuned model on the Photo or Webcam page: it is “Run {latest.id}” in their model list."
)
