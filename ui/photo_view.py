"""The Photo page's panels: its controls, the upload and sample pickers, the faces found, each face's detail.

The page calls these top to bottom; all the work is :mod:`fertools`' (detection, recognition,
Grad-CAM). Frames are BGR ``uint8`` ``(H, W, 3)``, faces ``uint8`` 48x48.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import streamlit as st

from fertools import images, stats
from fertools.constants import FER2013_CLASSES
from fertools.faces import DEFAULT_MIN_SCORE, PHOTO_MIN_SCORE, is_face_crop, photo_detector
from fertools.gradcam import gradcam, overlay
from fertools.modelcard import ModelCard
from fertools.preprocess import PHOTO_MAX_SIDE, load_photo
from fertools.recognize import FaceResult, Recognizer, draw_faces
from fertools.samples import sample_crop, sample_photo
from fertools.synthetic import SYNTHETIC_NOTE
from fertools.users import QuotaError
from ui import photo_figures
from ui.common import current_card, detector_picker, get_recognizer, model_picker
from ui.identity import count_upload, literal

UPLOAD, SAMPLE = "Upload a photo", "Sample picture"
PORTRAIT, CROP = "Portrait", "48×48 crop"
#: Faces shown in detail; a class photo can hold dozens.
MAX_DETAILED = 6
#: A picture used whole as one face is shown enlarged to about this side, not annotated.
MIN_ANNOTATED_SIDE = 160


class PhotoControls(NamedTuple):
    """What the visitor chose above the picture."""

    source: str  # UPLOAD or SAMPLE
    model_dir: str | None  # None when there is no model to pick
    detector_name: str
    min_score: float
    mirror: bool  # flip test-time augmentation
    views: str | None  # "ten_crop" when asked for, else None (then ``mirror`` decides)


class Picture(NamedTuple):
    """The picture to search: the frame as searched, and the size the visitor's file had."""

    frame: np.ndarray
    original_size: tuple[int, int]  # (width, height)


def controls() -> PhotoControls:
    """The picture source beside the model, detector, threshold and mirror-averaging controls."""
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
            help="How sure BlazeFace must be that a box is a face. Raise it when boxes land on things "
            "that are no faces; lower it when faces are missed. The Haar cascade gives no score.",
        )
        mirror = st.toggle(
            "Average with the mirror image",
            value=True,
            key="photo_tta",
            disabled=st.session_state.get("photo_ten_crop", False),  # ten crops mirror every view
            help="Flip test-time augmentation: each face is classified twice, as is and mirrored, and "
            "the two results are averaged. Usually a little more accurate (the model card gives both "
            "accuracies), twice the model time.",
        )
        ten_crop = st.toggle(
            "Ten crops (12 views)",
            key="photo_ten_crop",
            help="Each face is classified as a whole and as five slightly zoomed crops (corners and "
            f"centre), each also mirrored, and the 12 results are averaged{_ten_crop_gain(current_card())}, "
            "for six times the model time. For photos; the webcam keeps the fast path.",
        )
    with source_column:
        source = st.radio("Picture", [UPLOAD, SAMPLE], index=1, horizontal=True, key="photo_source")
    return PhotoControls(
        source, model_dir, detector_name, min_score, mirror, "ten_crop" if ten_crop else None
    )


def _ten_crop_gain(card: ModelCard | None) -> str:
    """What ten crops did for this model on its card's validation faces, when the card says."""
    accuracies = card.view_accuracies() if card else {}
    if not {"mirror", "ten_crop"} <= set(accuracies):
        return ""
    return (
        f": on this model's {card.metrics.get('n', '?')} validation faces {accuracies['ten_crop']:.1%} "
        f"against {accuracies['mirror']:.1%} with the mirror image alone"
    )


def upload_picker() -> Picture | None:
    """The photo uploader; None (with one sentence why) until an allowed, readable photo is in."""
    uploaded = st.file_uploader(
        "A photo with one or more faces", type=["jpg", "jpeg", "png", "webp", "bmp"], key="photo_upload"
    )
    if uploaded is None:
        st.info("Upload a photo, or switch to a sample picture. Photos are processed in memory and not kept.")
        return None
    try:
        count_upload(uploaded.file_id, uploaded.size)  # a hosted server's upload quota per session
    except QuotaError as error:
        st.error(str(error))
        return None
    try:
        return Picture(load_photo(uploaded.getvalue()), images.upright_size(uploaded.getvalue()))
    except ValueError as error:
        st.error(f"{literal(uploaded.name)}: {error}")
        return None


def _new_sample() -> None:
    st.session_state["photo_seed"] = int(st.session_state.get("photo_seed", 0)) + 1


def sample_picker() -> Picture:
    """The built-in sample: an emotion, a portrait or a bare crop, and a seed."""
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
    button_column.button("🎲 New sample", on_click=_new_sample, width="stretch")
    frame = sample_photo(emotion, int(seed)) if kind == PORTRAIT else sample_crop(emotion, int(seed))
    st.caption(f"{SYNTHETIC_NOTE} The model does not know which emotion was drawn.")
    return Picture(frame, (frame.shape[1], frame.shape[0]))


def find_faces(
    recognizer: Recognizer, frame: np.ndarray, chosen: PhotoControls
) -> tuple[list[FaceResult], bool]:
    """Every face in ``frame``, surest first, and whether the whole picture was used as one face.

    When no face is found the page says so and offers to classify the whole picture.
    """
    height, width = frame.shape[:2]
    # NOTE: a picture the size of a model input already is a face crop (FER2013's are 48x48): it is
    # classified whole, as training faces were, not searched for a face it has no room around.
    whole_image = is_face_crop(height, width, recognizer.input_size)
    if whole_image:
        results = [recognizer.analyze_face(frame, tta=chosen.mirror, views=chosen.views)]
    else:
        with st.spinner("Finding faces…"):
            # Surest face first: a large false box on a busy picture must not become "Face 1".
            detector = photo_detector(chosen.detector_name, min_score=chosen.min_score)
            results = recognizer.analyze(frame, detector=detector, tta=chosen.mirror, views=chosen.views)
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
            results = [recognizer.analyze_face(frame, tta=chosen.mirror, views=chosen.views)]
    return results, whole_image


def size_text(picture: Picture) -> str:
    """The picture's size as sent, and the size it was searched at when that differs."""
    original_width, original_height = picture.original_size
    height, width = picture.frame.shape[:2]
    text = f"{original_width}×{original_height} pixels"
    if (original_width, original_height) != (width, height):
        text += f", searched at {width}×{height}"
    return text


def enlargement(shape: tuple[int, int]) -> int:
    """How many times a picture used whole as one face is enlarged to be seen.

    Its short side goes to about twice :data:`MIN_ANNOTATED_SIDE`, its long side never beyond
    :data:`PHOTO_MAX_SIDE`: a 1x1280 strip would otherwise become a 400-megabyte image.
    """
    return max(1, min(MIN_ANNOTATED_SIDE * 2 // min(shape), PHOTO_MAX_SIDE // max(shape)))


def show_picture(picture: Picture, results: list[FaceResult], whole_image: bool) -> None:
    """The picture with every face boxed, or enlarged when it was used whole as one face."""
    frame = picture.frame
    if not whole_image:
        st.image(
            draw_faces(frame, results),
            channels="BGR",
            caption=f"{len(results)} face(s) in {size_text(picture)}",
            width="stretch",
        )
    else:
        original_width, original_height = picture.original_size
        st.image(
            stats.upscale(frame, enlargement(frame.shape[:2])),
            channels="BGR",
            caption=f"The whole {original_width}×{original_height} picture, used as one face",
        )


@st.cache_data(max_entries=64, show_spinner=False)
def heatmap(model_dir: str, created: str, face: np.ndarray, class_index: int) -> np.ndarray | None:
    """Grad-CAM of one 48x48 face for one class; None if the model has no convolutional layer.

    ``created`` (the card's time stamp) is only part of the key: a model retrained into the
    same folder gets fresh heatmaps.
    """
    recognizer = get_recognizer(model_dir)
    try:
        return gradcam(recognizer.model, face, class_index, architecture=recognizer.card.architecture)
    except ValueError:
        return None


def show_gradcam(model_dir: str, recognizer: Recognizer, result: FaceResult) -> None:
    """The Grad-CAM of one face for its top class, or why this model has none."""
    cam = heatmap(model_dir, recognizer.card.created, result.face, recognizer.classes.index(result.label))
    if cam is None:
        st.info("This model has no convolutional layer to explain with Grad-CAM.")
    else:
        st.image(
            overlay(result.face, cam, size=192),
            caption=f"Grad-CAM for '{result.label}': red pushed the model towards it",
        )


def show_face(
    number: int, model_dir: str, recognizer: Recognizer, result: FaceResult, whole_image: bool
) -> None:
    """One face's emotion, detector score, 48x48 crop, Grad-CAM and probability bars."""
    st.subheader(f"Face {number}: {literal(result.label)} ({result.confidence:.0%})")
    if result.detection_score is not None:
        st.caption(f"The detector is {result.detection_score:.0%} sure this is a face.")
    elif not whole_image:
        st.caption("The Haar cascade finds faces without saying how sure it is.")
    face_column, cam_column = st.columns(2)
    face_column.image(stats.upscale(result.face, 4), caption="What the model sees: 48×48 grey, 4×")
    with cam_column:
        show_gradcam(model_dir, recognizer, result)
    photo_figures.probability_bars(result.probabilities, result.label)


def show_faces(model_dir: str, recognizer: Recognizer, results: list[FaceResult], whole_image: bool) -> None:
    """The first :data:`MAX_DETAILED` faces in detail, one tab each when there are several."""
    detailed = results[:MAX_DETAILED]
    tabs = (
        st.tabs([f"Face {n}" for n in range(1, len(detailed) + 1)]) if len(detailed) > 1 else [st.container()]
    )
    for number, (tab, result) in enumerate(zip(tabs, detailed), start=1):
        with tab:
            show_face(number, model_dir, recognizer, result, whole_image)
    if len(results) > MAX_DETAILED:
        st.caption(
            f"{len(results) - MAX_DETAILED} more faces are boxed in the picture but not detailed here."
        )
