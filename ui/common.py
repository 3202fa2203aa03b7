"""What every page shares: page set-up, the dataset and model in use, cached loaders.

Only widgets and caching live here; all the work is done by :mod:`fertools`.
Session-state keys are initialised once, in :func:`init_state`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fertools.runtime import protect_server

# Before anything imports TensorFlow: no oneDNN in the shared server (see fertools.runtime), and
# its own TensorFlow must not grab the whole GPU: training workers need it.
protect_server()
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import streamlit as st  # noqa: E402

from fertools import data, jobs, prefs  # noqa: E402
from fertools.constants import DEFAULT_MODEL_DIR, data_dir, hosted, runs_dir  # noqa: E402
from fertools.modelcard import MODEL_FILE, ModelCard, ModelLoadError, read_card  # noqa: E402
from fertools.runs import RunDir  # noqa: E402
from ui import identity  # noqa: E402

if TYPE_CHECKING:
    from fertools.recognize import Recognizer

log = logging.getLogger("ferlab")
BUILTIN = "builtin"
#: Whole numbers in tables, with the thousands separator the page's text uses (28,709); Streamlit's
#: default shows them bare (28709).
COUNT_COLUMN = st.column_config.NumberColumn(format="%,d")
DEFAULTS = {
    "dataset_source": BUILTIN,  # "builtin", a path under the data root, or "upload:<sha1>"
    "dataset_label": "Built-in synthetic faces",
    "model_dir": str(DEFAULT_MODEL_DIR),
    "augment_config": None,  # an AugmentConfig dict carried from the Augmentation page
}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


_RESTORED = "ferlab_prefs_restored"


def restore_choices() -> None:
    """Once per session: give back the dataset, model and augmentation this user last chose.

    Each saved value is checked again: the model must still be one this user may use, the
    dataset one the data folder still has (an upload does not outlive its session).
    """
    if st.session_state.get(_RESTORED):
        return
    st.session_state[_RESTORED] = True
    saved = prefs.load(identity.current_user().id)
    if saved.get("model_dir") in model_choices().values():
        st.session_state["model_dir"] = saved["model_dir"]
    source = saved.get("dataset_source")
    if isinstance(source, str) and source in available_sources().values():
        use_dataset(source, str(saved.get("dataset_label") or Path(source).name))
    for key in ("augment_config", "train_config"):  # checked where they are used
        if isinstance(saved.get(key), dict):
            st.session_state[key] = saved[key]


def save_choices() -> None:
    """After a page: keep this user's dataset, model and augmentation for their next session."""
    user = identity.known_user()
    if user is None:  # stopped at a login screen or the class-code form: nobody to save for
        return
    values = {key: st.session_state.get(key) for key in prefs.KEYS}
    if str(values.get("dataset_source") or "").startswith("upload:"):
        values.pop("dataset_source"), values.pop("dataset_label")  # an upload lives in its session only
    try:
        prefs.save(user.id, values)
    except (OSError, TypeError, ValueError):  # a full disk or an odd value: the page still works
        log.exception("could not save the choices of %s", user.id)


def page_setup(title: str, icon: str = "🙂") -> None:
    """The page's title and icon, session defaults, and (run alone, as in tests) the sidebar status.

    Inside the app the frame (``app.py``, :mod:`ui.frame`) draws the sidebar once, after the page,
    so it shows the model the page may just have chosen.
    """
    st.set_page_config(page_title=f"{title} · FER Lab", page_icon=icon, layout="wide")
    init_state()
    from ui import frame

    if not frame.inside():  # inside the app the frame has asked who the visitor is, before the page
        identity.setup()  # on a hosted server: login or class code first (they stop the page)
        frame.sidebar_status(st.sidebar)


# --- datasets ----------------------------------------------------------------------------


def _load_with_progress(source: str | bytes, name: str) -> data.Dataset:
    # NOTE: the bar is made inside the cached function, so a cache hit replays nothing stale.
    bar = st.progress(0.0, text=f"Loading {name}…")
    try:
        return data.load(
            source, name=name, progress=lambda fraction, text: bar.progress(min(1.0, fraction), text)
        )
    finally:
        bar.empty()


@st.cache_resource(max_entries=4, show_spinner=False)
def _load_source(source: str) -> data.Dataset:
    # Shared by every session: datasets are immutable, and FER2013 is 80 MB.
    return _load_with_progress(source, Path(source).name)


@st.cache_resource(max_entries=4, show_spinner=False)
def _load_upload(digest: str, name: str, _payload: bytes) -> data.Dataset:
    return _load_with_progress(_payload, name)


def load_upload(name: str, payload: bytes) -> str:
    """Parse an uploaded file, remember it, and return its source key ``upload:<sha1>``."""
    digest = hashlib.sha1(payload).hexdigest()
    _load_upload(digest, name, payload)
    st.session_state.setdefault("uploads", {})[digest] = (name, payload)
    return f"upload:{digest}"


def get_dataset(source: str | None = None) -> data.Dataset:
    """The dataset for ``source`` (default: the one in use); raises ``DatasetError``."""
    source = source or st.session_state.get("dataset_source", BUILTIN)
    if source.startswith("upload:"):
        digest = source.split(":", 1)[1]
        name, payload = st.session_state.get("uploads", {}).get(digest, (None, None))
        if payload is None:
            raise data.DatasetError("the uploaded file is gone (new session?); upload it again.")
        return _load_upload(digest, name, payload)
    return _load_source(source)


def use_dataset(source: str, label: str) -> None:
    st.session_state["dataset_source"] = source
    st.session_state["dataset_label"] = label


def available_sources() -> dict[str, str]:
    """Label -> source for the built-in set and everything found under the data root."""
    sources = {"Built-in synthetic faces": BUILTIN}
    root = data_dir()
    for path in data.discover(root):
        sources[str(path.relative_to(root))] = str(path)
    return sources


# --- models ---------------------------------------------------------------------------


def model_choices() -> dict[str, str]:
    """Label -> model folder: the shipped model, then every finished run, newest first.

    On a hosted server only the runs whose model this user may download (theirs, shared ones).
    """
    choices = {}
    if (DEFAULT_MODEL_DIR / MODEL_FILE).exists():
        choices["Shipped model (models/default)"] = str(DEFAULT_MODEL_DIR)
    root = runs_dir()
    if root.is_dir():
        folders = sorted(
            (p for p in root.glob("*/model") if (p / MODEL_FILE).exists()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        if hosted():
            user = identity.current_user()
            allowed = {run.id for run in jobs.list_runs(root) if jobs.permissions(run, user).can_download}
            folders = [folder for folder in folders if folder.parent.name in allowed]
        for folder in folders:
            # The name the student typed, with the run id, which tells same-named runs apart.
            run = RunDir(folder.parent)
            name = run.name()
            choices[f"Run {run.id}" if name == run.id else f"{name} (run {run.id})"] = str(folder)
    return choices


def current_card() -> ModelCard | None:
    try:
        return read_card(st.session_state.get("model_dir", str(DEFAULT_MODEL_DIR)))
    except ModelLoadError:
        return None


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _recognizer(model_dir: str, stamp: float) -> Recognizer:
    # One per model folder, shared by all sessions: the Recognizer keeps no per-call state.
    # Imported here, not above: TensorFlow takes seconds to import, and pages without a model
    # (the Home page on a first visit) should not wait for it.
    from fertools.recognize import Recognizer

    return Recognizer.load(model_dir)


def get_recognizer(model_dir: str | None = None) -> Recognizer:
    """The cached Recognizer for a model folder (default: the one in use); ``ModelLoadError`` if broken."""
    model_dir = model_dir or st.session_state.get("model_dir", str(DEFAULT_MODEL_DIR))
    model_file = Path(model_dir) / MODEL_FILE
    if not model_file.exists():
        raise ModelLoadError(f"{model_dir} holds no trained model.")
    return _recognizer(model_dir, model_file.stat().st_mtime)


def model_picker(key: str = "model_picker") -> str | None:
    """A selectbox of every model; selecting one makes it the model in use."""
    choices = model_choices()
    if not choices:
        st.warning("No trained model found: train one on the Train page.")
        return None
    labels = list(choices)
    current = st.session_state.get("model_dir")
    index = next((i for i, label in enumerate(labels) if choices[label] == current), 0)
    label = st.selectbox("Model", labels, index=index, key=key)
    st.session_state["model_dir"] = choices[label]
    return choices[label]


def detector_picker(key: str, help_text: str) -> str:
    """A selectbox of the registered face detectors (``fertools.faces.DETECTORS``); returns the name."""
    from fertools.faces import DETECTOR_LABELS, DETECTORS

    return st.selectbox("Face detector", DETECTORS, format_func=DETECTOR_LABELS.get, key=key, help=help_text)
