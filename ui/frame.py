"""The frame every page shares: set-up before the page, the sidebar after it, and the error boundary.

``app.py`` is the router (``st.navigation``); it calls :func:`run` with the page chosen. The
boundary catches whatever a page lets slip: the server logs the traceback with a short reference,
and the user gets one sentence with that reference, never a traceback with server paths. In a
hosted classroom (``FERLAB_HOSTED=1``) Streamlit's own error details are off too.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import sys

import streamlit as st
from streamlit.runtime.scriptrunner import script_runner

from fertools.constants import hosted
from ui import identity, projector
from ui.common import current_card, init_state, restore_choices, save_choices
from ui.identity import literal

log = logging.getLogger("ferlab")
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("ferlab_frame", default=False)


def inside() -> bool:
    """Whether this script run goes through the frame (False when a page runs on its own, in tests)."""
    return _inside.get()


def configure() -> None:
    """Settings that hold for the whole server, applied on every run (cheap, idempotent)."""
    # "none": Streamlit shows a generic message for an uncaught exception, no type, no traceback.
    st.set_option("client.showErrorDetails", "none" if hosted() else "full")
    keep_keras_state()


def _close_figures_only() -> None:
    """Streamlit's end-of-run clean-up without its Keras part: close matplotlib's figures."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def keep_keras_state() -> None:
    """Stop Streamlit from clearing Keras' session at the end of every script run.

    Streamlit's script runner calls ``keras.backend.clear_session()`` after each run, for apps
    that rebuild their model on every rerun. FER Lab builds each model once and shares it (cached)
    between sessions, so that call only hurts: it drops TensorFlow's kernel cache under the other
    sessions' feet and runs a full garbage collection, about 250 ms of CPU after every rerun of
    every visitor on the shipped model (measured), with the interpreter lock held.
    """
    # NOTE: a private hook of the pinned Streamlit (requirements.txt); if a release renames it,
    # this does nothing and the app keeps working, only slower.
    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = _close_figures_only


def sidebar_status(sidebar) -> None:
    """The dataset and model in use, as plain text (names may come from users)."""
    init_state()
    card = current_card()
    if card is None:
        model_text = "none"
    else:
        model_text = card.name if card.name == card.architecture else f"{card.name} ({card.architecture})"
    if card and card.accuracy is not None:
        model_text += f", val. accuracy {card.accuracy:.1%}"
    sidebar.caption(f"**Dataset:** {literal(st.session_state['dataset_label'])}")
    sidebar.caption(f"**Model:** {literal(model_text)}")


def run(page) -> None:
    """Run ``page`` (an ``st.Page``) inside the frame: the sidebar status, the boundary, the status again."""
    init_state()
    configure()
    projector.apply()
    status = st.sidebar.empty()
    token = _inside.set(True)
    try:
        # Who the visitor is, once per script run (login or class code first: they stop the page);
        # the choices restored next are that user's, and the page's page_setup does not ask again.
        identity.setup()
        restore_choices()
        # Also before the page: a page that stops early (st.stop) still shows the status, and the
        # projector switch keeps its state (a widget left out of a run loses it).
        projector.toggle(st.sidebar)
        sidebar_status(status.container())
        page.run()
    except Exception as error:  # noqa: BLE001 - the boundary: one page's failure stays on that page
        reference = secrets.token_hex(3)
        log.exception("page %s failed (reference %s)", getattr(page, "title", "?"), reference)
        st.error(
            f"Something went wrong on this page (reference {reference}); the server logged the details. "
            "Other pages keep working: try again, or choose another dataset or model."
        )
        if not hosted():
            with st.expander("Details (shown because this is not a hosted server)"):
                st.exception(error)
    finally:
        _inside.reset(token)
        save_choices()  # also after st.stop() or st.rerun() in the page: the choice is made by then
    sidebar_status(status.container())  # again, now with what the page chose
