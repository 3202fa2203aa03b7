"""The Evaluate page: a click on a confusion-matrix cell opens that cell's faces (only a browser clicks)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

#: The page coordinates of a cell's centre: Plotly's axes map a category index to pixels.
CELL_CENTRE = """([column, row]) => {
    const chart = document.querySelector(".js-plotly-plot");
    const box = chart.getBoundingClientRect();
    const xaxis = chart._fullLayout.xaxis, yaxis = chart._fullLayout.yaxis;
    return [box.left + xaxis._offset + xaxis.c2p(column), box.top + yaxis._offset + yaxis.c2p(row)];
}"""


def test_clicking_a_cell_opens_its_faces(app) -> None:
    page = app.page
    # The server's session starts on the built-in set (it has test and validation splits) and the shipped model.
    app.goto("/Evaluate", "Confusion matrix", timeout_s=180)
    assert re.search(r"Accuracy\s*\d+\.\d%", app.text())
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    (traces,) = app.plotly_charts()
    assert [trace["type"] for trace in traces] == ["heatmap", "scatter"]
    app.screenshot("evaluate")

    for true, predicted in (("fear", "surprise"), ("happy", "happy")):
        chart = page.locator(".js-plotly-plot").first
        chart.scroll_into_view_if_needed()
        x, y = page.evaluate(CELL_CENTRE, [classes.index(predicted), classes.index(true)])
        page.mouse.click(x, y)
        page.wait_for_timeout(500)  # the rerun the click starts
        app.wait()
        what = "correctly classified" if true == predicted else f"predicted as {predicted}"
        # The pickers under the matrix now name the clicked cell, and its faces are shown.
        text = app.text()
        assert f"{true} face(s) {what}" in text or f"No {true} face was {what}." in text
    assert page.locator('[data-testid="stImage"] img').count() >= 1  # the shipped model finds happy faces
    page.locator('[data-testid="stImage"]').first.scroll_into_view_if_needed()
    app.screenshot("evaluate_cell", docs=False)
