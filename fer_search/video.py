"""`fer-search predict --video/--camera`: the emotion of every face in every frame of a video.

Each frame: find faces (prediction.face_finder), classify them in one batch (its crops,
checkpoint and TTA), then smooth each face's probabilities over time. A face is followed from
frame to frame by box overlap (a track); its probabilities are an exponential moving average,
    smoothed = smooth * previous + (1 - smooth) * this frame's,
so with smooth=0.6 a one-frame flicker of another emotion rarely changes the label, and
smooth=0 is off. The label is the argmax of the smoothed probabilities.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_search import prediction
from fer_search.config import SMOOTH
from fer_search.errors import UserError

__all__ = ["Track", "VideoPrediction", "format_video", "predict_video", "track_faces"]

Box = tuple[int, int, int, int]  # x, y, w, h
MIN_IOU = 0.3  # a box in this frame continues a track when they overlap at least this much
MAX_GAP = 5  # processed frames a track survives unseen (the cascade misses a frame now and then)
CODEC = ("mp4v", ".mp4")  # what opencv-python-headless writes (its bundled FFmpeg)


@dataclass
class Track:
    """One face followed over frames: its last box and smoothed probabilities."""

    id: int
    box: Box
    probs: np.ndarray
    seen: int  # the last processed frame (counted from 0) it was found in


@dataclass
class VideoPrediction:
    """Per processed frame: its index, time and faces; and how fast they were processed."""

    source: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    frames_read: int = 0
    seconds: float = 0.0  # reading, detecting, classifying and writing, model loading aside
    annotated: str | None = None
    stopped: bool = False  # Ctrl-C ended it early (how a camera is stopped)

    @property
    def fps(self) -> float:
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(w, 0) * max(h, 0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def track_faces(
    tracks: list[Track], boxes: list[Box], probs: np.ndarray, step: int, smooth: float
) -> list[Track]:
    """The track of each box of processed frame `step`, in the order of `boxes`; `tracks` is
    updated in place (matched ones smoothed, new ones added, those unseen for over MAX_GAP
    frames dropped). Boxes and tracks are paired greedily, largest overlap first."""
    pairs = sorted(
        ((iou(box, t.box), i, t) for i, box in enumerate(boxes) for t in tracks),
        key=lambda pair: -pair[0],
    )
    chosen: dict[int, Track] = {}
    for overlap, i, track in pairs:
        if overlap < MIN_IOU:
            break
        if i in chosen or any(t is track for t in chosen.values()):
            continue
        track.probs = smooth * track.probs + (1 - smooth) * probs[i]
        track.box, track.seen = boxes[i], step
        chosen[i] = track
    next_id = max((t.id for t in tracks), default=-1) + 1
    for i, box in enumerate(boxes):
        if i not in chosen:
            chosen[i] = Track(next_id, box, np.asarray(probs[i], dtype=np.float64), step)
            tracks.append(chosen[i])
            next_id += 1
    tracks[:] = [t for t in tracks if step - t.seen <= MAX_GAP]
    return [chosen[i] for i in range(len(boxes))]


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


def check_options(smooth: float, every: int, max_frames: int | None) -> None:
    if not 0 <= smooth < 1:
        raise UserError(f"--smooth must be in [0, 1) (0 = off), got {smooth=}")
    if every < 1:
        raise UserError(f"--every must be a whole number >= 1, got {every=}")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {max_frames=}")


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
) -> VideoPrediction:
    """Faces and their smoothed emotions in every `every`-th frame of a video file (or of
    camera `source` when it is an int), up to `max_frames` frames read; `annotate_dir` gets
    a copy of the processed frames with boxes and labels (<name>-annotated.mp4). Ctrl-C
    stops it and keeps what was done (how a camera is stopped without max_frames)."""
    check_options(smooth, every, max_frames)
    find = prediction.face_finder()  # the friendly error when OpenCV is missing
    import cv2

    with quiet_opencv(cv2):
        capture, first, name = open_source(cv2, source)
        try:
            model, where, class_names = prediction.load_model(checkpoint, device)
            tracks: list[Track] = []

            def faces_in(gray: np.ndarray, step: int) -> list[dict[str, Any]]:
                boxes = find(gray)
                crops = [prediction.to_48(gray[y : y + h, x : x + w]) for x, y, w, h in boxes]
                probs = prediction.classify(model, crops, len(class_names), device=where, tta=tta)
                matched = track_faces(tracks, boxes, probs, step, smooth)
                return [face_dict(track, class_names) for track in matched]

            with one_torch_thread():
                return classify_frames(
                    cv2, capture, first, name, faces_in, every, max_frames, annotate_dir, source
                )
        finally:
            capture.release()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """A frame's batch (a few 48x48 crops) is too small to split across threads, and OpenMP's
    spinning workers then only compete with the decoder and the cascade: on this project's
    busy 2-core machine a 2-face batch took 292 ms with 2 threads, 6.7 ms with 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def classify_frames(
    cv2: Any,
    capture: Any,
    first: np.ndarray,
    name: str,
    faces_in: Callable[[np.ndarray, int], list[dict[str, Any]]],
    every: int,
    max_frames: int | None,
    annotate_dir: str | Path | None,
    source: str | Path | int,
) -> VideoPrediction:
    """The frame loop of predict_video: timing, time stamps, the annotated copy, Ctrl-C."""
    result = VideoPrediction(source=name)
    source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    writer = None
    if annotate_dir is not None:
        writer, target = annotated_writer(
            cv2, source, Path(annotate_dir), first, (source_fps or 30.0) / every
        )
        result.annotated = str(target)
    camera = isinstance(source, int)  # its time is the clock's, whatever fps it reports
    start = time.perf_counter()
    try:
        for index, frame in read_frames(capture, first, every, max_frames, result):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
            faces = faces_in(gray, len(result.frames))
            seconds = (
                time.perf_counter() - start if camera or not source_fps else index / source_fps
            )
            result.frames.append({"frame": index, "time_s": round(seconds, 3), "faces": faces})
            if writer is not None:
                writer.write(draw(cv2, frame, faces))
    except KeyboardInterrupt:
        result.stopped = True
    finally:
        result.seconds = time.perf_counter() - start
        if writer is not None:
            writer.release()
    return result


def read_frames(
    capture: Any, first: np.ndarray, every: int, max_frames: int | None, result: VideoPrediction
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) of every `every`-th frame, starting with `first` (already read); the
    frames in between are grabbed, not decoded into images. Counts result.frames_read."""
    result.frames_read = 1
    yield 0, first
    index = 1
    while max_frames is None or index < max_frames:
        if index % every:
            ok, frame = capture.grab(), None
        else:
            ok, frame = capture.read()
        if not ok:
            return
        result.frames_read = index + 1
        if frame is not None:
            yield index, frame
        index += 1


def face_dict(track: Track, class_names: list[str]) -> dict[str, Any]:
    return {
        "box": [int(v) for v in track.box],
        "track": track.id,
        "emotion": class_names[int(track.probs.argmax())],
        "probs": {c: round(float(p), 4) for c, p in zip(class_names, track.probs, strict=True)},
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
    faces = sum(len(entry["faces"]) for entry in result.frames)
    with_faces = sum(1 for entry in result.frames if entry["faces"])
    stopped = " (stopped by Ctrl-C)" if result.stopped else ""
    return (
        f"{result.source}: {result.frames_read} frames read, {len(result.frames)} classified, "
        f"{faces} faces in {with_faces} of them{stopped}; {result.fps:.1f} frames/s "
        f"({result.seconds:.1f} s reading, detecting, classifying"
        f"{' and writing' if result.annotated else ''})"
    )
