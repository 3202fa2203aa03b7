"""Load test of a hosted FER Lab: N students on the Photo page at once (a tool, not a test).

Run it from the repository root, on a machine nobody else is measuring on::

    python tools/loadtest.py --students 1 4 8 16 --uploads 5 --train --json out.json

It starts its own server, ``FERLAB_HOSTED=1 python -m streamlit run app.py`` on a free
loopback port with temporary runs, data and cache folders (nothing leaves 127.0.0.1), and
stops it, the browser and every training worker at the end, whatever happens. With
``--train`` it first queues one long training in the server's runs folder (as the Train page
would), so the students share the CPU with it, and cancels it at the end.

A warm-up visitor first opens the page and uploads once (the cold start: loading the model,
converting it to LiteRT). Then, for each N, N headless Chromium contexts (N Streamlit
sessions) open ``/Photo``, all at once or, with ``--arrival S``, one after another over S
seconds; when all have opened, each uploads a generated one-face portrait ``--uploads`` times,
one after another, waiting for each result and for the script run to end; then each moves to
Home and back to Photo through the sidebar. Per N it reports:

- first visit: navigation to ``/Photo`` until the page's first script run has finished
  (p50 / p95): the browser loads the whole app, as on a student's first visit; and the
  server's part of it, from the app's WebSocket handshake until the last script run of the
  visit ended, both on the browser's network clock (what a student's own laptop would wait
  for beyond loading the app itself);
- page view: a sidebar click until that page's script run has finished (p50 / p95);
- result: setting the file until the annotated picture (the ``st.image`` captioned
  "face(s) in") is shown and loaded (p50 / p95); the JSON also has ``done``, until the whole
  script run (Grad-CAM, probability bars) has finished, and the server's part of that: the
  photo's upload request until the run ended, on the browser's network clock;
- errors: an exception box, an ``st.error``, "No face found", a connection error or a timeout;
- the server's peak RSS (``VmRSS`` of the server process, its threads included, sampled every
  0.25 s while N runs), its CPU-seconds (utime + stime) per page open and per upload, and
  the CPU-seconds of all the Chromium processes over the whole N.

The browsers run on the same machine as the server, so with many students their CPU is part
of the latencies (not of the server's CPU-seconds). ``--max-minutes`` (default 20) bounds the
whole run: when it is spent the script stops cleanly and reports what it has (a cut row is
marked); Ctrl-C or SIGTERM stop it cleanly too, with the rows of the N already finished.
Exit code 0 when every upload succeeded, 1 otherwise, 2 for a bad option or a server or
browser that cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import inspect
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make fertools importable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers have a small /dev/shm
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
#: The students' browsers ask for reduced motion (``prefers-reduced-motion``, which Streamlit's
#: skeletons and spinners honour): each real student's animations run on their own laptop, but
#: here sixteen browsers' animations would be billed to the server's two cores. Measured on 16
#: first visits at once: 47.6 browser CPU-seconds with motion, 31.9 without. ``--motion`` keeps it.
REDUCED_MOTION = "reduce"
PHOTO_PAGE = "/Photo"
#: The last element of the Photo page's script run (an expander): the run has finished.
OPENED_TEXT = "Raw results"
UPLOAD_CHOICE = "Upload a photo"
UPLOAD_READY = "Upload a photo, or switch to a sample picture"
RESULT_CAPTION = "face(s) in"
UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'
#: Page views inside the app after the uploads: (sidebar link, text its page shows when drawn).
PAGE_VIEWS = (("Home", "FER Lab"), ("Photo", OPENED_TEXT))
SIDEBAR_LINK = '[data-testid="stSidebarNav"] a'
#: Streamlit shows these while a script runs or elements are still loading (as in tests/browser).
BUSY = (
    '[data-testid="stStatusWidgetRunningIcon"], [data-testid="stSkeleton"], '
    '[data-testid="stSkeletonElement"], [data-testid="stAppSkeleton"]'
)
#: A run counts as finished when nothing was busy for this long (the running icon shows late).
QUIET_MS = 1000
SERVER_START_S = 120
SERVER_STOP_S = 10
#: Per step; the first open of a cold server loads and converts the model.
OPEN_TIMEOUT_S = 240
UPLOAD_TIMEOUT_S = 120
TRAINING_START_S = 180
RSS_SAMPLE_S = 0.25
#: Seconds of --max-minutes kept for the clean-up at the end.
CLEANUP_S = 15
#: Long enough to train through the whole measurement; cancelled at the end.
TRAINING_EPOCHS = 1000

# Everything runs in the page: Playwright polls it there, not over the wire.
IDLE_JS = """([busy, quietMs]) => {
    const now = performance.now();
    if (document.querySelector(busy)) { window.__loadtestQuiet = null; return false; }
    if (window.__loadtestQuiet == null) window.__loadtestQuiet = now;
    const quiet = now - window.__loadtestQuiet;
    return quiet >= quietMs ? quiet : false;
}"""
#: Finds a fresh problem on the page: elements of an earlier script run (``data-stale``) do not count.
ALERTS_JS = """() => {
    const text = (el) => (el.innerText || el.textContent || "").trim().slice(0, 300);
    const fresh = (selector) =>
        Array.from(document.querySelectorAll(selector)).filter((el) => !el.closest('[data-stale="true"]'));
    const exception = fresh('[data-testid="stException"]')[0];
    if (exception) return "exception: " + text(exception);
    const error = fresh('[data-testid="stAlertContentError"]')[0];
    if (error) return "st.error: " + text(error);
    if (fresh('[data-testid="stAlertContentWarning"]').some((el) => text(el).startsWith("No face found")))
        return "no face found";
    const connection = document.querySelector('[data-testid="stConnectionStatus"]');
    if (connection && /error|connecting/i.test(text(connection))) return "connection: " + text(connection);
    return null;
}"""
#: :data:`ALERTS_JS`, and a traceback anywhere (reads the whole page's text: only once a run is over).
PROBLEM_JS = (
    """() => {
    const problem = ("""
    + ALERTS_JS
    + """)();
    if (problem) return problem;
    if (document.body && document.body.innerText.includes("Traceback")) return "traceback on the page";
    return null;
}"""
)
#: The annotated picture of this upload (a fresh ``st.image`` with the caption, a new picture,
#: loaded), or the problem that came instead.
RESULT_JS = (
    """([caption, previous]) => {
    const problem = ("""
    + ALERTS_JS
    + """)();
    if (problem) return {problem};
    for (const box of document.querySelectorAll('[data-testid="stImage"]')) {
        if (box.closest('[data-stale="true"]')) continue;
        const label = box.querySelector('[data-testid="stImageCaption"]');
        const img = box.querySelector("img");
        if (label && img && (label.textContent || "").includes(caption) && img.src !== previous
            && img.complete && img.naturalWidth > 0) return {src: img.src};
    }
    return false;
}"""
)
#: The remove button of the uploaded file, to clear the page after a problem.
REMOVE_FILE = '[data-testid="stFileChipDeleteBtn"] button, button[data-testid="stFileChipDeleteBtn"]'
#: Seconds to clear the page after a problem before the next upload.
RESET_TIMEOUT_S = 60


class BudgetSpent(Exception):
    """The --max-minutes budget is spent: stop cleanly and report."""


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, step_s: float) -> float:
        """Seconds a step may wait: its own limit, or what the budget has left."""
        left = self.left()
        if left <= 0:
            raise BudgetSpent
        return min(step_s, left)


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except (OSError, urllib.error.URLError):
        return False


def proc_rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` (all its threads share it) in MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of ``pid`` (every thread's) in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``streamlit run app.py`` in its own process group, with temporary FERLAB_* folders."""

    def __init__(self, folder: Path, hosted: bool = True):
        self.folders = {name: folder / name for name in ("runs", "data", "cache")}
        for path in self.folders.values():
            path.mkdir()
        self.log_path = folder / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.hosted = hosted

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, deadline: Deadline) -> None:
        env = {
            **os.environ,
            "FERLAB_HOSTED": "1" if self.hosted else "0",
            "FERLAB_RUNS_DIR": str(self.folders["runs"]),
            "FERLAB_DATA_DIR": str(self.folders["data"]),
            "FERLAB_CACHE_DIR": str(self.folders["cache"]),
            "FERLAB_MAX_JOBS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("FERLAB_ICE_SERVERS", None)
        command = [
            sys.executable, "-m", "streamlit", "run", "app.py",
            "--server.port", str(self.port),
            "--server.address", "127.0.0.1",
            "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            # NOTE: its own process group, so stop() ends the server and all it spawned, and only that.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        limit = time.monotonic() + deadline.timeout(SERVER_START_S)
        while not healthy(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > limit:
                raise RuntimeError(f"streamlit did not answer its health check in time:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        """Lines of the server log that report a failure (the page boundary logs each with a reference)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        # Tracebacks (Streamlit's and the frame's), and the frame's one line per failed page run.
        return [line for line in lines if re.search(r"Traceback|failed \(reference", line)]

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL what is left; then any worker in its runs folder."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=SERVER_STOP_S)
        stop_workers(self.folders["runs"])


def stop_workers(runs: Path) -> None:
    # NOTE: training workers run in their own session (they outlive a server on purpose), so the
    # server's group misses them: kill the group of every pid a run folder names whose command
    # line names that folder (a reused pid belongs to someone else).
    for run_dir in runs.iterdir() if runs.is_dir() else []:
        pids = set()
        for name in ("job.json", "status.json"):
            with contextlib.suppress(OSError):
                pids.update(int(pid) for pid in re.findall(r'"pid":\s*(\d+)', (run_dir / name).read_text()))
        for pid in pids:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # already gone
            if str(run_dir).encode() in command:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


# --- the training beside the students ----------------------------------------------------------


def start_training(runs: Path) -> str:
    """Queue one long training of the default network on the built-in data in ``runs``."""
    from fertools import data, jobs
    from fertools.config import TrainConfig

    extra = {}
    owner = inspect.signature(jobs.submit).parameters.get("owner")
    if owner is not None and owner.default is inspect.Parameter.empty:
        extra["owner"] = "loadtest"  # a required owner (hosted quotas): name this tool
    config = TrainConfig(epochs=TRAINING_EPOCHS, batch_size=64)
    os.environ["FERLAB_MAX_JOBS"] = "1"  # the worker reads it; the server has the same
    return jobs.submit(data.load_builtin(), config, "load test", "built-in", root=runs, **extra)


def training_state(runs: Path, run_id: str) -> dict:
    from fertools import jobs

    try:
        info = jobs.get_run(run_id, root=runs)
    except (OSError, ValueError) as error:
        return {"state": "unknown", "reason": str(error)}
    progress = info.progress or {}
    return {
        "state": info.state,
        "phase": (info.run.read_status() or {}).get("phase", ""),
        "epoch": progress.get("epoch"),
        "reason": info.reason,
    }


def wait_training(runs: Path, run_id: str, deadline: Deadline) -> dict:
    """Wait until the worker is past loading TensorFlow and the data, and trains."""
    limit = time.monotonic() + deadline.timeout(TRAINING_START_S)
    while True:
        state = training_state(runs, run_id)
        if (state["state"] != "queued" and state.get("phase") != "loading") or time.monotonic() > limit:
            return state
        time.sleep(1)


def stop_training(runs: Path, run_id: str) -> None:
    from fertools import jobs

    with contextlib.suppress(OSError, ValueError):
        jobs.cancel(run_id, root=runs)
    jobs.stop_children(timeout=30)


# --- one student --------------------------------------------------------------------------------


@dataclass
class Student:
    """What one browser context measured: seconds, and the errors it saw."""

    open_s: float | None = None
    #: The server's part of ``open_s``: the app's WebSocket handshake until its last script run ended.
    server_open_s: float | None = None
    view_s: list[float] = field(default_factory=list)
    result_s: list[float] = field(default_factory=list)
    done_s: list[float] = field(default_factory=list)
    #: The server's part of each ``done_s``: the photo's upload request until that run ended.
    server_done_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cut: bool = False  # the budget ran out before it finished


class SocketClock:
    """When the page's Streamlit WebSocket opened and when each script run ended, on the
    browser's network clock (DevTools' ``Network`` events): the server's part of a visit,
    apart from the browser's loading and drawing of the app on these shared cores."""

    def __init__(self):
        self.opened: float | None = None
        self.uploads: list[float] = []
        self.finished: list[float] = []

    async def attach(self, context, page) -> None:
        session = await context.new_cdp_session(page)
        session.on("Network.webSocketWillSendHandshakeRequest", self._handshake)
        session.on("Network.webSocketFrameReceived", self._frame)
        session.on("Network.requestWillBeSent", self._request)
        await session.send("Network.enable")

    def _handshake(self, event: dict) -> None:
        if self.opened is None:
            self.opened = event["timestamp"]

    def _request(self, event: dict) -> None:
        request = event["request"]
        if request["method"] == "PUT" and "/_stcore/upload_file/" in request["url"]:
            self.uploads.append(event["timestamp"])

    def _frame(self, event: dict) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        response = event["response"]
        if response.get("opcode") != 2:  # Streamlit's messages are binary frames
            return
        message = ForwardMsg()
        with contextlib.suppress(Exception):  # not a ForwardMsg: not ours to time
            message.ParseFromString(base64.b64decode(response["payloadData"]))
            if message.WhichOneof("type") == "script_finished":
                self.finished.append(event["timestamp"])

    def server_s(self) -> float | None:
        """Handshake until the last script run that has ended so far."""
        if self.opened is None or not self.finished:
            return None
        return self.finished[-1] - self.opened

    def upload_s(self) -> float | None:
        """The latest upload request until the last script run that has ended since."""
        if not self.uploads or not self.finished or self.finished[-1] < self.uploads[-1]:
            return None
        return self.finished[-1] - self.uploads[-1]


async def wait_idle(page, timeout_s: float) -> float:
    """Wait until the script run has finished; return how long ago it did (seconds)."""
    await page.evaluate("() => { window.__loadtestQuiet = null; }")
    handle = await page.wait_for_function(
        IDLE_JS, arg=[BUSY, QUIET_MS], polling=100, timeout=timeout_s * 1000
    )
    return float(await handle.json_value()) / 1000


async def check_page(page) -> str | None:
    return await page.evaluate(PROBLEM_JS)


async def open_photo(context, url: str, student: Student, deadline: Deadline):
    """Open the Photo page and switch it to uploads; ``student.open_s`` is the first run's time.

    Returns the page with its :class:`SocketClock`, or None after a problem."""
    from playwright.async_api import Error as PlaywrightError

    page = await context.new_page()
    clock = SocketClock()
    try:
        await clock.attach(context, page)
        started = time.monotonic()
        await page.goto(f"{url}{PHOTO_PAGE}", timeout=deadline.timeout(OPEN_TIMEOUT_S) * 1000)
        await page.get_by_text(OPENED_TEXT).first.wait_for(
            state="attached", timeout=deadline.timeout(OPEN_TIMEOUT_S) * 1000
        )
        quiet = await wait_idle(page, deadline.timeout(OPEN_TIMEOUT_S))
        student.open_s = time.monotonic() - started - quiet
        student.server_open_s = clock.server_s()
        if problem := await check_page(page):
            student.errors.append(f"open: {problem}")
            return None
        await page.get_by_text(UPLOAD_CHOICE, exact=True).click(
            timeout=deadline.timeout(OPEN_TIMEOUT_S) * 1000
        )
        await page.get_by_text(UPLOAD_READY).first.wait_for(
            state="attached", timeout=deadline.timeout(OPEN_TIMEOUT_S) * 1000
        )
        await wait_idle(page, deadline.timeout(OPEN_TIMEOUT_S))
        return page, clock
    except BudgetSpent:
        student.cut = True
    except PlaywrightError as error:  # TimeoutError is one
        if deadline.left() <= 0:
            student.cut = True
        else:
            student.errors.append(f"open: {_first_line(error)}")
    return None


async def upload_photos(opened, photos: list[Path], student: Student, deadline: Deadline) -> None:
    """Upload each photo in turn; time each to its annotated picture and to the run's end.

    After a problem the file is removed and the page awaited back at its upload prompt, so
    that the next upload does not see the old problem (or an old picture) as its own.
    """
    from playwright.async_api import Error as PlaywrightError

    page, clock = opened
    previous = None
    for photo in photos:
        try:
            started = time.monotonic()
            await page.locator(UPLOAD_INPUT).set_input_files(
                str(photo), timeout=deadline.timeout(UPLOAD_TIMEOUT_S) * 1000
            )
            handle = await page.wait_for_function(
                RESULT_JS,
                arg=[RESULT_CAPTION, previous],
                polling=50,
                timeout=deadline.timeout(UPLOAD_TIMEOUT_S) * 1000,
            )
            shown = time.monotonic() - started
            outcome = await handle.json_value()
            if "problem" in outcome:
                student.errors.append(f"upload: {outcome['problem']}")
                await reset_upload(page, deadline)
                continue
            previous = outcome["src"]
            quiet = await wait_idle(page, deadline.timeout(UPLOAD_TIMEOUT_S))
            done = time.monotonic() - started - quiet
            if problem := await check_page(page):
                student.errors.append(f"upload: {problem}")
                await reset_upload(page, deadline)
                continue
            student.result_s.append(shown)
            student.done_s.append(done)
            if (server_s := clock.upload_s()) is not None:
                student.server_done_s.append(server_s)
        except BudgetSpent:
            student.cut = True
            return
        except PlaywrightError as error:
            if deadline.left() <= 0:
                student.cut = True
                return
            student.errors.append(f"upload: {_first_line(error)}")
            with contextlib.suppress(PlaywrightError, BudgetSpent):
                await reset_upload(page, deadline)


async def reset_upload(page, deadline: Deadline) -> None:
    """Remove the uploaded file and wait for the page's upload prompt and the end of its run."""
    timeout_s = min(RESET_TIMEOUT_S, deadline.left())
    await wait_idle(page, deadline.timeout(timeout_s))
    remove = page.locator(REMOVE_FILE)
    if await remove.count():
        await remove.first.click(timeout=deadline.timeout(timeout_s) * 1000)
    await page.get_by_text(UPLOAD_READY).first.wait_for(
        state="attached", timeout=deadline.timeout(timeout_s) * 1000
    )
    await wait_idle(page, deadline.timeout(timeout_s))


async def view_pages(page, student: Student, deadline: Deadline) -> None:
    """Move between pages with the sidebar, as a student does; time each to its run's end.

    The app is already loaded, so a page view costs the browser far less than the first visit.
    """
    from playwright.async_api import Error as PlaywrightError

    for link, shown in PAGE_VIEWS:
        try:
            started = time.monotonic()
            await (
                page.locator(SIDEBAR_LINK)
                .filter(has_text=link)
                .first.click(timeout=deadline.timeout(OPEN_TIMEOUT_S) * 1000)
            )
            await page.get_by_text(shown).first.wait_for(
                state="attached", timeout=deadline.timeout(OPEN_TIMEOUT_S) * 1000
            )
            quiet = await wait_idle(page, deadline.timeout(OPEN_TIMEOUT_S))
            if problem := await check_page(page):
                student.errors.append(f"view {link}: {problem}")
                return
            student.view_s.append(time.monotonic() - started - quiet)
        except BudgetSpent:
            student.cut = True
            return
        except PlaywrightError as error:
            if deadline.left() <= 0:
                student.cut = True
            else:
                student.errors.append(f"view {link}: {_first_line(error)}")
            return


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


# --- one N ----------------------------------------------------------------------------------------


@dataclass
class Row:
    students: int
    opened: int
    open_p50_s: float | None
    open_p95_s: float | None
    server_open_p50_s: float | None
    server_open_p95_s: float | None
    view_p50_s: float | None
    view_p95_s: float | None
    result_p50_s: float | None
    result_p95_s: float | None
    done_p50_s: float | None
    done_p95_s: float | None
    server_done_p50_s: float | None
    server_done_p95_s: float | None
    uploads: int
    uploads_planned: int
    errors: int
    error_messages: list[str]
    peak_rss_mb: float | None
    cpu_s_open: float | None
    cpu_s_per_upload: float | None
    #: CPU-seconds of every Chromium process while this N ran, per page open and upload.
    browser_cpu_s: float | None
    arrival_s: float
    complete: bool
    training: dict | None = None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile in ms-rounded seconds (honest for a handful of samples); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 3)


async def sample_rss(pid: int, peak: list[float]) -> None:
    while True:
        rss = proc_rss_mb(pid)
        if rss is not None:
            peak[0] = max(peak[0], rss)
        await asyncio.sleep(RSS_SAMPLE_S)


def photos_for(folder: Path, student: int, uploads: int) -> list[Path]:
    """``uploads`` different one-face 640x480 JPEGs for one student.

    Different, because each upload must show a new annotated picture to be told from the last
    one, and because the uploader ignores the same file set again.
    """
    import cv2

    from fertools.constants import FER2013_CLASSES
    from fertools.samples import sample_photo

    paths = []
    for upload in range(uploads):
        path = folder / f"student{student}-{upload}.jpg"
        if not path.exists():
            emotion = FER2013_CLASSES[(student + upload) % len(FER2013_CLASSES)]
            if not cv2.imwrite(str(path), sample_photo(emotion, seed=1000 * student + upload)):
                raise RuntimeError(f"could not write {path}")
        paths.append(path)
    return paths


def write_warmup_photo(path: Path) -> None:
    import cv2

    from fertools.samples import sample_photo

    if not cv2.imwrite(str(path), sample_photo("neutral", seed=999_999)):
        raise RuntimeError(f"could not write {path}")


def chromium_cpu_s() -> float:
    """CPU-seconds (utime + stime) of every live Chromium process on this machine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if "chrom" in (entry / "comm").read_text():
                    total += proc_cpu_s(int(entry.name)) or 0.0
    return total


def motion_setting(args) -> str:
    """The contexts' ``reduced_motion``: see :data:`REDUCED_MOTION`."""
    return "no-preference" if args.motion else REDUCED_MOTION


async def measure(
    browser,
    server: Server,
    n: int,
    photos: list[list[Path]],
    deadline: Deadline,
    arrival_s: float = 0.0,
    motion: str = REDUCED_MOTION,
) -> Row:
    """N students: open the Photo page (together, or one every ``arrival_s / n`` seconds), upload
    together once all have opened, then view two pages through the sidebar."""
    students = [Student() for _ in range(n)]
    contexts, peak = [], [proc_rss_mb(server.pid) or 0.0]
    sampler = asyncio.create_task(sample_rss(server.pid, peak))
    cpu_start, browser_start = proc_cpu_s(server.pid), chromium_cpu_s()
    cpu_opened = cpu_end = browser_end = None

    async def arrive(index: int, context, student: Student):
        await asyncio.sleep(index * arrival_s / n)
        return await open_photo(context, server.url, student, deadline)

    try:
        for _ in range(n):
            context = await browser.new_context(viewport=VIEWPORT, reduced_motion=motion)
            context.set_default_timeout(UPLOAD_TIMEOUT_S * 1000)
            contexts.append(context)
        pages = await asyncio.gather(
            *(
                arrive(index, context, student)
                for index, (context, student) in enumerate(zip(contexts, students))
            )
        )
        cpu_opened = proc_cpu_s(server.pid)
        await asyncio.gather(
            *(
                upload_photos(opened, photos[index], students[index], deadline)
                for index, opened in enumerate(pages)
                if opened is not None
            )
        )
        cpu_end = proc_cpu_s(server.pid)
        await asyncio.gather(
            *(
                view_pages(opened[0], students[index], deadline)
                for index, opened in enumerate(pages)
                if opened is not None
            )
        )
        browser_end = chromium_cpu_s()
    finally:
        sampler.cancel()
        for context in contexts:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(context.close(), timeout=10)
    uploads = sum(len(student.result_s) for student in students)
    opens = [student.open_s for student in students if student.open_s is not None]
    server_opens = [s.server_open_s for s in students if s.open_s is not None and s.server_open_s is not None]
    views = [s for student in students for s in student.view_s]
    results = [s for student in students for s in student.result_s]
    done = [s for student in students for s in student.done_s]
    server_done = [s for student in students for s in student.server_done_s]
    messages = [message for student in students for message in student.errors]
    upload_cpu = cpu_end - cpu_opened if cpu_end is not None and cpu_opened is not None else None
    return Row(
        students=n,
        opened=len(opens),
        open_p50_s=percentile(opens, 50),
        open_p95_s=percentile(opens, 95),
        server_open_p50_s=percentile(server_opens, 50),
        server_open_p95_s=percentile(server_opens, 95),
        view_p50_s=percentile(views, 50),
        view_p95_s=percentile(views, 95),
        result_p50_s=percentile(results, 50),
        result_p95_s=percentile(results, 95),
        done_p50_s=percentile(done, 50),
        done_p95_s=percentile(done, 95),
        server_done_p50_s=percentile(server_done, 50),
        server_done_p95_s=percentile(server_done, 95),
        uploads=uploads,
        uploads_planned=n * len(photos[0]) if photos else 0,
        errors=len(messages),
        error_messages=messages,
        peak_rss_mb=round(peak[0], 1) if peak[0] else None,
        cpu_s_open=round(cpu_opened - cpu_start, 2)
        if cpu_opened is not None and cpu_start is not None
        else None,
        cpu_s_per_upload=round(upload_cpu / uploads, 3) if upload_cpu is not None and uploads else None,
        browser_cpu_s=round(browser_end - browser_start, 1) if browser_end is not None else None,
        arrival_s=arrival_s,
        complete=not any(student.cut for student in students),
    )


async def run_all(args, server: Server, photo_folder: Path, deadline: Deadline, report: dict) -> None:
    from playwright.async_api import async_playwright

    photos = [photos_for(photo_folder, index, args.uploads) for index in range(max(args.students))]
    async with async_playwright() as playwright:
        from playwright.async_api import Error as PlaywrightError

        try:
            browser = await playwright.chromium.launch(executable_path=str(args.chromium), args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            raise RuntimeError(f"{args.chromium} did not start: {_first_line(error)}") from None
        try:
            if args.warmup:
                warm = Student()
                context = await browser.new_context(viewport=VIEWPORT, reduced_motion=motion_setting(args))
                try:
                    opened = await open_photo(context, server.url, warm, deadline)
                    if opened is not None:
                        await upload_photos(opened, [photo_folder / "warmup.jpg"], warm, deadline)
                finally:
                    await context.close()
                report["warmup"] = asdict(warm)
                if warm.cut:
                    return
            for n in args.students:
                if deadline.left() <= 0:
                    break
                row = await measure(
                    browser, server, n, photos[:n], deadline, args.arrival, motion_setting(args)
                )
                if report.get("training_run"):
                    row.training = training_state(server.folders["runs"], report["training_run"])
                report["rows"].append(asdict(row))
                print(f"N={n}: {row.uploads} uploads, {row.errors} errors", file=sys.stderr, flush=True)
                if not row.complete:
                    break
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), timeout=20)


# --- the report -----------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    def seconds(value):
        return "–" if value is None else f"{value:.2f}"

    lines = [
        "| students | arrive over (s) | first visit p50 / p95 (s) | server's part p50 / p95 (s) | page view p50 / p95 (s) | "
        "result p50 / p95 (s) | server's part of an upload p50 / p95 (s) | errors | uploads | server peak RSS (MB) | server CPU-s / open | "
        "server CPU-s / upload | browsers' CPU-s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        cut = "" if row["complete"] else " (cut)"
        rss = "–" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}"
        per_open = (
            row["cpu_s_open"] / row["opened"] if row["cpu_s_open"] is not None and row["opened"] else None
        )
        browsers = "–" if row["browser_cpu_s"] is None else f"{row['browser_cpu_s']:.0f}"
        lines.append(
            f"| {row['students']}{cut} | {row['arrival_s']:g} | "
            f"{seconds(row['open_p50_s'])} / {seconds(row['open_p95_s'])} | "
            f"{seconds(row['server_open_p50_s'])} / {seconds(row['server_open_p95_s'])} | "
            f"{seconds(row['view_p50_s'])} / {seconds(row['view_p95_s'])} | "
            f"{seconds(row['result_p50_s'])} / {seconds(row['result_p95_s'])} | "
            f"{seconds(row['server_done_p50_s'])} / {seconds(row['server_done_p95_s'])} | {row['errors']} | "
            f"{row['uploads']} / {row['uploads_planned']} | {rss} | {seconds(per_open)} | "
            f"{seconds(row['cpu_s_per_upload'])} | {browsers} |"
        )
    notes = []
    warm = report.get("warmup")
    if warm:
        notes.append(
            f"Warm-up (cold server, not in the table): page open {seconds(warm['open_s'])} s, "
            f"first result {seconds(warm['result_s'][0] if warm['result_s'] else None)} s."
        )
    if report.get("training_run"):
        notes.append(f"Training beside the students: {report.get('training_start')}.")
    if report.get("stopped"):
        notes.append(f"Stopped early: {report['stopped']}.")
    return "\n".join(lines + ([""] + notes if notes else []))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 4, 8, 16], help="the N to measure")
    parser.add_argument("--uploads", type=int, default=5, help="uploads per student (default 5)")
    parser.add_argument("--train", action="store_true", help="train one model beside the students")
    parser.add_argument(
        "--arrival",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="students arrive one after another over this many seconds (default 0: all at once)",
    )
    parser.add_argument(
        "--motion", action="store_true", help="let the browsers animate (default: reduced motion)"
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--max-minutes", type=float, default=20, help="bound on the whole run (default 20)")
    parser.add_argument(
        "--warmup", action=argparse.BooleanOptionalAction, default=True, help="one untimed visit first"
    )
    parser.add_argument("--server-log", type=Path, help="keep the server's log here")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help=f"default {CHROMIUM}")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.students) or args.uploads < 1:
        parser.error("--students and --uploads must be at least 1")
    if args.max_minutes <= 0:
        parser.error("--max-minutes must be positive")
    if args.arrival < 0:
        parser.error("--arrival must be at least 0")
    if not args.chromium.exists():
        parser.error(f"{args.chromium} not found: install Debian's chromium (apt-get install chromium)")
    return args


def _interrupt(signum, frame):  # SIGTERM ends the run like Ctrl-C: cleanly, with a report
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # What is left after the budget goes to stopping the browser, the training and the server.
    deadline = Deadline(max(10.0, args.max_minutes * 60 - CLEANUP_S))
    report: dict = {
        "students": args.students,
        "uploads_per_student": args.uploads,
        "arrival_s": args.arrival,
        "reduced_motion": not args.motion,
        "rows": [],
    }
    signal.signal(signal.SIGTERM, _interrupt)
    status = 0
    with tempfile.TemporaryDirectory(prefix="ferlab-loadtest-") as temp:
        folder = Path(temp)
        server = Server(folder)
        run_id = None
        try:
            photo_folder = folder / "photos"
            photo_folder.mkdir()
            write_warmup_photo(photo_folder / "warmup.jpg")
            print(f"starting the server on {server.url}", file=sys.stderr, flush=True)
            server.start(deadline)
            report["server_rss_mb_start"] = proc_rss_mb(server.pid)
            if args.train:
                run_id = start_training(server.folders["runs"])
                report["training_run"] = run_id
                report["training_start"] = wait_training(server.folders["runs"], run_id, deadline)
            asyncio.run(run_all(args, server, photo_folder, deadline, report))
            if deadline.left() <= 0:
                report["stopped"] = f"--max-minutes {args.max_minutes:g} spent"
        except BudgetSpent:
            report["stopped"] = f"--max-minutes {args.max_minutes:g} spent"
        except KeyboardInterrupt:
            report["stopped"] = "interrupted"
        except RuntimeError as error:
            print(f"loadtest: {error}", file=sys.stderr)
            report["stopped"] = str(error).splitlines()[0]
            status = 2
        finally:
            if run_id is not None:
                report["training_end"] = training_state(server.folders["runs"], run_id)
                stop_training(server.folders["runs"], run_id)
            report["server_rss_mb_end"] = proc_rss_mb(server.pid) if server.process else None
            server.stop()
            report["server_log_problems"] = server.log_problems()[:50]
            if args.server_log:
                with contextlib.suppress(OSError):
                    shutil.copyfile(server.log_path, args.server_log)
    print(markdown(report))
    if report["server_log_problems"]:
        print(
            "The server logged problems:\n  " + "\n  ".join(report["server_log_problems"][:10]),
            file=sys.stderr,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = any(row["errors"] or row["uploads"] < row["uploads_planned"] for row in report["rows"])
    return status or (1 if failed or not report["rows"] else 0)


if __name__ == "__main__":
    sys.exit(main())
