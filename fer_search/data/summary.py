"""Summaries of loaded data: a JSON-ready dict and a readable table."""

from __future__ import annotations

from typing import Any

from fer_search.config import IMAGE_SIZE
from fer_search.data.splits import FERData


def summarize(data: FERData) -> dict[str, Any]:
    """A JSON-ready summary: source, class names, image shape, notes, per-split class counts."""
    return {
        "source": data.source,
        "class_names": list(data.class_names),
        "image_shape": [IMAGE_SIZE, IMAGE_SIZE],
        "notes": list(data.notes),
        "splits": {name: split.counts() for name, split in data.splits.items()},
    }


def format_summary(data: FERData) -> str:
    """A readable table: one row per split, a column per class, the total, then the notes."""
    names = list(data.class_names)
    header = ["split", *names, "total"]
    rows = [header]
    for name, split in data.splits.items():
        counts = split.counts()
        rows.append([name, *(f"{counts[c]:,}" for c in names), f"{len(split):,}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"data: {data.source}  (images {IMAGE_SIZE}x{IMAGE_SIZE} grayscale uint8)"]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    lines += [f"note: {note}" for note in data.notes]
    return "\n".join(lines)
