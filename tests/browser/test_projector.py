"""Projector mode in the browser: bigger text on every page, kept across page switches."""

from __future__ import annotations

import pytest

from ui.projector import FONT_PX

pytestmark = pytest.mark.browser


def root_font_px(app) -> float:
    return app.page.evaluate("() => parseFloat(getComputedStyle(document.documentElement).fontSize)")


def test_projector_mode_enlarges_the_page_and_survives_a_page_switch(app) -> None:
    page = app.page
    app.goto("/Photo", "Raw results", timeout_s=180)
    normal = root_font_px(app)
    title = page.locator("h1").first.bounding_box()["height"]
    page.locator('[data-testid="stSidebar"]').get_by_text("Projector mode").click()
    app.wait("Raw results", timeout_s=120)
    assert root_font_px(app) == FONT_PX > normal
    assert page.locator("h1").first.bounding_box()["height"] > 1.2 * title
    app.screenshot("projector")

    page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Quiz").click()
    app.wait(timeout_s=120)
    assert root_font_px(app) == FONT_PX
