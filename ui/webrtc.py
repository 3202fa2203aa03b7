"""The Webcam page's connection: ICE servers, the camera request, the live component, a stuck stream.

Page-side pieces of the live stream; the frame processor itself is
:mod:`fertools.webcam`. :func:`parse_ice_servers` and :class:`StreamWatch` are
plain Python (tested without Streamlit); :func:`ice_servers` reads the settings.
:func:`streamer` is the only code that calls streamlit-webrtc, and
:func:`live_video_problem` says when it (aiortc, av) cannot be imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st

from fertools.constants import hosted

if TYPE_CHECKING:
    from fertools.webcam import FrameProcessor

#: Frames per second the page asks the camera for: 30 on a laptop (the Webcam page keeps up, see
#: docs/BENCHMARKS.md), 15 on a hosted server, where a class's streams share its CPU.
FRAME_RATE = {"local": 30, "hosted": 15}


def media_stream_constraints() -> dict:
    """What the page asks the browser's camera for.

    Without a size a browser may pick (or fall back to) 320x240, where faces are half as many
    pixels; ``ideal`` never makes a camera fail.
    """
    rate = FRAME_RATE["hosted" if hosted() else "local"]
    return {
        "video": {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"ideal": rate}},
        "audio": False,
    }


def live_video_problem() -> str | None:
    """Why live video is unavailable on this server (aiortc or av missing or broken), or None."""
    # NOTE: tried on every page run, not when this module is imported: without them, snapshots
    # still work, and the page must still load to offer them.
    try:
        import av  # noqa: F401
        from streamlit_webrtc import WebRtcMode, webrtc_streamer  # noqa: F401
    except ImportError as error:
        return f"live video is unavailable on this server ({error})."
    return None


def frame_callback(processor: FrameProcessor):
    """The video frame callback: BGR frame in, :meth:`FrameProcessor.process`, annotated frame out."""
    import av

    # NOTE: this runs in streamlit-webrtc's worker thread, where st.* and session_state must not
    # be touched: it only holds the processor, whose lock-guarded readout the page reads.
    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        image = frame.to_ndarray(format="bgr24")
        return av.VideoFrame.from_ndarray(processor.process(image), format="bgr24")

    return callback


def streamer(processor: FrameProcessor, servers: list[dict]):
    """The live video component (camera to this server, annotated video back); its context."""
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    return webrtc_streamer(
        key="webcam",
        mode=WebRtcMode.SENDRECV,
        video_frame_callback=frame_callback(processor),
        media_stream_constraints=media_stream_constraints(),
        rtc_configuration={"iceServers": servers},
        async_processing=True,
    )


def ice_servers() -> tuple[list[dict], str | None]:
    """STUN/TURN servers from ``FERLAB_ICE_SERVERS`` (JSON) or ``st.secrets["ice_servers"]``: ``(servers, warning)``.

    ``[]`` when none is configured (enough on localhost); a bad setting gives ``[]``
    and one sentence for the page to show.
    """
    try:
        raw = os.environ.get("FERLAB_ICE_SERVERS") or st.secrets.get("ice_servers")
    except (FileNotFoundError, KeyError):  # no secrets file: nothing configured
        raw = None
    try:
        return parse_ice_servers(raw), None
    except ValueError as error:
        return [], f"Ignoring the configured ICE servers: {error}"


def parse_ice_servers(value: str | Sequence | dict | None) -> list[dict]:
    """ICE servers (STUN/TURN) for ``RTCConfiguration.iceServers`` from JSON text or parsed data.

    Accepts a list of servers or ``{"iceServers": [...]}``; each server is a
    mapping with ``urls`` (a URL or a list of them) and, for TURN, ``username``
    and ``credential``. ``None`` or empty text gives ``[]`` (enough on
    localhost, where no STUN server is needed). Raises ``ValueError`` with
    one sentence saying what is wrong.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"ICE servers are not valid JSON ({error.msg} at character {error.pos})."
            ) from None
    if isinstance(value, Mapping) and "iceServers" in value:
        value = value["iceServers"]
    if isinstance(value, Mapping) or not isinstance(value, Sequence) or isinstance(value, str):
        # ValueError, not TypeError: to the user this is one more bad setting.
        raise ValueError('ICE servers must be a list like [{"urls": "stun:stun.example.org:3478"}].')  # noqa: TRY004
    servers = []
    for index, server in enumerate(value):
        if not isinstance(server, Mapping) or "urls" not in server:
            raise ValueError(f'ICE server {index + 1} needs a "urls" entry.')
        urls = server["urls"]
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls or not all(isinstance(url, str) and url.split(":", 1)[0] in _ICE_SCHEMES for url in urls):
            raise ValueError(
                f"ICE server {index + 1}: every URL must start with stun:, stuns:, turn: or turns:."
            )
        entry = {"urls": urls}
        for name in ("username", "credential"):
            if name in server:
                entry[name] = str(server[name])
        servers.append(entry)
    return servers


_ICE_SCHEMES = ("stun", "stuns", "turn", "turns")

#: Seconds a started stream may go without a single frame before we call it stuck.
STREAM_TIMEOUT_S = 20.0

NO_FRAMES = (
    "No video has reached the server within {seconds:.0f} s of starting: the browser and the server "
    "could not connect. Across networks WebRTC needs a STUN/TURN server (set FERLAB_ICE_SERVERS "
    "or ice_servers in .streamlit/secrets.toml)."
)
ENDED_EARLY = (
    "The live stream ended before any video reached the server: camera access was refused, the "
    "camera is busy, or the connection failed (the message in the video box says which)."
)


@dataclass
class StreamWatch:
    """Tells a live stream that never delivers a frame from one that is just starting.

    The browser component only reports *playing* or *signalling*; whether
    frames flow is seen from the processor's frame count. Call :meth:`update`
    on every page run; keep one per session.
    """

    timeout_s: float = STREAM_TIMEOUT_S
    since: float | None = None  # when the current start was first seen
    frames_at_start: int = 0
    problem: str | None = None

    def update(self, active: bool, frames: int, now: float) -> str | None:
        """The current problem (one sentence) or None; ``active`` is playing or signalling."""
        if active:
            if self.since is None:
                self.since, self.frames_at_start, self.problem = now, frames, None
            elif frames > self.frames_at_start:
                self.problem = None
            elif now - self.since > self.timeout_s:
                # The timeout, not the time waited: the message must not change while it stands.
                self.problem = NO_FRAMES.format(seconds=self.timeout_s)
        elif self.since is not None:
            if frames == self.frames_at_start:
                self.problem = ENDED_EARLY
            self.since = None
        return self.problem
