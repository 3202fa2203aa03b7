"""Every page loads in a real browser, finishes its script run and shows no exception."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

#: (URL path, a text the page shows once its script has run, screenshot name, a docs picture?).
#: Photo, Train and Webcam get richer docs pictures from their own tests.
PAGES = [
    ("/", "Getting FER2013", "home", True),
    ("/Dataset", "Download .npz", "dataset", True),
    ("/Augmentation", "random augmentations of it", "augmentation", True),
    ("/Train", "Sweep: batch size", "train_page", False),
    ("/Photo", "Raw results", "photo_page", False),
    ("/Webcam", "the readout appears here", "webcam_page", False),
]


@pytest.mark.parametrize(("path", "text", "name", "docs"), PAGES, ids=[name for _, _, name, _ in PAGES])
def test_page_loads_without_exception(app, path: str, text: str, name: str, docs: bool) -> None:
    # The first visit to a page loads TensorFlow, the model or the built-in set: minutes on a busy CPU.
    app.goto(path, text, timeout_s=180)
    app.page.mouse.move(0, 0)  # no hover effects in the picture
    shot = app.screenshot(name, docs=docs)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
