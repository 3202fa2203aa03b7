"""The Photo page: an uploaded photo comes back annotated, with each face's probabilities."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import pytest

from fertools.constants import DEFAULT_MODEL_DIR
from fertools.modelcard import read_card
from fertools.samples import sample_photo

pytestmark = pytest.mark.browser


def test_uploaded_photo_shows_faces_and_probabilities(app, tmp_path: Path) -> None:
    classes = list(read_card(DEFAULT_MODEL_DIR).classes)
    photo = tmp_path / "portrait.jpg"
    assert cv2.imwrite(str(photo), sample_photo("sad", seed=1))

    app.goto("/Photo", "Raw results", timeout_s=180)
    app.page.get_by_text("Upload a photo", exact=True).click()
    app.wait("Upload a photo, or switch to a sample picture")
    assert not app.page.get_by_text(re.compile(r"^Face 1:")).count()  # the sample's results are gone

    app.page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    app.wait("face(s) in 640×480 pixels", timeout_s=120)
    assert "1 face(s) in 640×480 pixels" in app.text()  # the portrait has one face

    heading = app.page.get_by_role("heading", name=re.compile(r"^Face 1: ")).first.inner_text()
    match = re.fullmatch(r"Face 1: (\w+) \((\d+)%\)", heading.strip())
    assert match, heading
    label, percent = match.group(1), int(match.group(2))
    assert label in classes
    assert 100 / len(classes) <= percent + 1 <= 101  # the top class has at least an even share

    # The annotated photo, the 48x48 crop and its Grad-CAM, all actually loaded.
    images = app.page.locator('[data-testid="stImage"] img')
    assert images.count() >= 3
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(3))

    # The probability bars: one per class in the card's order, labelled with percentages.
    bars = app.page.locator('[data-testid="stProgress"]')
    assert bars.count() == len(classes)
    labels = [bars.nth(i).inner_text().split() for i in range(len(classes))]
    assert [name for name, _ in labels] == classes
    shares = [int(share.rstrip("%")) for _, share in labels]
    assert 100 - len(classes) <= sum(shares) <= 100 + len(classes)  # each rounded to a percent
    assert (label, percent) in [(name, int(share.rstrip("%"))) for name, share in labels]
    values = [
        float(bars.nth(i).get_by_role("progressbar").get_attribute("aria-valuenow"))
        for i in range(len(classes))
    ]
    assert all(abs(value - share) <= 1 for value, share in zip(values, shares))  # Streamlit truncates
    assert bars.nth(classes.index(label)).locator("strong").inner_text() == label  # the top class in bold

    app.page.mouse.move(0, 0)
    app.screenshot("photo")
