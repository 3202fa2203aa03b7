"""Photo: find every face in a picture, classify each one, and show what the model looked at."""

from __future__ import annotations

import streamlit as st

from fertools.faces import photo_detector_fallback
from fertools.modelcard import ModelLoadError
from ui import photo_view
from ui.common import get_recognizer, page_setup
from ui.identity import literal
from ui.model_notes import show_model_notes

page_setup("Photo", "🖼️")
st.title("🖼️ Photo")
st.caption(
    "The face detector (MediaPipe's BlazeFace, or OpenCV's Haar cascade) finds the faces; each one is "
    "cropped with a small margin, turned grey and shrunk to 48×48, exactly like the training data, and "
    "classified."
)

# --- picture and model ---------------------------------------------------------------------

chosen = photo_view.controls()
if chosen.model_dir is None:
    st.stop()
uploading = chosen.source == photo_view.UPLOAD
picture = photo_view.upload_picker() if uploading else photo_view.sample_picker()
if picture is None:
    st.stop()
try:
    recognizer = get_recognizer(chosen.model_dir)
except ModelLoadError as error:
    st.error(f"Could not load the model: {literal(error.for_page())}")
    st.stop()

# --- faces ---------------------------------------------------------------------------------

show_model_notes(recognizer, real_pictures=uploading, detector=False)  # photo_detector's below
detector_problem = photo_detector_fallback(chosen.detector_name)
if detector_problem:
    st.warning(detector_problem)
results, whole_image = photo_view.find_faces(recognizer, picture.frame, chosen)
if not results:
    st.image(picture.frame, channels="BGR", caption=photo_view.size_text(picture))
    st.stop()

picture_column, detail_column = st.columns([3, 2], gap="large")
with picture_column:
    photo_view.show_picture(picture, results, whole_image)
with detail_column:
    photo_view.show_faces(chosen.model_dir, recognizer, results, whole_image)
with st.expander("Raw results"):
    st.json([result.to_dict() for result in results])
