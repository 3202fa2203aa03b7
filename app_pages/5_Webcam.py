"""Webcam: live facial emotion recognition on your camera, with a readout and an emotion timeline."""

from __future__ import annotations

import streamlit as st

from fertools.modelcard import ModelLoadError
from ui import webcam_view
from ui.common import get_recognizer, page_setup
from ui.identity import literal
from ui.model_notes import show_model_notes
from ui.webrtc import StreamWatch, ice_servers, live_video_problem

page_setup("Webcam", "📷")
st.title("📷 Webcam")
st.caption(
    "Live emotion recognition: your browser streams the camera to this server, which finds faces, "
    "classifies each one and streams the annotated video back. Nothing is recorded."
)
webrtc_error = live_video_problem()  # aiortc/av missing or broken: snapshots still work

# --- controls -----------------------------------------------------------------------------

model_dir, settings = webcam_view.controls()
if model_dir is None:
    st.stop()
try:
    recognizer = get_recognizer(model_dir)
except ModelLoadError as error:
    st.error(f"The model could not be loaded: {literal(error.for_page())}")
    st.stop()
show_model_notes(recognizer, real_pictures=True)

processor = webcam_view.session_processor(recognizer, settings)
watch: StreamWatch = st.session_state.setdefault("webcam_watch", StreamWatch())
use_snapshots = st.toggle(
    "Use camera snapshots instead of live video",
    key="webcam_use_snapshots",
    disabled=webrtc_error is not None,
    help="For networks where the live connection cannot be made.",
)

# --- live video -----------------------------------------------------------------------------

servers, ice_warning = ice_servers()
if ice_warning:
    st.warning(ice_warning)
if webrtc_error:
    st.warning(f"Snapshots only: {webrtc_error}")
elif not use_snapshots:
    webcam_view.live_panel(processor, watch, servers)

problem = st.session_state.get("webcam_problem")
if problem and not use_snapshots:
    st.warning(f"{problem} Snapshots below work without a live connection.")
if webrtc_error or use_snapshots or problem:
    webcam_view.show_snapshots(processor)
