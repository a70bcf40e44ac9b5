"""Image-folder trees: ``<root>/train/<class>/*.png|jpg|jpeg`` plus ``test/`` and optionally
``val/`` or ``validation/``, on disk or in a zip.

Class folders match EMOTIONS case-insensitively, with aliases ("Happiness", "anger",
"surprised", ...). Images that are not 48x48 grayscale are converted to grayscale (Pillow
``convert("L")``, ITU-R 601-2 luma) and resized to 48x48 with antialiased bilinear resampling,
stretching non-square images rather than cropping them (a crop could cut the face); a note says
how many were converted.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from fer_search.config import EMOTIONS, IMAGE_SIZE
from fer_search.data.formats import (
    ACCEPTED,
    CLASS_ALIASES,
    IMAGE_SUFFIXES,
    SPLIT_DIRS,
    Parsed,
    Source,
)
from fer_search.errors import UserError, did_you_mean


def tree_entries(names: list[str], where: str) -> tuple[tuple[int, int, str], ...]:
    """(split, label, name) for image files named ``.../<split>/<class>/<file>``, sorted."""
    out = []
    for name in names:
        parts = PurePosixPath(name).parts
        is_image = name.lower().endswith(IMAGE_SUFFIXES) and not parts[-1].startswith(".")
        if len(parts) < 3 or parts[-3].lower() not in SPLIT_DIRS or not is_image:
            continue
        folder = parts[-2]
        if folder.lower() not in CLASS_ALIASES:
            raise UserError(
                f"{where}: unknown class folder {'/'.join(parts[-3:-1])!r}; class folders are "
                f"{', '.join(EMOTIONS)}{did_you_mean(folder.lower(), CLASS_ALIASES)}"
            )
        out.append((SPLIT_DIRS[parts[-3].lower()], CLASS_ALIASES[folder.lower()], name))
    return tuple(sorted(out))


def parse_tree(source: Source) -> Parsed:
    assert source.root is not None
    if not any(split == 0 for split, _, _ in source.images):
        raise UserError(
            f"{source.name}: no train/<class>/*.png|jpg images found; expected {ACCEPTED}"
        )
    images = np.empty((len(source.images), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    converted = 0
    archive = zipfile.ZipFile(source.root) if source.root.is_file() else None
    try:
        for k, (_, _, name) in enumerate(source.images):
            images[k], changed = _read_image(source.root, name, archive)
            converted += changed
    finally:
        if archive is not None:
            archive.close()
    splits = np.array([s for s, _, _ in source.images], np.int8)
    labels = np.array([c for _, c, _ in source.images], np.int64)
    notes = [f"image folders under {source.name}"]
    if converted:
        notes.append(
            f"warning: {converted:,} image(s) were not {IMAGE_SIZE}x{IMAGE_SIZE} "
            f"grayscale; converted to grayscale and resized to {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if not (splits == 2).any():
        notes.append(f"no test/<class>/ images under {source.name}: no labelled test split")
    return Parsed(images, labels, splits, "folders", notes)


def _read_image(root: Path, name: str, archive: zipfile.ZipFile | None) -> tuple[np.ndarray, bool]:
    from PIL import Image

    where = f"{root}:{name}" if archive else str(root / name)
    try:
        fh = io.BytesIO(archive.read(name)) if archive else (root / name).open("rb")
        with fh, Image.open(fh) as file:
            image: Image.Image = file
            image.load()
            changed = image.mode != "L" or image.size != (IMAGE_SIZE, IMAGE_SIZE)
            if image.mode != "L":
                image = image.convert("L")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8), changed
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(f"{where}: cannot read the image ({err})") from None
