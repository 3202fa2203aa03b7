"""Warnings about the model in use that the Photo and Webcam pages show above their results."""

from __future__ import annotations

import streamlit as st

from fertools.recognize import Recognizer

SYNTHETIC_MODEL = (
    "This model was trained on FER Lab's synthetic cartoon faces, not on photos of people, so its "
    "guesses on real faces mean little: pick a model trained on FER2013 or another photo dataset."
)


def trained_on_synthetic(recognizer: Recognizer) -> bool:
    """Whether the model's card says its training data was the built-in synthetic faces."""
    return bool(recognizer.card.dataset.get("synthetic", False))


def show_model_notes(recognizer: Recognizer, real_pictures: bool, detector: bool = True) -> None:
    """Say when the engine fell back, the detector fell back, or a cartoon-trained model meets real faces.

    ``real_pictures`` is False for the built-in synthetic samples, where a synthetic-trained
    model is in its element. ``detector=False`` leaves out the recognizer's detector fallback,
    for a page that finds faces with another detector and explains that one itself.
    """
    # getattr: older Recognizers have no ``fallback``; it is one sentence when LiteRT failed.
    fallback = getattr(recognizer, "fallback", None)
    if fallback:
        st.warning(fallback)
    if detector and recognizer.detector_fallback:
        st.warning(recognizer.detector_fallback)
    if real_pictures and trained_on_synthetic(recognizer):
        st.warning(SYNTHETIC_MODEL)
