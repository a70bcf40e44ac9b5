"""The data layer's vocabulary: accepted file and folder names, class-folder aliases, and the
records its modules pass to each other (a file or zip member, a resolved source, a parse)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_search.config import IMAGE_SIZE

PIXELS = IMAGE_SIZE * IMAGE_SIZE
USAGES = {b"Training": 0, b"PublicTest": 1, b"PrivateTest": 2}  # index into SPLITS
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv")
COMPRESSED = ("", ".gz", ".zip")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_DIRS = {"train": 0, "val": 1, "validation": 1, "test": 2}
CLASS_ALIASES = {
    "angry": 0, "anger": 0,
    "disgust": 1, "disgusted": 1,
    "fear": 2, "fearful": 2,
    "happy": 3, "happiness": 3,
    "sad": 4, "sadness": 4,
    "surprise": 5, "surprised": 5,
    "neutral": 6,
}  # fmt: skip
ACCEPTED = (
    "fer2013.csv, icml_face_data.csv, train.csv (+ test.csv), each optionally .gz or .zip, "
    "fer2013.tar.gz, or image folders train/<class>/*.png|jpg (+ test/, val/)"
)
DEMO_HINT = "--data path/to/fer2013.csv"
MIB = 1 << 20


@dataclass
class Parsed:
    """What a source parses to, before FER+, class sets and val carving (this is cached)."""

    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,), EMOTIONS index
    splits: np.ndarray  # int8 (N,), SPLITS index
    kind: str  # "kaggle" | "challenge" | "folders"
    notes: list[str]


@dataclass(frozen=True)
class Blob:
    """A file on disk, or a member of a zip archive on disk."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class Source:
    """A resolved data source: CSV file(s), or an image tree on disk or in a zip."""

    name: str
    main: Blob | None = None  # fer2013.csv / icml_face_data.csv / train.csv
    test: Blob | None = None  # the challenge's test.csv beside train.csv
    root: Path | None = None  # image tree: a directory, or a zip file
    images: tuple[tuple[int, int, str], ...] = ()  # (split, label, path relative to root)
