"""The Quiz page: a student plays a whole quiz in the browser and sees their score beside the model's."""

from __future__ import annotations

import re

import pytest

from fertools import quiz
from fertools.data import load_builtin
from fertools.stats import upscale

pytestmark = pytest.mark.browser


def test_a_quiz_played_in_the_browser(app) -> None:
    page = app.page
    # The server's session starts on the built-in set; quiz 1 of 10 faces is the library's draw.
    drawn = quiz.draw(load_builtin(), 10, seed=1)
    app.goto("/Quiz", "Start the quiz", timeout_s=180)
    assert "Faces from the test split, held out from training." in app.text()
    page.get_by_role("button", name=re.compile("Start the quiz")).click()

    for position in range(10):
        app.wait(f"Face {position + 1} of 10")
        if position == 0:
            face = page.locator('[data-testid="stImage"] img').first
            side = upscale(load_builtin().images[drawn.rows[0]], 6).shape[0]
            assert face.evaluate("img => img.complete && img.naturalWidth") == side  # 288 px, square pixels
            app.screenshot("quiz")
        # Seven right, then three wrong.
        name = (
            drawn.truth[position]
            if position < 7
            else next(c for c in drawn.classes if c != drawn.truth[position])
        )
        page.get_by_role("button", name=re.compile(rf"\b{name}$")).click()

    app.wait("Quiz 1 done: 10 faces", timeout_s=180)  # the model loads now: a while on a busy CPU
    metrics = {
        label.inner_text(): value.inner_text()
        for label, value in zip(
            page.locator('[data-testid="stMetricLabel"]').all(),
            page.locator('[data-testid="stMetricValue"]').all(),
        )
    }
    assert metrics["You"] == "70%"
    assert re.fullmatch(r"\d+%", metrics["The model"])
    assert "about 65% of the time" in app.text()
    assert "Where someone disagrees with the label" in app.text()
    assert page.locator('[data-testid="stImage"] img').count() >= 3  # at least your three mistakes
    app.page.mouse.move(0, 0)
    app.screenshot("quiz_results", docs=False)

    page.get_by_role("button", name=re.compile("New faces")).click()
    app.wait("Face 1 of 10")
