"""Who is at the keyboard: one :class:`fertools.users.User` per login, or per browser tab address.

:func:`setup` runs at the top of every page (``ui.common.page_setup`` calls it) and stores the
user in session state, where :func:`current_user` finds it.

* **Single-user FER Lab** (not hosted): always :data:`fertools.users.LOCAL_USER`, who is also
  the teacher; nothing is drawn and nothing is asked.
* **Login.** Where the host configured Streamlit's authentication (``[auth]`` in
  ``.streamlit/secrets.toml``), ``st.user`` has ``is_logged_in``: a visitor who is not logged in
  sees only the login button(s), and a user is who the provider says (issuer and subject, the
  email only as a readable hint). Without ``[auth]`` that key is absent, and nothing else in
  ``st.user`` is trusted (AppTest, for one, fills in a made-up email).
* **Anonymous visitors** (no ``[auth]``): each gets a random key (144 bits) kept in the address,
  ``?visitor=<key>``; the user id is a hash of it, so ids can be stored and shown.
  Why the address: session state alone dies with every refresh (a new session), so a student
  would lose their runs on F5; ``st.context.cookies`` is read-only, and setting a cookie takes
  JavaScript in a component, which fails silently where scripts are blocked, cannot run under
  AppTest, and gives a cookie any script on the page can read. ``st.query_params`` is plain
  Streamlit and survives a refresh and a bookmark. It does not survive an ``st.navigation`` page
  switch (Streamlit clears every parameter but the embed ones and those bound to a widget), so
  :func:`setup` writes the key back on every run of every page; the session keeps it meanwhile.
  The price: the address *is* the identity. Whoever gets it (a pasted link, a photo of the
  projector, the history of a shared computer) acts as that user, and a bare address or another
  browser is a new user, whose only way back to earlier runs is the bookmarked address. A class
  that needs real identities configures ``[auth]``.
* **Class code** (``FERLAB_CLASS_CODE``, hosted only): asked in a form before anything else.
  Passing it puts ``?class_pass=`` in the address, an HMAC of the user id keyed by the code, so a
  refresh does not ask again, and a new code asks everyone again.
* **Teacher code** (``FERLAB_TEACHER_CODE``, hosted only): entered in the sidebar, it makes this
  session's user the teacher, who manages everyone's runs, until they leave teacher mode or the
  session ends.

Codes are compared with :func:`hmac.compare_digest`; a wrong code costs a second, so guessing
one through the page is slow.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace

import streamlit as st

from fertools.users import LOCAL_USER, Quotas, User, anonymous, hosted, logged_in

log = logging.getLogger("ferlab")

VISITOR_PARAM = "visitor"
CLASS_PASS_PARAM = "class_pass"
CLASS_CODE = "FERLAB_CLASS_CODE"
TEACHER_CODE = "FERLAB_TEACHER_CODE"

_USER = "ferlab_user"
_VISITOR_KEY = "ferlab_visitor_key"
_CLASS_PASS = "ferlab_class_pass"
_TEACHER = "ferlab_teacher"
_UPLOADED = "ferlab_uploaded_bytes"
#: What secrets.token_urlsafe makes, with room; anything else in the address is replaced.
_VISITOR_KEY_FORM = re.compile(r"[A-Za-z0-9_-]{20,64}")
#: Seconds a wrong class or teacher code costs.
_WRONG_CODE_DELAY = 1.0


def _same(given: str, expected: str) -> bool:
    # Bytes, since compare_digest refuses non-ASCII str (a code may hold any character).
    return hmac.compare_digest(str(given).encode(), str(expected).encode())


def _keep_in_url(name: str, value: str) -> None:
    if st.query_params.get(name) != value:
        st.query_params[name] = value


# --- who ------------------------------------------------------------------------------------


def _providers() -> list[str | None]:
    """The login providers of ``[auth]``: named ones, and None for an unnamed default."""
    try:
        section = st.secrets.get("auth", {})
    except Exception:  # noqa: BLE001 - no or unreadable secrets.toml: offer the default login
        return [None]
    named = [str(name) for name, value in section.items() if isinstance(value, Mapping)]
    return ([None] if "client_id" in section or not named else []) + named


def _login_screen() -> None:
    st.title("🙂 FER Lab")
    st.write("Log in to use this class's FER Lab.")
    for provider in _providers():
        label = f"Log in with {provider.capitalize()}" if provider else "Log in"
        if st.button(label, key=f"ferlab_login_{provider or 'default'}", type="primary"):
            st.login(provider)  # None: the unnamed provider of [auth]
    st.stop()


def _login_user() -> User | None:
    """The logged-in user where ``[auth]`` is configured (else None); stops at the login screen."""
    try:
        info = st.user.to_dict()
    except Exception:  # noqa: BLE001 - a broken auth set-up must not take every page down
        log.exception("st.user cannot be read; visitors are anonymous")
        return None
    if "is_logged_in" not in info:
        return None
    if info.get("is_logged_in") is not True:
        _login_screen()
    email = str(info.get("email") or "")
    sub = str(info.get("sub") or "")
    subject = f"{info.get('iss') or ''}|{sub}" if sub else email
    try:
        return logged_in(subject, name=str(info.get("name") or ""), hint=email)
    except ValueError as error:
        st.error(str(error))
        st.stop()


def _visitor() -> User:
    """The anonymous user of this browser tab, its key kept in the session and the address."""
    key = st.session_state.get(_VISITOR_KEY)
    if key is None:
        given = st.query_params.get(VISITOR_PARAM, "")
        key = given if _VISITOR_KEY_FORM.fullmatch(given) else secrets.token_urlsafe(18)
        st.session_state[_VISITOR_KEY] = key
    _keep_in_url(VISITOR_PARAM, key)
    return anonymous(key)


# --- codes ----------------------------------------------------------------------------------


def _class_pass(code: str, user: User) -> str:
    return hmac.new(code.encode(), f"class-pass\0{user.id}".encode(), hashlib.sha256).hexdigest()[:32]


def _class_gate(user: User) -> None:
    """Stop the page with a form until this user gave the class code (when one is set)."""
    code = os.environ.get(CLASS_CODE, "")
    if not code:
        return
    expected = _class_pass(code, user)
    given = st.session_state.get(_CLASS_PASS) or st.query_params.get(CLASS_PASS_PARAM, "")
    if _same(given, expected):
        st.session_state[_CLASS_PASS] = expected
        _keep_in_url(CLASS_PASS_PARAM, expected)
        return
    st.title("🙂 FER Lab")
    st.write("This FER Lab is for one class: enter the code your teacher gave you.")
    with st.form("ferlab_class_form", clear_on_submit=True):
        entered = st.text_input("Class code", type="password", key="ferlab_class_code")
        submitted = st.form_submit_button("Enter", type="primary")
    if submitted:
        if _same(entered, code):
            st.session_state[_CLASS_PASS] = expected
            _keep_in_url(CLASS_PASS_PARAM, expected)
            st.rerun()
        time.sleep(_WRONG_CODE_DELAY)
        st.error("That is not the class code: ask your teacher for it.")
    st.stop()


def _leave_teacher_mode() -> None:
    st.session_state.pop(_TEACHER, None)


def _sidebar(user: User, logged_in_user: bool) -> bool:
    """Who you are, log out, and the teacher code; return whether this session is the teacher's."""
    code = os.environ.get(TEACHER_CODE, "")
    teacher = bool(code) and st.session_state.get(_TEACHER) is True
    box = st.sidebar.container(border=True)
    box.caption("You are")
    box.text(user.name)
    if logged_in_user:
        box.button("Log out", key="ferlab_logout", on_click=st.logout)
    else:
        box.caption(
            "This tab's address is who you are: bookmark it to find your runs again, and do not share it."
        )
    if not code:
        return False
    with box.expander("Teacher", expanded=False):
        if teacher:
            st.caption("Teacher mode: you manage every run.")
            st.button("Leave teacher mode", key="ferlab_teacher_leave", on_click=_leave_teacher_mode)
            return True
        with st.form("ferlab_teacher_form", clear_on_submit=True):
            entered = st.text_input("Teacher code", type="password", key="ferlab_teacher_code")
            submitted = st.form_submit_button("Unlock")
        if submitted:
            if _same(entered, code):
                st.session_state[_TEACHER] = True
                st.rerun()  # redraw the sidebar and the page as the teacher
            time.sleep(_WRONG_CODE_DELAY)
            st.error("That is not the teacher code.")
    return False


def setup() -> User:
    """This session's user, after any login screen and class-code form (which stop the page)."""
    if not hosted():
        user = LOCAL_USER
    else:
        account = _login_user()
        user = account or _visitor()
        _class_gate(user)
        user = replace(user, is_teacher=_sidebar(user, logged_in_user=account is not None))
    st.session_state[_USER] = user
    return user


def known_user() -> User | None:
    """The user :func:`setup` found for this session, or None when it has not found one yet."""
    user = st.session_state.get(_USER)
    return user if isinstance(user, User) else None


def current_user() -> User:
    """The user :func:`setup` found for this session (it runs it if no page did)."""
    user = st.session_state.get(_USER)
    return user if isinstance(user, User) else setup()


# --- uploads and user text ------------------------------------------------------------------


def count_upload(file_id: str, size: int) -> None:
    """Count an uploaded file against this session's upload quota (hosted only).

    Each file counts once, however many reruns find it in its uploader. Raises
    :class:`fertools.users.QuotaError` (one sentence) when it would go over.
    """
    if not hosted():
        return
    counted: dict[str, int] = st.session_state.setdefault(_UPLOADED, {})
    if file_id in counted:
        return
    Quotas.from_env().check_upload(sum(counted.values()), int(size))
    counted[file_id] = int(size)


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*\[\]{}()<>#|~$:&!])")
#: An underscore between letters or digits is no emphasis in CommonMark: file_name.csv stays as is.
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def literal(text: object) -> str:
    """``text`` (a run name, a file name: anything a user typed) as Markdown that shows it literally.

    Markdown, HTML, LaTeX (``$``) and Streamlit's ``:colour[...]`` directives are escaped with
    backslashes; the text becomes one line, since a line break would start a new Markdown block.
    """
    line = " ".join(str(text).split())
    line = _EMPHASIS_UNDERSCORE.sub(r"\\_", _MARKDOWN_PUNCTUATION.sub(r"\\\1", line))
    # A leading "-", "+" or "1." would make the line a list item.
    return re.sub(r"^(\d*)([-+.])", r"\1\\\2", line) if re.match(r"^(-|\+|\d+\.)", line) else line
