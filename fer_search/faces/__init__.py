"""Faces in photos and video: detectors by name (detectors.py) and tracks that must earn their
place before a face is reported (tracking.py). See docs/faces.md for how they were chosen."""

from fer_search.faces.detectors import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Detection,
    Detector,
    face_detector,
)
from fer_search.faces.tracking import Track, Tracker, TrackOptions, iou

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "Detection",
    "Detector",
    "Track",
    "TrackOptions",
    "Tracker",
    "face_detector",
    "iou",
]
