"""Faces followed from frame to frame; a face is reported only once its track earns it.

A detection continues the track whose predicted box (its last detected box moved on at its
velocity) it overlaps most; the rest start new tracks. A new track is a candidate until it has
been detected in `confirm` detection frames in a row, then it gets the next face number and
is reported, from its first frame on (the frame loop holds the last few frames back for that).
A candidate missed once is dropped; a confirmed face missed `max_miss` detection frames in a
row is dropped (and a face that comes back later gets a new number). Detections smaller than
`min_face` of the frame's shorter side or than `min_pixels` are ignored: the model reads 48x48
crops, and a face far below that is mostly guesswork (and where a detector's false boxes are).

Each track's probabilities are an exponential moving average over the frames it is classified
in, smoothed = smooth * previous + (1 - smooth) * this frame's (smooth = 0: off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_search.errors import UserError
from fer_search.faces.detectors import Box, Detection

__all__ = ["Track", "TrackOptions", "Tracker", "iou"]

MIN_IOU = 0.3  # a detection continues a track when it overlaps its predicted box this much


@dataclass(frozen=True)
class TrackOptions:
    """How a face earns and keeps its place (defaults chosen in docs/faces.md)."""

    confirm: int = 3  # detection frames in a row before a face is reported (1 = at once)
    max_miss: int = 5  # detection frames in a row a reported face may be missed before it ends
    min_face: float = 0.06  # the smallest face side, as a fraction of the frame's shorter side
    min_pixels: int = 24  # and in pixels (half the model's 48-pixel input)

    def __post_init__(self) -> None:
        if self.confirm < 1:
            raise UserError(f"--confirm must be a whole number >= 1, got confirm={self.confirm}")
        if self.max_miss < 0:
            raise UserError(f"--max-miss must be >= 0, got max_miss={self.max_miss}")
        if not 0 <= self.min_face < 1:
            raise UserError(f"--min-face must be in [0, 1), got min_face={self.min_face}")
        if self.min_pixels < 1:
            raise UserError(f"--min-face-pixels must be >= 1, got min_pixels={self.min_pixels}")

    def smallest(self, frame_shape: tuple[int, ...]) -> float:
        """The smallest face side (pixels) counted in a frame of this shape."""
        return max(self.min_pixels, self.min_face * min(frame_shape[:2]))


@dataclass
class Track:
    """One face followed over frames."""

    box: Box  # where it is in the current frame (detected, or predicted between detections)
    anchor: Box  # its last detected box
    anchor_step: int  # the processed frame of that detection
    id: int = -1  # its face number once confirmed
    probs: np.ndarray | None = None  # smoothed probabilities; None before its first crop
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per processed frame
    streak: int = 1  # detection frames in a row it was found in
    misses: int = 0  # detection frames in a row it was not

    @property
    def confirmed(self) -> bool:
        return self.id >= 0

    def predicted(self, step: int) -> Box:
        x, y, w, h = self.anchor
        dt = step - self.anchor_step
        return round(x + self.velocity[0] * dt), round(y + self.velocity[1] * dt), w, h

    def classified(self, probs: np.ndarray, smooth: float) -> None:
        fresh = np.asarray(probs, dtype=np.float64)
        self.probs = fresh if self.probs is None else smooth * self.probs + (1 - smooth) * fresh


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(w, 0) * max(h, 0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class Tracker:
    """The tracks of one video. `detected` after each detection frame, `predicted` on the
    frames between; both return the tracks visible in that frame (candidates included: the
    frame loop reports them once they are confirmed)."""

    def __init__(self, options: TrackOptions) -> None:
        self.options = options
        self.tracks: list[Track] = []
        self.next_id = 0

    def detected(
        self, detections: list[Detection], step: int, frame_shape: tuple[int, ...]
    ) -> list[Track]:
        smallest = self.options.smallest(frame_shape)
        boxes = [d.box for d in detections if min(d.box[2], d.box[3]) >= smallest]
        pairs = sorted(
            (
                (iou(box, track.predicted(step)), i, n)
                for i, box in enumerate(boxes)
                for n, track in enumerate(self.tracks)
            ),
            reverse=True,
        )
        box_of: dict[int, int] = {}  # track index -> box index
        for overlap, i, n in pairs:
            if overlap < MIN_IOU:
                break
            if n not in box_of and i not in box_of.values():
                box_of[n] = i
        survivors = []
        for n, track in enumerate(self.tracks):
            if n in box_of:
                self.found(track, boxes[box_of[n]], step)
                survivors.append(track)
            elif track.confirmed and track.misses < self.options.max_miss:
                track.misses, track.streak = track.misses + 1, 0
                track.box = track.predicted(step)
                survivors.append(track)
        taken = set(box_of.values())
        for i, box in enumerate(boxes):
            if i not in taken:
                survivors.append(Track(box=box, anchor=box, anchor_step=step))
                self.confirm_if_earned(survivors[-1])
        self.tracks = survivors
        return [t for t in self.tracks if t.misses == 0]

    def found(self, track: Track, box: Box, step: int) -> None:
        dt = max(1, step - track.anchor_step)
        (ax, ay), (bx, by) = center(track.anchor), center(box)
        moved = ((bx - ax) / dt, (by - ay) / dt)
        track.velocity = (
            (0.5 * track.velocity[0] + 0.5 * moved[0], 0.5 * track.velocity[1] + 0.5 * moved[1])
            if track.streak
            else moved  # back after misses: its old velocity says little
        )
        track.box = track.anchor = box
        track.anchor_step = step
        track.streak, track.misses = track.streak + 1, 0
        self.confirm_if_earned(track)

    def confirm_if_earned(self, track: Track) -> None:
        if not track.confirmed and track.streak >= self.options.confirm:
            track.id, self.next_id = self.next_id, self.next_id + 1

    def predicted(self, step: int) -> list[Track]:
        """Between detections: each visible track moves on at its velocity."""
        visible = [t for t in self.tracks if t.misses == 0]
        for track in visible:
            track.box = track.predicted(step)
        return visible


def center(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2
