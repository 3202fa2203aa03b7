"""Frames per second of the Webcam page end to end, and where a frame's time goes (a tool, not a test).

Run it from the repository root, on a machine nobody else is measuring on::

    python tools/webcam_fps.py --fps 30 --seconds 20 --json out.json

It starts its own server on a free loopback port (as ``tools/loadtest.py`` does), plays a 640x480
video of one synthetic face at ``--fps`` to headless Chromium as its camera, opens ``/Webcam`` and
presses START. After a warm-up it measures for ``--seconds``:

- shown: frames the browser presented in the page's ``<video>`` (the annotated stream coming back),
  counted with ``requestVideoFrameCallback``; and the decoded size;
- processed: the page's own readout (frames per second the server's frame processor handled, and
  its detect / classify / draw milliseconds per frame);
- the server's CPU-seconds per processed frame (every thread: receiving, decoding, analysing,
  drawing, encoding), so the rest beyond the processor's own time is the WebRTC transport
  (aiortc's VP8 decoding and encoding, RTP).

Exit code 0 when frames were shown, 1 when none were, 2 when the server or browser cannot start.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # run as a script: make fertools and loadtest importable

from loadtest import Deadline, Server, proc_cpu_s  # noqa: E402

#: Seconds the stream runs before measuring (the connection, the first frames, the model's warm-up).
WARMUP_S = 8

#: Counts frames presented by the page's video element (inside streamlit-webrtc's iframe).
COUNT_FRAMES_JS = """
(video, seconds) => new Promise((resolve) => {
  let frames = 0;
  const start = performance.now();
  const step = () => {
    frames += 1;
    if (performance.now() - start < seconds * 1000) video.requestVideoFrameCallback(step);
    else resolve({frames, seconds: (performance.now() - start) / 1000,
                  width: video.videoWidth, height: video.videoHeight});
  };
  video.requestVideoFrameCallback(step);
})
"""
READOUT = re.compile(
    r"([\d.]+) fps\s*·\s*(\d+) ms per frame: detect ([\d.]+), classify ([\d.]+), draw ([\d.]+) ms"
    r"(?:\s*·\s*(\d+)×(\d+) video)?"
)


def fake_camera(path: Path, fps: int) -> Path:
    """One second of a still synthetic happy face, 640x480, at ``fps`` (Chromium loops it)."""
    from fertools.webcam import demo_frame, write_y4m

    write_y4m(path, [demo_frame("happy", seed=0)] * fps, fps=fps)
    return path


def measure(url: str, camera: Path, seconds: float, server_pid: int) -> dict:
    from playwright.sync_api import sync_playwright

    flags = [
        "--no-sandbox",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Webcam", timeout=180_000)
            page.get_by_text("the readout appears here").wait_for(timeout=180_000)
            component = page.frame_locator('iframe[title*="streamlit_webrtc"]')
            component.get_by_role("button", name="START").click()
            component.locator("video").wait_for(timeout=60_000)
            page.wait_for_timeout(WARMUP_S * 1000)
            readout = page.locator(".st-key-webcam_readout")
            cpu_before, wall_before = proc_cpu_s(server_pid), time.monotonic()
            shown = component.locator("video").evaluate(COUNT_FRAMES_JS, seconds)
            cpu_after, wall_after = proc_cpu_s(server_pid), time.monotonic()
            text = readout.inner_text()
        finally:
            browser.close()
    match = READOUT.search(text)
    report = {
        "shown_fps": shown["frames"] / shown["seconds"],
        "shown_size": [shown["width"], shown["height"]],
        "readout": text.strip().splitlines()[-1] if text.strip() else "",
        "server_cpu_s_per_s": (cpu_after - cpu_before) / (wall_after - wall_before),
    }
    if match:
        fps, ms, detect, classify, draw = (float(g) for g in match.groups()[:5])
        report.update(
            processed_fps=fps, ms_per_frame=ms, ms_detect=detect, ms_classify=classify, ms_draw=draw
        )
        report["server_cpu_ms_per_frame"] = 1000 * report["server_cpu_s_per_s"] / fps if fps else None
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=int, default=30, help="the fake camera's frame rate")
    parser.add_argument("--seconds", type=float, default=20, help="how long to measure")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--hosted", action="store_true", help="a hosted server (FERLAB_HOSTED=1), not a laptop's"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ferlab-webcam-") as folder:
        server = Server(Path(folder), hosted=args.hosted)
        try:
            server.start(Deadline(300))
            report = measure(
                server.url, fake_camera(Path(folder) / "face.y4m", args.fps), args.seconds, server.pid
            )
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 2
        finally:
            server.stop()
    report.update(camera_fps=args.fps, hosted=args.hosted)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["shown_fps"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
