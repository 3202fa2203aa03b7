"""Streamlit helpers shared by the app's pages (session state, cached loaders, sidebar)."""
