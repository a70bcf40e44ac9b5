"""The FER2013 CSV parser and its validation messages.

Reads the Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``; Training -> train, PublicTest ->
val, PrivateTest -> test), ``icml_face_data.csv`` (the same columns, header names with leading
spaces) and the challenge's ``train.csv`` (``emotion,pixels``) with an optional ``test.csv``
beside it (one without an ``emotion`` column, the Kaggle one, gives no labelled test split).

Pixels are parsed a block at a time with numpy; a row that looks wrong is re-parsed token by
token, so every problem is reported with its line number. pandas was measured as a
replacement and not taken: see docs/data.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from fer_search.config import EMOTIONS, IMAGE_SIZE, SPLITS
from fer_search.data.blobs import blob_chunks
from fer_search.data.formats import ACCEPTED, PIXELS, USAGES, Blob, Parsed, Source
from fer_search.errors import UserError, did_you_mean


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Split pieces of text into lines (without the newline; a CRLF file loses its CRs)."""
    rest, crlf = b"", None
    for chunk in chunks:
        lines = (rest + chunk if rest else chunk).split(b"\n")
        rest = lines.pop()
        if crlf is None and lines:
            crlf = lines[0].endswith(b"\r")
        if crlf:
            lines = [line.removesuffix(b"\r") for line in lines]
        yield from lines
    if rest:
        yield rest.removesuffix(b"\r")


def _header(lines: Iterator[bytes], name: str) -> list[str]:
    """The header names, stripped and lower-cased ("emotion, Usage, pixels" is fine)."""
    first = next(lines, b"").removeprefix(b"\xef\xbb\xbf")
    try:
        header = [h.strip().strip('"').strip().lower() for h in first.decode().split(",")]
    except UnicodeDecodeError:
        raise UserError(f"{name}: not a CSV text file; expected {ACCEPTED}") from None
    if header == [""]:
        raise UserError(
            f"{name}: the file is empty or its first line is blank; the first line "
            "must be the header emotion,pixels,Usage"
        )
    return header


def _columns(header: list[str], name: str, required: tuple[str, ...]) -> dict[str, int]:
    missing = [c for c in required if c not in header]
    if missing:
        found = ", ".join(h[:20] for h in header[:8])
        raise UserError(
            f"{name}: missing column(s) {', '.join(missing)}; found columns: {found}; expected "
            "emotion,pixels,Usage (fer2013.csv, icml_face_data.csv) or emotion,pixels (train.csv)"
        )
    return {h: i for i, h in enumerate(header)}


def _rows(lines: Iterator[bytes], ncols: int, name: str) -> Iterator[list[bytes]]:
    """The fields of each data line, checking their count; blank lines may only end the file."""
    blank, quoted = None, None
    for i, line in enumerate(lines):
        if not line or line.isspace():
            blank = i if blank is None else blank
            continue
        if blank is not None:
            raise UserError(f"{name} line {blank + 2} is blank; blank lines may only end the file")
        fields = line.split(b",")
        if len(fields) != ncols:
            raise UserError(
                f"{name} line {i + 2}: {len(fields)} comma-separated fields, expected "
                f"{ncols} like the header (the header is line 1)"
            )
        if quoted is None:
            quoted = b'"' in line
        yield [f.strip().strip(b'"') for f in fields] if quoted else fields


def _parse_pixels_slow(text: bytes, name: str, row: int) -> np.ndarray:
    """Validate one pixel field token by token; raise a UserError naming the first problem."""
    tokens = text.split()
    where = f"{name} line {row + 2} (data row {row + 1}; the header is line 1)"
    if len(tokens) != PIXELS:
        raise UserError(
            f"{where}: pixels has {len(tokens)} values, expected {PIXELS} "
            f"({IMAGE_SIZE}x{IMAGE_SIZE}); the row is truncated or malformed"
        )
    for j, token in enumerate(tokens):
        if not token.isdigit() or int(token) > 255:
            raise UserError(
                f"{where}: pixel {j + 1} is {token.decode(errors='replace')!r}; "
                "pixels must be integers 0..255"
            )
    return np.array([int(t) for t in tokens], dtype=np.int16)


class _PixelBlocks:
    """Parsed pixel rows, validated and stored as uint8 a block at a time."""

    def __init__(self, name: str, size: int = 2048) -> None:
        self.name, self.size = name, size
        self.done: list[np.ndarray] = []  # uint8 blocks
        self.block = np.empty((size, PIXELS), np.int16)
        self.texts: list[bytes] = []  # this block's pixel fields, for re-checking rows

    def add(self, text: bytes) -> None:
        row = len(self.done) * self.size + len(self.texts)
        try:
            values = np.fromstring(text, dtype=np.int16, sep=" ")
        except (ValueError, DeprecationWarning):
            values = _parse_pixels_slow(text, self.name, row)
        if values.size != PIXELS:
            values = _parse_pixels_slow(text, self.name, row)
        self.block[len(self.texts)] = values
        self.texts.append(text)
        if len(self.texts) == self.size:
            self.flush()

    def flush(self) -> None:
        values = self.block[: len(self.texts)]
        _check_pixels(values, self.texts, len(self.done) * self.size, self.name)
        self.done.append(values.astype(np.uint8))
        self.texts = []

    def images(self) -> np.ndarray:
        if self.texts:
            self.flush()
        return np.concatenate(self.done).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _check_pixels(values: np.ndarray, texts: list[bytes], first_row: int, name: str) -> None:
    """Catch what the fast parser lets through: values out of 0..255 (int16 wraps huge ones)
    and text that is not single-spaced plain digits (its length gives it away). Rows that fail
    are re-parsed token by token, which raises on a real problem."""
    bad: Any = False
    if values.min() < 0 or values.max() > 255:
        bad = (values.view(np.uint16) > 255).any(1)
    digits = np.count_nonzero(values >= 10, 1) + np.count_nonzero(values >= 100, 1)
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    for row in np.flatnonzero(bad | (digits + 2 * PIXELS - 1 != lengths)):
        slow = _parse_pixels_slow(texts[row], name, first_row + int(row))
        if (slow != values[row]).any():
            raise AssertionError(f"{name} row {first_row + row}: fast and slow parses disagree")


def _parse_labels(fields: list[bytes], name: str) -> np.ndarray:
    try:
        return _check_labels(np.array([int(f) for f in fields], dtype=np.int64), fields, name)
    except ValueError:
        pass
    for i, f in enumerate(fields):
        try:
            int(f)
        except ValueError:
            raise UserError(
                f"{name} line {i + 2}: emotion {f.decode(errors='replace')!r} is not "
                "an integer 0..6 (0=angry ... 6=neutral)"
            ) from None
    raise AssertionError("unreachable")


def _check_labels(labels: np.ndarray, fields: list[bytes], name: str) -> np.ndarray:
    bad = np.flatnonzero((labels < 0) | (labels >= len(EMOTIONS)))
    if bad.size:
        i = int(bad[0])
        raise UserError(
            f"{name} line {i + 2}: emotion {fields[i].decode()!r} is outside 0..6 "
            "(0=angry, 1=disgust, 2=fear, 3=happy, 4=sad, 5=surprise, 6=neutral)"
        )
    return labels


def _parse_usage(fields: list[bytes], name: str) -> np.ndarray:
    try:
        return np.array([USAGES[f.strip()] for f in fields], dtype=np.int8)
    except KeyError:
        pass
    choices = [u.decode() for u in USAGES]
    for i, f in enumerate(fields):
        if f.strip() not in USAGES:
            value = f.strip().decode(errors="replace")
            raise UserError(
                f"{name} line {i + 2}: Usage {value!r} is not one of "
                f"{', '.join(choices)}{did_you_mean(value, choices)}"
            )
    raise AssertionError("unreachable")


def _parse_csv(blob: Blob) -> Parsed:
    """Parse one labelled CSV; ``kind`` is kaggle when it has a Usage column."""
    lines = _lines(blob_chunks(blob))
    header = _header(lines, blob.name)
    cols = _columns(header, blob.name, ("emotion", "pixels"))
    ip, ie, iu = cols["pixels"], cols["emotion"], cols.get("usage")
    pixels, emotions, usages = _PixelBlocks(blob.name), [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy 1.x: partial parses warn
        for fields in _rows(lines, len(header), blob.name):
            pixels.add(fields[ip])
            emotions.append(fields[ie])
            if iu is not None:
                usages.append(fields[iu])
    if not emotions:
        raise UserError(f"{blob.name}: has a header but no data rows")
    labels = _parse_labels(emotions, blob.name)
    splits = _parse_usage(usages, blob.name) if iu is not None else np.zeros(len(labels), np.int8)
    extra = [h for h in header if h not in ("emotion", "pixels", "usage")]
    notes = [f"{blob.name}: ignored column(s) {', '.join(extra)}"] if extra else []
    kind = "kaggle" if iu is not None else "challenge"
    return Parsed(pixels.images(), labels, splits, kind, notes)


def parse_csv_source(source: Source) -> Parsed:
    assert source.main is not None
    parsed = _parse_csv(source.main)
    if parsed.kind == "kaggle":
        for index, usage in enumerate(USAGES):
            if not (parsed.splits == index).any():
                raise UserError(
                    f"{source.name}: no rows with Usage {usage.decode()!r}, so the "
                    f"{SPLITS[index]} split is empty; FER2013 has Training, "
                    "PublicTest and PrivateTest rows"
                )
        parsed.notes.append(
            "Kaggle FER2013 splits: Training -> train, PublicTest -> val, PrivateTest -> test"
        )
        return parsed
    if source.test is None:
        parsed.notes.append(f"no test.csv beside {source.name}: no labelled test split")
        return parsed
    return _add_challenge_test(parsed, source.test)


def _add_challenge_test(parsed: Parsed, blob: Blob) -> Parsed:
    header = _header(_lines(blob_chunks(blob)), blob.name)
    if "emotion" not in header:
        _columns(header, blob.name, ("pixels",))
        parsed.notes.append(
            f"{blob.name} has no emotion column (the challenge's unlabelled "
            "test set): no labelled test split"
        )
        return parsed
    test = _parse_csv(blob)
    return Parsed(
        np.concatenate([parsed.images, test.images]),
        np.concatenate([parsed.labels, test.labels]),
        np.concatenate([parsed.splits, np.full(len(test.labels), 2, np.int8)]),
        "challenge",
        parsed.notes + test.notes + [f"test split from {blob.name}"],
    )
