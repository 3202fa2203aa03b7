"""The Webcam page's panels: its controls, the live video with its readout and timeline, and snapshots.

The frame processor (:mod:`fertools.webcam`) does the work; it is kept per session here and
read, never written, by the panels. The live component itself is :func:`ui.webrtc.streamer`.
"""

from __future__ import annotations

import time

import streamlit as st

from fertools.preprocess import load_photo
from fertools.recognize import Recognizer
from fertools.webcam import FrameProcessor, WebcamSettings
from ui import projector
from ui.common import detector_picker, model_picker
from ui.identity import count_upload
from ui.webcam_charts import followed_face, timeline_figure
from ui.webrtc import StreamWatch, streamer

#: While streaming, the readout refreshes this often (s), the timeline chart less often.
READOUT_EVERY_S = 1.0
TIMELINE_EVERY_S = 3.0
#: The live chart shows this many recent seconds; the CSV has the whole timeline.
TIMELINE_SHOWN_S = 60.0
#: The timeline selector's first choice: whichever face the readout shows first.
FOLLOW = 0


def controls() -> tuple[str | None, WebcamSettings]:
    """The model, detector, minimum face size, smoothing, bars and mirror, in one row; ``(model_dir, settings)``."""
    model_column, face_column, smooth_column, toggle_column = st.columns([3, 2, 2, 2])
    with model_column:
        model_dir = model_picker(key="webcam_model")
        detector_name = detector_picker(
            "webcam_detector",
            "BlazeFace (short-range model, for faces near the camera) finds tilted faces and says how "
            "sure it is; the Haar cascade is the classic OpenCV detector, for comparison.",
        )
    with face_column:
        min_face = st.slider(
            "Minimum face size",
            5,
            50,
            10,
            step=1,
            format="%d%%",
            key="webcam_min_face",
            help="The smallest face side, as a share of the picture's longer side (its width, for a webcam): "
            "smaller faces, such as faces in the background, are ignored. Below 20% BlazeFace switches to its "
            "full-range model, which finds faces further from the camera and takes a little longer.",
        )
    with smooth_column:
        smoothing = st.slider(
            "Smoothing",
            0.0,
            0.95,
            0.6,
            step=0.05,
            key="webcam_smoothing",
            help="Weight of the past in each face's moving average: 0 shows every frame's raw guess.",
        )
    with toggle_column:
        bars = st.toggle("Probability bars", value=True, key="webcam_bars")
        mirror = st.toggle("Mirror", value=True, key="webcam_mirror", help="Flip left-right, like a mirror.")
    settings = WebcamSettings(
        min_face=min_face / 100, smoothing=smoothing, bars=bars, mirror=mirror, detector=detector_name
    )
    return model_dir, settings


def session_processor(recognizer: Recognizer, settings: WebcamSettings) -> FrameProcessor:
    """This session's frame processor, made once, given the model and settings of this run."""
    # NOTE: one processor per session, kept in session_state: the frame callback runs in
    # streamlit-webrtc's worker thread, where st.* and session_state must not be touched, so
    # the callback only holds this object; the page reads its lock-guarded readout.
    processor: FrameProcessor | None = st.session_state.get("webcam_processor")
    if processor is None:
        processor = st.session_state["webcam_processor"] = FrameProcessor(recognizer, settings)
    processor.set_recognizer(recognizer)
    processor.configure(settings)
    return processor


def show_face(number: int, label: str, confidence: float, detection_score: float | None) -> None:
    """One face's emotion, and how sure the detector is that it is a face (when it says)."""
    st.metric(f"Face {number}", f"{label} {confidence:.0%}")
    if detection_score is not None:
        st.caption(f"Detector: {detection_score:.0%} sure this is a face")


def show_readout(ctx, processor: FrameProcessor, watch: StreamWatch) -> None:
    """Each face's smoothed emotion, fps and ms per frame; re-run every second while streaming."""
    readout = processor.readout()
    active = ctx is not None and (ctx.state.playing or ctx.state.signalling)
    problem = watch.update(active, readout.frames, time.monotonic())
    if problem != st.session_state.get("webcam_problem"):
        st.session_state["webcam_problem"] = problem
        st.rerun()  # the whole page: it shows or hides the snapshot fallback
    if readout.error:
        st.error(f"Frames could not be analysed: {readout.error}")
    with st.container(key="webcam_readout", border=True):
        if not readout.frames:
            waiting = "Connecting…" if active else "Press **START** to begin;"
            st.caption(f"{waiting} the readout appears here once frames arrive.")
        elif not readout.faces:
            st.markdown("**No face in view.** Face the camera, come closer, or lower the minimum face size.")
        for face in readout.faces:
            show_face(face.face_id, face.label, face.confidence, face.detection_score)
        if readout.frames:
            rate = f"{readout.fps:.1f} fps" if readout.fps > 0 else "– fps"  # a rate needs two frames
            size = f" · {readout.frame_size[0]}×{readout.frame_size[1]} video" if readout.frame_size else ""
            st.markdown(
                f"**{rate}** · {readout.ms_per_frame:.0f} ms per frame: detect {readout.ms_detect:.1f}, "
                f"classify {readout.ms_classify:.1f}, draw {readout.ms_draw:.1f} ms{size}"
            )


def show_timeline(processor: FrameProcessor) -> None:
    """The emotion timeline chart and its CSV; refreshed less often (a Plotly figure is not free)."""
    table = processor.timeline_frame()
    if len(table):
        face_id = followed_face(table, [face.face_id for face in processor.readout().faces])
        faces = sorted(table["face"].unique().tolist())
        if len(faces) > 1:
            # NOTE: tracked ids only grow, so a fixed default id would soon chart a face long gone.
            chosen = st.selectbox(
                "Timeline of",
                [FOLLOW, *faces],
                key="webcam_timeline_face",
                format_func=lambda i: "The face in view" if i == FOLLOW else f"Face {i}",
            )
            face_id = face_id if chosen == FOLLOW else chosen
        projector.chart(timeline_figure(table, face_id, last_s=TIMELINE_SHOWN_S), key="webcam_timeline_chart")
        left, right = st.columns(2)
        left.download_button(
            "Download timeline (CSV)",
            processor.timeline_csv,  # built only when clicked, not on every refresh
            file_name="emotion_timeline.csv",
            mime="text/csv",
            key="webcam_timeline_csv",
            on_click="ignore",
        )
        right.button("Clear timeline", key="webcam_clear", on_click=processor.reset)


def live_panel(processor: FrameProcessor, watch: StreamWatch, servers: list[dict]) -> None:
    """The live video and its hint beside the readout and timeline, which refresh while it streams."""
    video_column, readout_column = st.columns([3, 2])
    with video_column:
        ctx = streamer(processor, servers)
        # NOTE: errors the browser meets before connecting (camera blocked, no camera) show up in
        # the component only; it tells the script nothing, so the way out is spelled out here.
        hint = (
            "Camera blocked or the connection fails? The reason appears in the video box; switch on "
            "**Use camera snapshots** above to analyse single pictures instead."
        )
        if not servers:
            hint += (
                " No STUN/TURN server is configured, which is fine on this computer (localhost); from "
                "another network set `FERLAB_ICE_SERVERS` or `ice_servers` in secrets."
            )
        st.caption(hint)
    live = ctx.state.playing or ctx.state.signalling
    with readout_column:
        st.fragment(run_every=READOUT_EVERY_S if live else None)(show_readout)(ctx, processor, watch)
        st.fragment(run_every=TIMELINE_EVERY_S if live else None)(show_timeline)(processor)


def show_snapshots(processor: FrameProcessor) -> None:
    """The fallback: a camera snapshot analysed with the same model and settings."""
    st.subheader("Snapshots")
    shot = st.camera_input("Take a snapshot", key="webcam_snapshot")
    if shot is None:
        return
    try:
        count_upload(shot.file_id, shot.size)  # a snapshot is an upload: the same quota per session
        image = load_photo(shot.getvalue())  # the one decoder, shrunk like a photo before detection
    except ValueError as error:  # QuotaError, or an ImageError in one sentence
        st.error(f"The snapshot cannot be analysed: {error}")
        return
    annotated, faces = processor.snapshot(image)
    picture, numbers = st.columns([3, 2])
    picture.image(annotated, channels="BGR", caption="Snapshot, analysed")
    with numbers:
        if not faces:
            st.info(
                "No face found: face the camera in good light, come closer, or lower the minimum face size."
            )
        for number, face in enumerate(faces, start=1):
            show_face(number, face.label, face.confidence, face.detection_score)
            st.dataframe(
                {"emotion": list(face.probabilities), "probability": list(face.probabilities.values())},
                column_config={"probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)},
                hide_index=True,
                key=f"webcam_snapshot_probabilities_{number}",
            )
