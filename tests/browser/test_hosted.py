"""A hosted classroom in the browser: a visitor stays themselves across page switches and refreshes,
and another browser is another user who sees none of the first one's work."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from fertools import data

from .conftest import TINY_DATASET, VIEWPORT, App, serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hosted_url(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hosted")
    folders = {name: root / name for name in ("runs", "data", "cache")}
    for folder in folders.values():
        folder.mkdir()
    data.save_npz(data.load_builtin(n_per_class=5, seed=3), folders["data"] / TINY_DATASET)
    with serve(folders, root, FERLAB_HOSTED="1") as url:
        yield url


def visitor(app: App) -> str:
    [key] = parse_qs(urlparse(app.page.url).query)["visitor"]
    return key


def student(browser, url: str, tmp_path: Path, name: str) -> App:
    context = browser.new_context(viewport=VIEWPORT, base_url=url)
    context.grant_permissions(["camera"], origin=url)
    context.set_default_timeout(30_000)
    folder = tmp_path / name
    folder.mkdir()
    return App(context.new_page(), folder)


def test_a_visitor_keeps_their_identity_and_their_faces_are_theirs(browser, hosted_url, tmp_path):
    alice = student(browser, hosted_url, tmp_path, "alice")
    try:
        _visit(browser, hosted_url, tmp_path, alice)
    except BaseException:
        alice.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"failure screenshot: {tmp_path / 'failure.png'}")
        raise
    finally:
        alice.page.context.close()


def _visit(browser, hosted_url: str, tmp_path: Path, alice: App) -> None:
    alice.goto("/", "hands-on lab", timeout_s=180)
    key = visitor(alice)

    # A page switch through the sidebar keeps the visitor key in the address.
    alice.page.locator('[data-testid="stSidebarNav"] a').filter(has_text="My faces").click()
    alice.wait("No faces yet", timeout_s=120)
    assert visitor(alice) == key

    alice.page.locator('[data-testid="stRadio"]').get_by_text("happy", exact=True).click()
    alice.wait()
    alice.page.get_by_role("button", name="Take Photo").click()
    alice.wait("Added as happy", timeout_s=120)

    # A refresh is a new Streamlit session; the address brings the same user, and their album.
    alice.page.reload()
    alice.wait("Your album: 1 face", timeout_s=120)
    assert visitor(alice) == key

    # Another browser on the bare address is another user: no album, another key.
    bob = student(browser, hosted_url, tmp_path, "bob")
    bob.goto("/My_faces", "No faces yet", timeout_s=120)
    assert visitor(bob) != key
    assert "Your album: 0 faces" in bob.text()
    bob.page.context.close()
