"""The My faces page's panels: recording a face, the album, fine-tuning on it, the before-and-after.

The page calls these top to bottom; the album on disk, the fine-tuning settings and the comparison
are :mod:`fertools.album`'s, the run is :mod:`fertools.jobs`'. Faces are ``uint8`` 48x48.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from fertools import jobs
from fertools.album import Album, FaceAlbum, compare, fine_tune_config
from fertools.constants import FER2013_CLASSES
from fertools.faces import photo_detector
from fertools.modelcard import ModelLoadError
from fertools.preprocess import load_photo
from fertools.users import QuotaError
from ui import common, projector
from ui.identity import count_upload, literal

#: The name every fine-tuning run of this page gets, so the page finds the latest one again.
RUN_NAME = "my faces"
#: Faces shown per row of the album gallery.
GALLERY_COLUMNS = 10
EXPRESSION_HELP = "The expression you are making in this snapshot: the label the model will learn."


def add_picture(album_store: FaceAlbum, picture, name: str, label: str) -> None:
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
        st.error(f"{literal(name)}: {error}")
        return
    recognizer = common.get_recognizer()
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


def record(album_store: FaceAlbum) -> None:
    """The expression picker over the camera and upload tabs; a new picture goes into the album."""
    label = st.radio("Expression", FER2013_CLASSES, horizontal=True, key="album_label", help=EXPRESSION_HELP)
    camera, upload = st.tabs(["Camera", "Upload a photo"])
    with camera:
        shot = st.camera_input("Take a snapshot", key="album_camera")
        if shot is not None:
            add_picture(album_store, shot, "the snapshot", label)
    with upload:
        photo = st.file_uploader(
            "A photo of your face", type=["jpg", "jpeg", "png", "webp"], key="album_upload"
        )
        if photo is not None:
            add_picture(album_store, photo, photo.name, label)


def show_last() -> None:
    """The face added last in this session, with what the model in use reads in it."""
    if "album_last" in st.session_state:
        face, recorded, guess, confidence = st.session_state["album_last"]
        st.image(face, width=projector.px(144), caption=f"Added as {recorded}")
        st.caption(f"The model in use reads it as **{literal(guess)}** ({confidence:.0%}).")


def show_album(album_store: FaceAlbum, album: Album) -> None:
    """Faces per expression, every face grouped by expression, and the button that deletes them all."""
    counts = album.counts()
    st.caption(" · ".join(f"{name} {n}" for name, n in counts.items()))
    order = np.argsort(album.labels, kind="stable")
    for start in range(0, len(order), GALLERY_COLUMNS):
        row = st.columns(GALLERY_COLUMNS)
        for column, index in zip(row, order[start : start + GALLERY_COLUMNS], strict=False):
            column.image(
                album.faces[index], caption=FER2013_CLASSES[album.labels[index]], width=projector.px(72)
            )
    if st.button("Delete my album", icon="🗑️", key="album_delete"):
        album_store.clear()
        st.session_state.pop("album_last", None)  # "album_seen" stays: the camera still holds its last shot
        st.rerun()


def fine_tune(album_store: FaceAlbum, album: Album, model_dir: str, owner: str) -> jobs.RunInfo | None:
    """What the album still needs, or the button that starts a run; returns ``owner``'s newest run here."""
    mine = [run for run in jobs.list_runs() if run.owner == owner and run.name == RUN_NAME]
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
            jobs.submit(album_store.dataset(), config, RUN_NAME, "your own faces", owner=owner, once=True)
        except (ValueError, ModelLoadError) as error:
            st.error(str(error))
        else:
            st.rerun()
    return latest


@st.fragment(run_every=1.0)
def watch(run_id: str) -> None:
    """The run's progress bar, refreshed every second; the whole page reruns once it ends."""
    run = jobs.get_run(run_id)
    if run.active:
        fraction = float((run.progress or {}).get("fraction") or 0.0)
        st.progress(min(1.0, fraction), text=f"Fine-tuning ({run.state})… {fraction:.0%}")
    else:
        st.rerun()  # the whole page, to show the comparison


def show_comparison(model_dir: str, latest: jobs.RunInfo, album: Album) -> None:
    """Both models' accuracy on the album, on the faces recorded since, and one row per face.

    "Before" is the model the run started from (its ``start_from``), whatever model is picked now;
    ``model_dir`` only stands in for a run that does not say.
    """
    try:
        before = common.get_recognizer(latest.config.start_from or model_dir)
        after = common.get_recognizer(str(latest.model_dir))
    except ModelLoadError as error:
        st.error(literal(error.for_page("a model")))
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
            "before_p": st.column_config.ProgressColumn(
                "before, p", format="percent", min_value=0, max_value=1
            ),
            "after_p": st.column_config.ProgressColumn(
                "after, p", format="percent", min_value=0, max_value=1
            ),
        },
        hide_index=True,
    )
    st.caption(
        f"Use the fine-tuned model on the Photo or Webcam page: it is “Run {latest.id}” in their model list."
    )
