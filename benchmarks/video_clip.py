"""A test clip for `fer-search predict --video` throughput: real faces, so the cascade fires.

    python benchmarks/video_clip.py FER2013.csv.gz OUT.mp4 [--frames 150]

Two PrivateTest faces from FER2013, upscaled 3x (144x144), drift across a 640x480 grey frame
at 30 frames/s (mp4v), the first face changing every 50 frames. Same writer and codec as
tests/test_predict_video.py, which uses a drawn oval instead (the cascade ignores it).
"""

from __future__ import annotations

import argparse
import csv
import gzip

import cv2
import numpy as np

WIDTH, HEIGHT, FPS, SIDE = 640, 480, 30.0, 144


def private_test_faces(path: str, count: int) -> list[np.ndarray]:
    faces = []
    with gzip.open(path, "rt", newline="") as file:
        for row in csv.DictReader(file):
            if row["Usage"] == "PrivateTest":
                face = np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48)
                faces.append(cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC))
                if len(faces) == count:
                    break
    return faces


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    faces = private_test_faces(args.csv, 1 + args.frames // 50 + 1)
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for i in range(args.frames):
        frame = np.full((HEIGHT, WIDTH), 128, dtype=np.uint8)
        x = 60 + i % 100
        frame[120 : 120 + SIDE, x : x + SIDE] = faces[1 + i // 50]
        frame[200 : 200 + SIDE, 420 - i % 100 : 420 - i % 100 + SIDE] = faces[0]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


if __name__ == "__main__":
    main()
