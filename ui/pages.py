"""The app's pages, in sidebar order: one list that the router and the home page both read."""

from __future__ import annotations

from typing import NamedTuple


class PageEntry(NamedTuple):
    path: str  # relative to the project root, as st.Page and st.page_link take it
    title: str
    icon: str
    summary: str  # one line for the home page


PAGES: tuple[PageEntry, ...] = (
    PageEntry("app_pages/home.py", "Home", "🙂", "What FER Lab is and what is in use right now."),
    PageEntry(
        "app_pages/1_Dataset.py",
        "Dataset",
        "🗂️",
        "Browse a FER2013-style dataset: class balance, samples, pixel statistics, export.",
    ),
    PageEntry(
        "app_pages/2_Augmentation.py",
        "Augmentation",
        "🔀",
        "See what rotation, zoom, shifts, flips and erasing do to faces.",
    ),
    PageEntry(
        "app_pages/3_Train.py",
        "Train",
        "🏋️",
        "Train a network in the background, watch its curves, read its mistakes.",
    ),
    PageEntry(
        "app_pages/4_Photo.py",
        "Photo",
        "🖼️",
        "Find the faces in a photo and see each one's probabilities and Grad-CAM.",
    ),
    PageEntry("app_pages/5_Webcam.py", "Webcam", "📷", "Live recognition on your camera, in the browser."),
    PageEntry(
        "app_pages/6_Evaluate.py",
        "Evaluate",
        "📏",
        "Score a model on a test split; click a cell to see its faces.",
    ),
    PageEntry("app_pages/7_Quiz.py", "Quiz", "🎯", "You against the model: label faces, compare scores."),
    PageEntry(
        "app_pages/8_My_faces.py",
        "My faces",
        "🤳",
        "Record your own expressions, fine-tune the model on them, compare before and after.",
    ),
)
