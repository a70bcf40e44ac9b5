"""`fer-search predict --video/--camera`: the emotion of every face in every frame of a video.

Each processed frame: find faces (fer_search.faces, in every `detect_every`-th frame; in
between, each face moves on at its tracked velocity), classify the faces' 48x48 crops in one
batch (its checkpoint and TTA), and smooth each face's probabilities over time. A face is
reported once its track has been detected in `confirm` detection frames in a row
(faces.tracking), from its first frame on: the loop holds the last (confirm - 1) *
detect_every frames back until it knows. Its probabilities are an exponential moving average,
    smoothed = smooth * previous + (1 - smooth) * this frame's,
so with smooth=0.6 a one-frame flicker of another emotion rarely changes the label, and
smooth=0 is off. The label is the argmax of the smoothed probabilities.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_search import prediction
from fer_search.config import SMOOTH
from fer_search.errors import UserError
from fer_search.faces import DEFAULT_DETECTOR, Detector, Track, Tracker, TrackOptions
from fer_search.faces.detectors import Box, to_gray

__all__ = ["StageTimes", "VideoPrediction", "format_video", "predict_video", "summary_line"]

CODEC = ("mp4v", ".mp4")  # what opencv-python-headless writes (its bundled FFmpeg)
DETECT_EVERY = 2  # detect in every 2nd processed frame, track between (docs/faces.md)
MAX_BAD_FRAMES = 10  # undecodable frames in a row a video file may have before it is over
ROTATIONS = (0, 90, 180, 270)  # --rotate: degrees clockwise


@dataclass
class StageTimes:
    """Seconds spent in each part of the frame loop."""

    read: float = 0.0  # decoding (and rotating) frames
    detect: float = 0.0  # the face detector and the tracks
    classify: float = 0.0  # crops and the model
    write: float = 0.0  # drawing and encoding the annotated copy

    def parts(self) -> dict[str, float]:
        return {"reading": self.read, "detecting": self.detect,
                "classifying": self.classify, "writing": self.write}  # fmt: skip


@dataclass
class VideoPrediction:
    """Per processed frame: its index, time and faces; and how fast they were processed."""

    source: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    frames_read: int = 0
    seconds: float = 0.0  # reading, detecting, classifying and writing, model loading aside
    annotated: str | None = None
    stopped: bool = False  # Ctrl-C ended it early (how a camera is stopped)
    bad_frames: int = 0  # frames the decoder could not read (skipped)
    times: StageTimes = field(default_factory=StageTimes)
    detector: str = DEFAULT_DETECTOR

    @property
    def fps(self) -> float:
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0


@contextmanager
def quiet_opencv(cv2: Any) -> Iterator[None]:
    """No OpenCV or FFmpeg warnings on stderr ("can't open camera by index", "moov atom not
    found"): a bad video is one UserError line. FFmpeg reads its variable at its first use in
    the process, so this silences it when predict_video is that first use (the CLI)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    ours = "OPENCV_FFMPEG_LOGLEVEL" not in os.environ  # a user's own setting wins
    if ours:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"  # AV_LOG_QUIET
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)
        if ours:
            os.environ.pop("OPENCV_FFMPEG_LOGLEVEL", None)


def open_source(cv2: Any, source: str | Path | int) -> tuple[Any, np.ndarray, str]:
    """(capture, its first frame, a name for messages) or a UserError saying what is wrong."""
    if isinstance(source, int):
        name = f"camera {source}"
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise UserError(f"{name} cannot be opened (no such camera, or it is in use)")
    else:
        name = f"video {str(source)!r}"
        if not Path(source).is_file():
            raise UserError(f"{name} does not exist")
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise UserError(
                f"{name} cannot be opened by OpenCV (not a video, an unsupported codec or no "
                "frames)"
            )
    ok, frame = capture.read()
    if not ok:
        capture.release()
        raise UserError(f"{name} has no frames OpenCV can decode")
    return capture, frame, name


def check_options(
    smooth: float, every: int, max_frames: int | None, detect_every: int, rotate: int
) -> None:
    if not 0 <= smooth < 1:
        raise UserError(f"--smooth must be in [0, 1) (0 = off), got {smooth=}")
    if every < 1:
        raise UserError(f"--every must be a whole number >= 1, got {every=}")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {max_frames=}")
    if detect_every < 1:
        raise UserError(f"--detect-every must be a whole number >= 1, got {detect_every=}")
    if rotate not in ROTATIONS:
        raise UserError(f"--rotate must be 0, 90, 180 or 270 (degrees clockwise), got {rotate=}")


def annotated_writer(
    cv2: Any, source: str | Path | int, out_dir: Path, frame: np.ndarray, fps: float
) -> tuple[Any, Path]:
    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
    target = out_dir / f"{stem}-annotated{CODEC[1]}"
    if target.exists():
        raise UserError(f"{str(target)!r} already exists; remove it or choose another --annotate")
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*CODEC[0]), fps, (width, height))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write a {CODEC[0]} video to {str(target)!r}")
    return writer, target


def draw(cv2: Any, frame: np.ndarray, faces: list[dict[str, Any]]) -> np.ndarray:
    for face in faces:
        x, y, w, h = face["box"]
        label = f"{face['emotion']} {max(face['probs'].values()):.2f}"
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 0, 255), 2)
        cv2.putText(
            frame, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1
        )
    return frame


def predict_video(
    checkpoint: str | Path,
    source: str | Path | int,
    *,
    smooth: float = SMOOTH,
    every: int = 1,
    max_frames: int | None = None,
    annotate_dir: str | Path | None = None,
    tta: str = "none",
    device: str = "auto",
    detector: str | Detector = DEFAULT_DETECTOR,
    tracking: TrackOptions = TrackOptions(),
    detect_every: int = DETECT_EVERY,
    rotate: int = 0,
) -> VideoPrediction:
    """Faces and their smoothed emotions in every `every`-th frame of a video file (or of
    camera `source` when it is an int), up to `max_frames` frames read; `annotate_dir` gets
    a copy of the processed frames with boxes and labels (<name>-annotated.mp4). `detector`
    is a name in fer_search.faces.DETECTORS (or a function frame -> detections), run on every
    `detect_every`-th processed frame; `tracking` says when a face is reported; `rotate`
    turns each frame clockwise first (a phone video stored sideways). Ctrl-C stops it and
    keeps what was done (how a camera is stopped without max_frames)."""
    check_options(smooth, every, max_frames, detect_every, rotate)
    from fer_search import faces

    find = faces.face_detector(detector) if isinstance(detector, str) else detector
    import cv2

    with quiet_opencv(cv2):
        capture, first, name = open_source(cv2, source)
        try:
            model, where, class_names = prediction.load_model(checkpoint, device)
            tracker = Tracker(tracking)
            result = VideoPrediction(source=name, detector=getattr(find, "__name__", "custom"))
            if isinstance(detector, str):
                result.detector = detector
            times = result.times

            def analyse(frame: np.ndarray, step: int) -> list[Snapshot]:
                start = time.perf_counter()
                if step % detect_every == 0:
                    visible = tracker.detected(find(frame), step, frame.shape)
                else:
                    visible = tracker.predicted(step)
                middle = time.perf_counter()
                gray = to_gray(frame)
                crops = [prediction.to_48(crop) for crop in crops_of(gray, visible)]
                probs = prediction.classify(model, crops, len(class_names), device=where, tta=tta)
                for track, p in zip(visible, probs, strict=True):
                    track.classified(p, smooth)
                times.detect += middle - start
                times.classify += time.perf_counter() - middle
                return [Snapshot(t, t.box, t.probs) for t in visible if t.probs is not None]

            loop = FrameLoop(cv2, result, class_names, delay=(tracking.confirm - 1) * detect_every)
            with one_torch_thread():
                return loop.run(
                    capture, first, analyse, every, max_frames, annotate_dir, source, rotate
                )
        finally:
            capture.release()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """A frame's batch (a few 48x48 crops) is too small to split across threads, and OpenMP's
    spinning workers then only compete with the decoder and the detector: on this project's
    busy 2-core machine a 2-face batch took 292 ms with 2 threads, 6.7 ms with 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def crops_of(gray: np.ndarray, tracks: list[Track]) -> list[np.ndarray]:
    """Each track's box cut from the frame (clipped to it; a box moved off the frame by its
    velocity keeps at least one pixel)."""
    height, width = gray.shape
    out = []
    for track in tracks:
        x, y, w, h = track.box
        x0, y0 = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
        x1, y1 = max(min(x + w, width), x0 + 1), max(min(y + h, height), y0 + 1)
        out.append(gray[y0:y1, x0:x1])
    return out


@dataclass
class Snapshot:
    """A track as it was in one frame: reported with that frame once the track is confirmed."""

    track: Track
    box: Box
    probs: np.ndarray


@dataclass
class Pending:
    index: int
    time_s: float
    frame: np.ndarray | None  # kept only for the annotated copy
    snapshots: list[Snapshot]


class FrameLoop:
    """The frame loop of predict_video: rotation, timing, time stamps, the frames held back
    until their faces are confirmed, the annotated copy, Ctrl-C."""

    def __init__(self, cv2: Any, result: VideoPrediction, class_names: list[str], delay: int):
        self.cv2, self.result, self.class_names, self.delay = cv2, result, class_names, delay
        self.writer: Any = None

    def run(
        self,
        capture: Any,
        first: np.ndarray,
        analyse: Callable[[np.ndarray, int], list[Snapshot]],
        every: int,
        max_frames: int | None,
        annotate_dir: str | Path | None,
        source: str | Path | int,
        rotate: int,
    ) -> VideoPrediction:
        cv2, result = self.cv2, self.result
        first = rotated(cv2, first, rotate)
        source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if annotate_dir is not None:
            self.writer, target = annotated_writer(
                cv2, source, Path(annotate_dir), first, (source_fps or 30.0) / every
            )
            result.annotated = str(target)
        camera = isinstance(source, int)  # its time is the clock's, whatever fps it reports
        pending: deque[Pending] = deque()
        start = time.perf_counter()
        try:
            frames = read_frames(capture, first, every, max_frames, result, cv2, rotate)
            for step, (index, frame) in enumerate(frames):
                snapshots = analyse(frame, step)
                seconds = (
                    time.perf_counter() - start if camera or not source_fps else index / source_fps
                )
                keep = frame if self.writer is not None else None
                pending.append(Pending(index, round(seconds, 3), keep, snapshots))
                while len(pending) > self.delay:
                    self.finish(pending.popleft())
        except KeyboardInterrupt:
            result.stopped = True
        finally:
            while pending:  # what is confirmed by now is reported; the rest never earned it
                self.finish(pending.popleft())
            result.seconds = time.perf_counter() - start
            if self.writer is not None:
                self.writer.release()
        return result

    def finish(self, entry: Pending) -> None:
        faces = [
            face_dict(s.track.id, s.box, s.probs, self.class_names)
            for s in sorted(entry.snapshots, key=lambda s: s.track.id)
            if s.track.confirmed
        ]
        self.result.frames.append({"frame": entry.index, "time_s": entry.time_s, "faces": faces})
        if self.writer is not None and entry.frame is not None:
            start = time.perf_counter()
            self.writer.write(draw(self.cv2, entry.frame, faces))
            self.result.times.write += time.perf_counter() - start


def rotated(cv2: Any, frame: np.ndarray, rotate: int) -> np.ndarray:
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return cv2.rotate(frame, codes[rotate]) if rotate else frame


def read_frames(
    capture: Any,
    first: np.ndarray,
    every: int,
    max_frames: int | None,
    result: VideoPrediction,
    cv2: Any,
    rotate: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) of every `every`-th frame, starting with `first` (already read); the
    frames in between are grabbed, not decoded into images. A frame of a file the decoder
    cannot read is skipped while the file says more follow, and counted (result.bad_frames)
    once a good one follows; MAX_BAD_FRAMES in a row end it. Counts result.frames_read and
    the reading time."""
    result.frames_read = 1
    yield 0, first
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # 0 for a camera
    index, bad_in_a_row = 1, 0
    while max_frames is None or index < max_frames:
        start = time.perf_counter()
        if index % every:
            ok, frame = capture.grab(), None
        else:
            ok, frame = capture.read()
        if ok and frame is not None:
            frame = rotated(cv2, frame, rotate)
        result.times.read += time.perf_counter() - start
        if not ok:
            bad_in_a_row += 1
            if index >= total or bad_in_a_row >= MAX_BAD_FRAMES:
                return  # the end (failures with no good frame after them are not counted)
            index += 1
            continue
        result.bad_frames += bad_in_a_row
        bad_in_a_row = 0
        result.frames_read = index + 1
        if frame is not None:
            yield index, frame
        index += 1


def face_dict(face: int, box: Box, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    return {
        "box": [int(v) for v in box],
        "track": face,
        "emotion": class_names[int(probs.argmax())],
        "probs": {c: round(float(p), 4) for c, p in zip(class_names, probs, strict=True)},
    }


def format_video(result: VideoPrediction) -> str:
    """One line per face per processed frame; the summary is `summary_line`."""
    lines = []
    for entry in result.frames:
        for face in entry["faces"]:
            p = face["probs"][face["emotion"]]
            lines.append(
                f"frame {entry['frame']} ({entry['time_s']:.2f} s) face {face['track']} "
                f"box={face['box']}: {face['emotion']} {p:.2f}"
            )
    return "\n".join(lines)


def summary_line(result: VideoPrediction) -> str:
    """What was found, and how fast: frames/s and where the seconds went."""
    faces = sum(len(entry["faces"]) for entry in result.frames)
    with_faces = sum(1 for entry in result.frames if entry["faces"])
    tracks = len({face["track"] for entry in result.frames for face in entry["faces"]})
    stopped = " (stopped by Ctrl-C)" if result.stopped else ""
    bad = (
        f"; {result.bad_frames} frame{'s' * (result.bad_frames != 1)} could not be decoded "
        "(skipped)"
        if result.bad_frames
        else ""
    )
    parts = {k: v for k, v in result.times.parts().items() if v > 0 or k != "writing"}
    other = max(0.0, result.seconds - sum(parts.values()))
    spent = ", ".join(f"{k} {v:.1f}" for k, v in [*parts.items(), ("other", other)])
    return (
        f"{result.source}: {result.frames_read} frames read, {len(result.frames)} classified, "
        f"{faces} faces in {with_faces} of them, {tracks} face{'s' * (tracks != 1)} tracked "
        f"({result.detector}){stopped}{bad}; {result.fps:.1f} frames/s "
        f"({result.seconds:.1f} s: {spent})"
    )
