"""FER Lab home: what the app is, what is in use right now, and where to get FER2013."""

from __future__ import annotations

import streamlit as st

from fertools.constants import data_dir
from ui.common import BUILTIN, current_card, page_setup
from ui.identity import literal
from ui.pages import PAGES


@st.cache_resource(show_spinner=False)
def compute_device() -> tuple[str, str]:
    """("GPU"/"CPU" plus details, TensorFlow version); asked once per server, not per rerun."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU ×{len(gpus)}" if gpus else "CPU"
    return device, tf.__version__


page_setup("Home", "🙂")

st.title("🙂 FER Lab")
st.markdown(
    "FER Lab is a hands-on lab for **facial emotion recognition**: small grayscale faces "
    "(48×48, as in FER2013) and seven emotions — angry, disgust, fear, happy, sad, surprise, neutral. "
    "Look at the data, try augmentations, train a network and watch it learn, then point it at "
    "a photo or your webcam and see what it looks at."
)

# --- what is in use ------------------------------------------------------------------------


def status_card(column, title: str, value: str, detail: str = "", help_text: str | None = None) -> None:
    """A bordered box: a small title, the value in bold (wrapping, never cut off), a detail line."""
    with column.container(border=True, height="stretch"):
        st.caption(title, help=help_text)
        st.markdown(f"**{literal(value)}**")  # a dataset's file name, a run's name: plain text
        if detail:
            st.caption(literal(detail))


st.subheader("Right now")
dataset_column, model_column, device_column, tf_column = st.columns([3, 3, 2, 2])
synthetic = st.session_state["dataset_source"] == BUILTIN
status_card(
    dataset_column,
    "Dataset in use",
    st.session_state["dataset_label"],
    "synthetic cartoon faces, not real people" if synthetic else "",
    "Change it on the Dataset page.",
)
card = current_card()
if card is None:
    status_card(model_column, "Model in use", "none", "train one on the Train page")
else:
    accuracy = (
        f"validation accuracy {card.accuracy:.1%}" if card.accuracy is not None else "not evaluated yet"
    )
    trained_on = " · trained on synthetic faces" if card.dataset.get("synthetic") else ""
    status_card(
        model_column,
        "Model in use",
        f"{card.name} ({card.architecture})",
        accuracy + trained_on,
        "Pick another on the Photo or Webcam page; the accuracy is the one recorded on its model card.",
    )
# TensorFlow takes seconds to import on a first visit: these two boxes are filled in last, so
# the rest of the page shows at once.
device_slot, tf_slot = device_column.empty(), tf_column.empty()
status_card(device_slot, "Compute", "…", "starting TensorFlow")
status_card(tf_slot, "TensorFlow", "…")

# --- the pages -----------------------------------------------------------------------------

st.subheader("Pages")
tools = [page for page in PAGES if page.path != "app_pages/home.py"]
for row in range(0, len(tools), 3):
    for column, page in zip(st.columns(3), tools[row : row + 3]):
        with column.container(border=True, height="stretch"):
            st.page_link(page.path, label=page.title, icon=page.icon)
            st.caption(page.summary)

# --- FER2013 -------------------------------------------------------------------------------

st.subheader("Getting FER2013")
st.markdown(
    f"""
FER Lab runs out of the box on built-in synthetic faces. For real faces, download FER2013
(free Kaggle account) — FER Lab never downloads anything itself:

- **fer2013.csv** (`emotion,pixels,Usage`, 35,887 faces) from the Kaggle competition
  *Challenges in Representation Learning: Facial Expression Recognition Challenge*, or
- the **image release** (`train/<class>/*.jpg`, `test/<class>/*.jpg`), Kaggle dataset `msambare/fer2013`.

Put it in the data folder, currently `{data_dir()}` (set `FERLAB_DATA_DIR` to use another one):
`data/fer2013.csv` or `data/fer2013/train/<class>/*.jpg`. The Dataset page lists what it finds there
and also takes uploads (CSV, a zip of image folders, or an `.npz`).
"""
)

device, tf_version = compute_device()
status_card(device_slot, "Compute", device, "for training and inference")
status_card(tf_slot, "TensorFlow", tf_version)
