"""FER Lab: the router and the frame every page shares (``streamlit run app.py``)."""

from __future__ import annotations

import streamlit as st

from ui import frame
from ui.pages import PAGES

st.set_page_config(page_title="FER Lab", page_icon="🙂", layout="wide")
page = st.navigation(
    [
        st.Page(
            entry.path,
            title=entry.title,
            icon=entry.icon,
            url_path="" if entry.path == "app_pages/home.py" else entry.title.replace(" ", "_"),
            default=entry.path == "app_pages/home.py",
        )
        for entry in PAGES
    ]
)
frame.run(page)
