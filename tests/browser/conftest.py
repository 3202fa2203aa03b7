"""Browser fixtures: one real ``streamlit run app.py`` server and one headless Chromium per session.

The server runs with its own runs, data and cache folders (temporary) and
``FERLAB_MAX_JOBS=1``; its data folder holds ``tiny.npz``, a small built-in set
that trains in seconds. Chromium is Debian's ``/usr/bin/chromium`` (Playwright's
own browsers are never downloaded), started with a fake camera that plays a
synthetic face the Haar detector finds.

Set ``FERLAB_SCREENSHOTS=<folder>`` to also save each test's screenshots there
(the docs' pictures come from ``FERLAB_SCREENSHOTS=docs/screenshots``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: The name of the small dataset the server finds in its data folder (see ``tiny_dataset``).
TINY_DATASET = "tiny.npz"
#: Viewport of every page, and so the size of the docs' screenshots.
VIEWPORT = {"width": 1280, "height": 900}
#: Seconds the server may take to answer its health check (TensorFlow-free, but a busy CPU).
SERVER_START_S = 90
#: Streamlit shows this icon in the top bar while a script (or a fragment) runs.
RUNNING = '[data-testid="stStatusWidgetRunningIcon"]'
#: Grey placeholders of elements whose code or content is still loading (sliders, iframes...).
SKELETON = '[data-testid="stSkeleton"], [data-testid="stSkeletonElement"], [data-testid="stAppSkeleton"]'
#: JavaScript that lists each ``.js-plotly-plot`` element's traces (see :meth:`App.plotly_charts`).
PLOTLY_TRACES = """() => {
    const list = (values) => (values == null ? [] : Array.from(values));
    return Array.from(document.querySelectorAll(".js-plotly-plot")).map((chart) =>
        (chart._fullData || chart.data || []).map((trace) => ({
            name: trace.name ?? null,
            type: trace.type ?? null,
            x: list(trace.x),
            y: list(trace.y),
            text: list(trace.text),
        }))
    );
}"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except (OSError, urllib.error.URLError):
        return False


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _stop_workers(runs: Path) -> None:
    # NOTE: training workers run in their own session (they outlive a server on purpose), so
    # killing the server's group misses them; stop those whose command line names our runs folder.
    for job in runs.glob("*/job.json"):
        match = re.search(r'"pid":\s*(\d+)', job.read_text())
        if not match:
            continue
        pid = int(match.group(1))
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # already gone
        if str(job.parent).encode() in command:
            os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def ferlab_server_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The server's runs, data and cache folders; the data folder holds ``TINY_DATASET``."""
    from fertools import data

    root = tmp_path_factory.mktemp("ferlab_server")
    folders = {name: root / name for name in ("runs", "data", "cache")}
    for folder in folders.values():
        folder.mkdir()
    # 30 faces per class: 168 to train on, so an epoch of the default CNN takes seconds.
    data.save_npz(data.load_builtin(n_per_class=30, seed=3), folders["data"] / TINY_DATASET)
    return folders


@pytest.fixture(scope="session")
def tiny_dataset(ferlab_server_dirs: dict[str, Path]) -> Path:
    """The small dataset in the server's data folder; the Dataset page lists it by file name."""
    return ferlab_server_dirs["data"] / TINY_DATASET


@contextlib.contextmanager
def serve(folders: dict[str, Path], log_dir: Path, **extra_env: str) -> Iterator[str]:
    """Run ``streamlit run app.py`` on a free loopback port with ``folders``; yield its base URL.

    ``extra_env`` adds settings (``FERLAB_HOSTED="1"``...). On exit the server's process group
    and the training workers it started are stopped.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FERLAB_RUNS_DIR": str(folders["runs"]),
        "FERLAB_DATA_DIR": str(folders["data"]),
        "FERLAB_CACHE_DIR": str(folders["cache"]),
        "FERLAB_MAX_JOBS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    env.pop("FERLAB_ICE_SERVERS", None)  # localhost needs no STUN server
    log_path = log_dir / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        # Its own process group, so teardown stops the server and anything it spawned, and only that.
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if server.poll() is not None:
                pytest.fail(
                    f"streamlit exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit did not answer within {SERVER_START_S} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        _stop_group(server)
        _stop_workers(folders["runs"])


@pytest.fixture(scope="session")
def streamlit_url(
    ferlab_server_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of a ``streamlit run app.py`` server started for this session."""
    with serve(ferlab_server_dirs, tmp_path_factory.mktemp("streamlit_log")) as url:
        yield url


def _fake_camera(folder: Path) -> Path:
    """A Y4M video of a synthetic face (the Haar detector finds it) for Chromium's fake camera."""
    from fertools.webcam import demo_frame, write_y4m

    path = folder / "face.y4m"
    # A few frames, looped by Chromium: the face is still, as it would be in front of a webcam.
    write_y4m(path, [demo_frame("happy", seed=0)] * 10, fps=30)  # a laptop camera's rate
    return path


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Debian Chromium with a fake camera; skipped (failed on CI) when it is missing."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    fake_camera = _fake_camera(tmp_path_factory.mktemp("camera"))
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-quic",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={fake_camera}",
            ],
        )
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Keep each phase's report on the test, so the page fixture knows whether the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, streamlit_url: str, request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh browser tab (its own Streamlit session) at 1280x900; camera allowed for the server.

    When the test fails, the tab is saved as ``failure.png`` in the test's tmp folder.
    """
    context = browser.new_context(viewport=VIEWPORT, base_url=streamlit_url)
    context.grant_permissions(["camera"], origin=streamlit_url)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        tab.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"failure screenshot: {tmp_path / 'failure.png'}")
    context.close()


class App:
    """A browser tab on the test server, with the waits and checks every browser test needs.

    ``app.page`` is the Playwright page for anything else.
    """

    def __init__(self, page, shots: Path):
        self.page = page
        self.shots = shots

    def goto(self, path: str, text: str, timeout_s: float = 90) -> None:
        """Open ``path`` (``"/"``, ``"/Train"``...) in a new session and wait until it shows ``text`` and is idle."""
        self.page.goto(path)
        self.wait(text, timeout_s=timeout_s)

    def wait(self, text: str | None = None, timeout_s: float = 90, idle: bool = True) -> None:
        """Wait until ``text`` is on the page and, with ``idle``, the script has stopped running.

        Idle means Streamlit's running icon and every loading placeholder stayed away
        for a whole second: the icon is shown only after a short delay, so one look
        could fall between two runs, and widgets load their code lazily, so a finished
        run can still show grey boxes for a while.
        Pages whose fragments rerun every second (a live run, a live stream) never
        stay idle that long; wait for a text there, with ``idle=False``.
        """
        deadline = time.monotonic() + timeout_s
        if text is not None:
            self.page.get_by_text(text).first.wait_for(state="attached", timeout=timeout_s * 1000)
        quiet_since = None
        while idle:
            now = time.monotonic()
            if self.page.locator(RUNNING).count() or self.page.locator(SKELETON).count():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= 1.0:
                break
            if now > deadline:
                raise AssertionError(f"the page was still running after {timeout_s:.0f} s")
            self.page.wait_for_timeout(100)
        self.assert_no_exception()

    def assert_no_exception(self) -> None:
        """No ``st.exception`` box and no Python traceback anywhere on the page."""
        exceptions = self.page.locator('[data-testid="stException"]')
        if exceptions.count():
            raise AssertionError(f"the page shows an exception:\n{exceptions.first.inner_text()}")
        body = self.page.locator("body").inner_text()
        assert "Traceback" not in body, f"the page shows a traceback:\n{body[-3000:]}"

    def plotly_charts(self) -> list[list[dict]]:
        """Every Plotly chart on the page, as its traces: ``{"name", "type", "x", "y", "text"}`` lists.

        Read from the chart's ``_fullData``, where Plotly has already decoded
        plotly.py's base64 arrays, so ``x`` and ``y`` are plain lists.
        """
        return self.page.evaluate(PLOTLY_TRACES)

    def text(self) -> str:
        return self.page.locator("body").inner_text()

    def screenshot(self, name: str, docs: bool = True) -> Path:
        """Save the viewport as ``<name>.png`` in the test's tmp folder; with ``docs``, in ``$FERLAB_SCREENSHOTS`` too."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        extra = os.environ.get("FERLAB_SCREENSHOTS")
        if extra and docs:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / path.name)
        return path


@pytest.fixture
def app(page, tmp_path: Path) -> App:
    """The :class:`App` driver on a fresh tab."""
    return App(page, tmp_path)
