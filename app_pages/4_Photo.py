"""Photo: find every face in a picture, classify each one, and show what the model looked at."""

from __future__ import annotations

import streamlit as st

from fertools import images, stats
from fertools.constants import FER2013_CLASSES
from fertools.faces import (
    DEFAULT_MIN_SCORE,
    PHOTO_MIN_SCORE,
    is_face_crop,
    photo_detector,
    photo_detector_fallback,
)
from fertools.gradcam import gradcam, overlay
from fertools.modelcard import ModelLoadError
from fertools.preprocess import PHOTO_MAX_SIDE, load_photo
from fertools.recognize import draw_faces
from fertools.samples import sample_crop, sample_photo
from fertools.synthetic import SYNTHETIC_NOTE
from fertools.users import QuotaError
from ui import photo_figures, projector
from ui.common import detector_picker, get_recognizer, model_picker, page_setup
from ui.identity import count_upload
from ui.model_notes import show_model_notes

UPLOAD, SAMPLE = "Upload a photo", "Sample picture"
PORTRAIT, CROP = "Portrait", "48×48 crop"
#: Faces shown in detail; a class photo can hold dozens.
MAX_DETAILED = 6
#: A picture used whole as one face is shown enlarged to about this side, not annotated.
MIN_ANNOTATED_SIDE = 160

page_setup("Photo", "🖼️")
st.title("🖼️ Photo")
st.caption(
    "The face detector (MediaPipe's BlazeFace, or OpenCV's Haar cascade) finds the faces; each one is "
    "cropped with a small margin, turned grey and shrunk to 48×48, exactly like the training data, and "
    "classified."
)


def new_sample() -> None:
    st.session_state["photo_seed"] = int(st.session_state.get("photo_seed", 0)) + 1


@st.cache_data(max_entries=64, show_spinner=False)
def heatmap(model_dir: str, created: str, face, class_index: int):
    """Grad-CAM of one 48x48 face for one class; None if the model has no convolutional layer.

    ``created`` (the card's time stamp) is only part of the key: a model retrained into the
    same folder gets fresh heatmaps.
    """
    recognizer = get_recognizer(model_dir)
    try:
        return gradcam(recognizer.model, face, class_index, architecture=recognizer.card.architecture)
    except ValueError:
        return None


# --- picture and model ---------------------------------------------------------------------

source_column, model_column = st.columns([3, 2])
with model_column:
    model_dir = model_picker(key="photo_model")
    detector_name = detector_picker(
        "photo_detector",
        "BlazeFace finds smaller and tilted faces and says how sure it is; the Haar cascade is "
        "the classic OpenCV detector, for comparison.",
    )
    min_score = st.slider(
        "Face detection threshold",
        PHOTO_MIN_SCORE,
        0.95,
        DEFAULT_MIN_SCORE,
        step=0.05,
        key="photo_min_score",
        disabled=detector_name == "haar",
        help="How sure BlazeFace must be that a box is a face. Raise it when boxes land on things that "
        "are no faces; lower it when faces are missed. The Haar cascade gives no score.",
    )
    mirror = st.toggle(
        "Average with the mirror image",
        value=True,
        key="photo_tta",
        help="Flip test-time augmentation: each face is classified twice, as is and mirrored, and the "
        "two results are averaged. Usually a little more accurate (the model card gives both "
        "accuracies), twice the model time.",
    )
with source_column:
    source = st.radio("Picture", [UPLOAD, SAMPLE], index=1, horizontal=True, key="photo_source")
if model_dir is None:
    st.stop()

if source == UPLOAD:
    uploaded = st.file_uploader(
        "A photo with one or more faces", type=["jpg", "jpeg", "png", "webp", "bmp"], key="photo_upload"
    )
    if uploaded is None:
        st.info("Upload a photo, or switch to a sample picture. Photos are processed in memory and not kept.")
        st.stop()
    try:
        count_upload(uploaded.file_id, uploaded.size)  # a hosted server's upload quota per session
    except QuotaError as error:
        st.error(str(error))
        st.stop()
    try:
        frame = load_photo(uploaded.getvalue())
        original_size = images.upright_size(uploaded.getvalue())
    except ValueError as error:
        st.error(f"{uploaded.name}: {error}")
        st.stop()
else:
    emotion_column, kind_column, seed_column, button_column = st.columns(
        [2, 2, 1, 1], vertical_alignment="bottom"
    )
    emotion = emotion_column.selectbox("Emotion", FER2013_CLASSES, index=3, key="photo_emotion")
    kind = kind_column.radio(
        "Kind",
        [PORTRAIT, CROP],
        horizontal=True,
        key="photo_kind",
        help="A bare 48×48 crop, like a FER2013 image: too small for the face detector, so the whole "
        "picture is classified as one face.",
    )
    seed = seed_column.number_input("Seed", min_value=0, step=1, key="photo_seed")
    button_column.button("🎲 New sample", on_click=new_sample, width="stretch")
    frame = sample_photo(emotion, int(seed)) if kind == PORTRAIT else sample_crop(emotion, int(seed))
    original_size = (frame.shape[1], frame.shape[0])
    st.caption(f"{SYNTHETIC_NOTE} The model does not know which emotion was drawn.")

try:
    recognizer = get_recognizer(model_dir)
except ModelLoadError as error:
    st.error(f"Could not load the model: {error}")
    st.stop()

# --- faces ---------------------------------------------------------------------------------

show_model_notes(recognizer, real_pictures=source == UPLOAD, detector=False)  # photo_detector's below
detector_problem = photo_detector_fallback(detector_name)
if detector_problem:
    st.warning(detector_problem)
height, width = frame.shape[:2]
# NOTE: a picture the size of a model input already is a face crop (FER2013's are 48x48): it is
# classified whole, as training faces were, not searched for a face it has no room around.
whole_image = is_face_crop(height, width, recognizer.input_size)
if whole_image:
    results = [recognizer.analyze_face(frame, tta=mirror)]
else:
    with st.spinner("Finding faces…"):
        # Surest face first: a large false box on a busy picture must not become "Face 1".
        detector = photo_detector(detector_name, min_score=min_score)
        results = recognizer.analyze(frame, detector=detector, tta=mirror)
if not results:
    st.warning(
        f"No face found. Faces need to be at least about 40 pixels wide (after the picture is shrunk "
        f"to {PHOTO_MAX_SIDE} pixels on its longest side); lower the face detection threshold or try "
        "the other face detector."
    )
    whole_image = st.checkbox(
        "Treat the whole picture as one face",
        key="photo_whole_image",
        help="For pictures that are a face crop already.",
    )
    if whole_image:
        results = [recognizer.analyze_face(frame, tta=mirror)]

original_width, original_height = original_size
size_text = f"{original_width}×{original_height} pixels"
if (original_width, original_height) != (width, height):
    size_text += f", searched at {width}×{height}"
if not results:
    st.image(frame, channels="BGR", caption=size_text)
    st.stop()

picture_column, detail_column = st.columns([3, 2], gap="large")
if not whole_image:
    picture_column.image(
        draw_faces(frame, results),
        channels="BGR",
        caption=f"{len(results)} face(s) in {size_text}",
        width="stretch",
    )
else:
    picture_column.image(
        stats.upscale(frame, max(1, MIN_ANNOTATED_SIDE * 2 // min(height, width))),
        channels="BGR",
        caption=f"The whole {original_width}×{original_height} picture, used as one face",
    )

with detail_column:
    detailed = results[:MAX_DETAILED]
    tabs = (
        st.tabs([f"Face {n}" for n in range(1, len(detailed) + 1)]) if len(detailed) > 1 else [st.container()]
    )
    for number, (tab, result) in enumerate(zip(tabs, detailed), start=1):
        with tab:
            st.subheader(f"Face {number}: {result.label} ({result.confidence:.0%})")
            if result.detection_score is not None:
                st.caption(f"The detector is {result.detection_score:.0%} sure this is a face.")
            elif not whole_image:
                st.caption("The Haar cascade finds faces without saying how sure it is.")
            face_column, cam_column = st.columns(2)
            face_column.image(stats.upscale(result.face, 4), caption="What the model sees: 48×48 grey, 4×")
            cam = heatmap(
                model_dir, recognizer.card.created, result.face, recognizer.classes.index(result.label)
            )
            if cam is None:
                cam_column.info("This model has no convolutional layer to explain with Grad-CAM.")
            else:
                cam_column.image(
                    overlay(result.face, cam, size=192),
                    caption=f"Grad-CAM for '{result.label}': red pushed the model towards it",
                )
            projector.chart(
                photo_figures.probability_chart(result.probabilities, result.label),
                key=f"photo_chart_{number}",
            )
    if len(results) > MAX_DETAILED:
        st.caption(
            f"{len(results) - MAX_DETAILED} more faces are boxed in the picture but not detailed here."
        )
with st.expander("Raw results"):
    st.json([result.to_dict() for result in results])
