"""Face tracking: one id per person in front of the camera, however the detector flickers.

A detector answers frame by frame: a small face may be missed one frame in three, its box
jitters by a tenth of its side, and now and then a patch of background passes for a face
for a frame. :class:`FaceTracker` turns those answers into tracks with stable ids:

* **matching**: each frame's boxes are matched to the tracks, best pair first. A pair's
  score is the box's overlap (IoU) with where the track is expected (its last box, moved by
  its recent velocity); a small face whose jitter breaks the overlap still matches when its
  centre moved less than ``max_shift`` of its side and its size changed by less than
  ``max_scale``.
* **confirmation**: a new box is a tentative track; it gets an id only once it has been
  seen in ``confirm`` frames in a row, so a one-frame false detection never uses one.
* **grace**: a confirmed track that is not seen keeps its id for ``grace_s`` seconds
  (the detector blinks; a head turns away for a moment), then it is dropped.

Boxes are ``(x, y, w, h)`` frame pixels (:data:`fertools.faces.Box`); times are seconds of
any clock. Pure Python and numpy: no detector or model here.

Example::

    tracker = FaceTracker()
    for now, boxes in frames:
        for track in tracker.update(boxes, now):
            if track.face_id is not None:
                print(now, track.face_id, track.box)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fertools.faces import Box

#: Weight of the latest step in a track's velocity: low, so the jitter of a still face (a tenth
#: of its side each way) moves its expected box by a few pixels only, while a face that keeps
#: moving (two people crossing) is expected where it is going after a few frames.
VELOCITY_GAIN = 0.3


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes, in [0, 1]."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = min(ax + aw, bx + bw) - max(ax, bx)
    height = min(ay + ah, by + bh) - max(ay, by)
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    return overlap / (aw * ah + bw * bh - overlap)


@dataclass(eq=False)
class Track:
    """One face followed across frames.

    ``face_id`` is None while the track is tentative (see :class:`FaceTracker`).
    ``probabilities`` and ``logged_at`` belong to the tracker's user (the webcam's
    smoothed class probabilities and the time of its last timeline row).
    """

    box: Box
    last_seen: float
    face_id: int | None = None
    hits: int = 1  # frames in a row this track was seen (counted until it is confirmed)
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box centre, pixels per second
    probabilities: np.ndarray | None = field(default=None, repr=False)
    logged_at: float = float("-inf")

    def predicted(self, now: float) -> Box:
        """Where the box is expected at ``now``: moved by the velocity, by at most one side."""
        x, y, w, h = self.box
        elapsed = max(0.0, now - self.last_seen)
        dx = float(np.clip(self.velocity[0] * elapsed, -w, w))
        dy = float(np.clip(self.velocity[1] * elapsed, -h, h))
        return (round(x + dx), round(y + dy), w, h)


class FaceTracker:
    """Stable ids for the faces of a video (see the module docstring for the rules).

    ``min_iou`` is the least overlap for an overlap match; ``max_shift`` (centre
    distance over the face's side) and ``max_scale`` (ratio of sides) bound a match
    without overlap; ``confirm`` is the frames in a row before a new face gets an id;
    ``grace_s`` how long a confirmed face may go unseen. Ids count up from 1 and are
    never reused until :meth:`reset`. Not thread-safe (the webcam's frame processor
    guards it).
    """

    def __init__(
        self,
        min_iou: float = 0.3,
        max_shift: float = 0.6,
        max_scale: float = 1.5,
        confirm: int = 2,
        grace_s: float = 1.5,
    ):
        if confirm < 1:
            raise ValueError(f"confirm must be at least 1 frame, got {confirm}")
        self.min_iou, self.max_shift, self.max_scale = min_iou, max_shift, max_scale
        self.confirm, self.grace_s = confirm, grace_s
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self.tracks, self._next_id = [], 1

    def _score(self, box: Box, expected: Box) -> float:
        """How well ``box`` continues a track expected at ``expected``: above 1 by overlap, 0..1 by distance, 0 for no match."""
        iou = box_iou(box, expected)
        if iou >= self.min_iou:
            return 1.0 + iou  # any overlap match beats any distance match
        side, expected_side = math.sqrt(box[2] * box[3]), math.sqrt(expected[2] * expected[3])
        if (
            side <= 0
            or expected_side <= 0
            or not 1 / self.max_scale <= side / expected_side <= self.max_scale
        ):
            return 0.0
        shift = math.hypot(
            (box[0] + box[2] / 2) - (expected[0] + expected[2] / 2),
            (box[1] + box[3] / 2) - (expected[1] + expected[3] / 2),
        ) / ((side + expected_side) / 2)
        return max(0.0, 1.0 - shift / self.max_shift) if shift < self.max_shift else 0.0

    def update(self, boxes: Sequence[Box], now: float) -> list[Track]:
        """Match this frame's ``boxes`` (taken at ``now``) to the tracks; the track of each box, in box order.

        A box that continues no track starts a tentative one. Tracks not seen now
        are dropped when tentative, or when confirmed and unseen for over ``grace_s``.
        """
        expected = [track.predicted(now) for track in self.tracks]
        pairs = sorted(
            (
                (score, i, j)
                for i, box in enumerate(boxes)
                for j, where in enumerate(expected)
                if (score := self._score(tuple(box), where)) > 0.0
            ),
            reverse=True,
        )
        matched: dict[int, Track] = {}
        used: set[int] = set()
        for _, i, j in pairs:
            if i not in matched and j not in used:
                matched[i] = self.tracks[j]
                used.add(j)

        seen: list[Track] = []
        for i, box in enumerate(boxes):
            box = tuple(int(v) for v in box)
            track = matched.get(i)
            if track is None:
                track = Track(box, now)
                self.tracks.append(track)
            else:
                elapsed = now - track.last_seen
                if elapsed > 0:
                    moved = (
                        (box[0] + box[2] / 2 - track.box[0] - track.box[2] / 2) / elapsed,
                        (box[1] + box[3] / 2 - track.box[1] - track.box[3] / 2) / elapsed,
                    )
                    track.velocity = tuple(
                        (1.0 - VELOCITY_GAIN) * old + VELOCITY_GAIN * new
                        for old, new in zip(track.velocity, moved)
                    )
                track.box, track.last_seen = box, now
                track.hits += 1
            if track.face_id is None and track.hits >= self.confirm:
                track.face_id, self._next_id = self._next_id, self._next_id + 1
            seen.append(track)

        current = {id(track) for track in seen}
        self.tracks = [
            track
            for track in self.tracks
            if id(track) in current or (track.face_id is not None and now - track.last_seen <= self.grace_s)
        ]
        return seen
