"""The My faces page in a browser: snapshots from the (fake) camera go into the album."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_camera_snapshots_are_recorded_into_the_album(app) -> None:
    page = app.page
    app.goto("/My_faces", "No faces yet", timeout_s=180)
    # Chromium's fake camera plays a synthetic happy face (see conftest.py).
    page.locator('[data-testid="stRadio"]').get_by_text("happy", exact=True).click()
    app.wait()
    take = page.get_by_role("button", name="Take Photo")
    take.wait_for(timeout=60_000)
    take.click()
    app.wait("Added as happy", timeout_s=120)
    assert "Your album: 1 face" in app.text()
    assert "The model in use reads it as" in app.text()
    app.screenshot("my_faces")

    # A second snapshot with another label: the album grows, the counts follow.
    page.get_by_role("button", name="Clear photo").click()
    app.wait()
    page.locator('[data-testid="stRadio"]').get_by_text("surprise", exact=True).click()
    app.wait()
    page.get_by_role("button", name="Take Photo").click()
    app.wait("Added as surprise", timeout_s=120)
    assert "Your album: 2 faces" in app.text()
    assert "happy 1" in app.text() and "surprise 1" in app.text()

    page.get_by_role("button", name="Delete my album").click()
    app.wait("No faces yet")
