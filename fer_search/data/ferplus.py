"""FER+ labels: microsoft/FERPlus's fer2013new.csv, aligned row by row with the Kaggle csv,
turned into majority labels or soft vote distributions (see :func:`fer_search.data.load_data`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fer_search.data.blobs import read_blob
from fer_search.data.formats import USAGES, Blob, Parsed, Source
from fer_search.errors import UserError

FERPLUS_COLUMNS = (
    "usage",
    "image name",
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "nf",
)
FERPLUS_VOTES = FERPLUS_COLUMNS[2:]  # 8 emotions, unknown, NF
FERPLUS_TO_OURS = [
    FERPLUS_VOTES.index(n)
    for n in ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
]


def _read_ferplus(path: Path, parsed: Parsed) -> tuple[np.ndarray, np.ndarray]:
    """(votes int64 (N, 10) in FERPLUS_VOTES order, has image name (N,)) checked against FER2013."""
    import csv

    if not path.exists():
        raise UserError(f"FER+ file {str(path)!r} does not exist; pass the path of fer2013new.csv")
    blob = Blob(path)
    text = read_blob(blob).decode("utf-8-sig", errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    header = [h.strip().lower() for h in rows[0]]
    cols = _ferplus_columns(header, blob.name)
    rows = [r for r in rows[1:] if r]
    if len(rows) != len(parsed.labels):
        raise UserError(
            f"{path}: {len(rows):,} data rows but the FER2013 csv has "
            f"{len(parsed.labels):,}; fer2013new.csv must align row by row with it"
        )
    votes = np.empty((len(rows), len(FERPLUS_VOTES)), np.int64)
    vote_cols = [cols[c] for c in FERPLUS_VOTES]
    for i, row in enumerate(rows):
        try:
            votes[i] = [int(row[c]) for c in vote_cols]
        except (ValueError, IndexError):
            raise UserError(
                f"{path} line {i + 2}: vote counts must be integers, got {','.join(row[2:])!r}"
            ) from None
    if (votes < 0).any():
        raise UserError(
            f"{path} line {int(np.flatnonzero((votes < 0).any(1))[0]) + 2}: negative vote count"
        )
    usages = [u.decode() for u in USAGES]
    for i in np.flatnonzero(
        [
            row[cols["usage"]].strip() != usages[s]
            for row, s in zip(rows, parsed.splits, strict=True)
        ]
    )[:1]:
        raise UserError(
            f"{path} line {i + 2}: Usage {rows[i][cols['usage']]!r} but FER2013 row "
            f"{i} is {usages[parsed.splits[i]]}; the files are not aligned row by row"
        )
    names = np.array([bool(row[cols["image name"]].strip()) for row in rows])
    return votes, names


def _ferplus_columns(header: list[str], name: str) -> dict[str, int]:
    missing = [c for c in FERPLUS_COLUMNS if c not in header]
    if missing:
        raise UserError(
            f"{name}: missing FER+ column(s) {', '.join(missing)}; found "
            f"{', '.join(header[:12])}; expected fer2013new.csv from microsoft/FERPlus"
        )
    return {h: i for i, h in enumerate(header)}


def apply_ferplus(
    path: Path, mode: str, parsed: Parsed, source: Source
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, str]:
    """(labels, soft labels or None, rows kept, note) from FER+ votes; see load_data."""
    if parsed.kind != "kaggle":
        raise UserError(
            f"FER+ labels ({path}) align only with the Kaggle fer2013.csv or "
            f"icml_face_data.csv, not {source.name}"
        )
    votes, named = _read_ferplus(path, parsed)
    top = votes.max(1, keepdims=True)
    at_top = votes == top
    junk = at_top[:, 8] | at_top[:, 9]  # unknown or NF among the most voted
    ours = votes[:, FERPLUS_TO_OURS].astype(np.float32)
    if mode == "soft":
        keep = named & ~junk & (ours.sum(1) > 0)
        soft = np.zeros_like(ours)
        soft[keep] = ours[keep] / ours[keep].sum(1, keepdims=True)
        note = (
            f"FER+ soft labels from {path}: {int(keep.sum()):,} rows kept, dropped "
            f"{int((~named).sum())} unnamed and {int((named & ~keep).sum())} "
            "unknown/NF-majority or vote-less rows"
        )
        return soft.argmax(1).astype(np.int64), soft, keep, note
    contempt = ~junk & at_top[:, 7]
    tie = ~junk & ~contempt & (at_top.sum(1) > 1)
    keep = named & ~junk & ~contempt & ~tie
    labels = np.argmax(votes[:, FERPLUS_TO_OURS], axis=1).astype(np.int64)
    note = (
        f"FER+ majority labels from {path}: {int(keep.sum()):,} rows kept, dropped "
        f"{int((~named).sum())} unnamed, {int((named & junk).sum())} unknown/NF, "
        f"{int((named & contempt).sum())} contempt, {int((named & tie).sum())} ties"
    )
    return labels, None, keep, note
