"""Start and cancel a training run from the Train page N times; print the server's RSS after each.

A measurement, not a test (run it on a quiet machine, from the repository root)::

    python tools/start_cancel_cycles.py --cycles 20

It starts its own server with temporary folders through the browser tests' ``serve`` (and so
Debian's chromium), opens /Train in one headless tab, and per cycle presses "Start training",
then "Cancel this run", and waits until the run has ended. It prints one line per cycle and the
RSS series as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from fertools import data  # noqa: E402
from tests.browser.conftest import CHROMIUM, TINY_DATASET, VIEWPORT, App, serve  # noqa: E402


def server_rss_mb(port: str) -> float | None:
    """VmRSS of the streamlit process listening on ``port``."""
    pids = subprocess.run(
        ["pgrep", "-f", f"server.port {port}"], capture_output=True, text=True
    ).stdout.split()
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ferlab_cycles_"))
    folders = {name: root / name for name in ("runs", "data", "cache")}
    for folder in folders.values():
        folder.mkdir()
    data.save_npz(data.load_builtin(n_per_class=30, seed=3), folders["data"] / TINY_DATASET)
    rss: list[float | None] = []
    with serve(folders, root) as url, sync_playwright() as playwright:
        port = url.rsplit(":", 1)[1]
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=VIEWPORT, base_url=url)
        page.set_default_timeout(120_000)
        App(page, root).goto("/Train", "Start training", timeout_s=180)
        rss.append(server_rss_mb(port))
        start = time.monotonic()
        for cycle in range(1, args.cycles + 1):
            page.get_by_role("button", name="Start training").click()
            cancel = page.get_by_role("button", name="Cancel this run").first
            cancel.wait_for(timeout=60_000)
            cancel.click()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                page.get_by_role("button", name="Cancel this run").count()
                or page.get_by_text("Cancelling").count()
            ):
                page.wait_for_timeout(250)
            rss.append(server_rss_mb(port))
            print(f"cycle {cycle}: server RSS {rss[-1]:.0f} MB, {time.monotonic() - start:.0f} s", flush=True)
        browser.close()
    print(json.dumps({"rss_mb": rss}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
