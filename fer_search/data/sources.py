"""Resolving --data: a CSV file (plain, gzip, zip), an image-folder tree, a zip of any name
(Kaggle's archive.zip), a directory holding any of these (also in a fer2013/ sub-directory),
or "demo"."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from fer_search.data.blobs import magic
from fer_search.data.folders import tree_entries
from fer_search.data.formats import (
    ACCEPTED,
    COMPRESSED,
    CSV_NAMES,
    DEMO_HINT,
    SPLIT_DIRS,
    Blob,
    Source,
)
from fer_search.errors import UserError


def resolve_data_path(path: str | Path | None) -> str | Path:
    """None -> ./data when it holds FER2013 in a supported form, else "demo"; check the path."""
    if path is None:
        default = Path.cwd() / "data"
        return default if default.is_dir() and _find_in_dir(default) else "demo"
    if str(path) == "demo":
        return "demo"
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UserError(
            f"data path {str(path)!r} does not exist; pass {DEMO_HINT}, a folder holding it, "
            "or --data demo"
        )
    return resolved


def _listing(directory: Path) -> dict[str, Path]:
    try:
        return {p.name.lower(): p for p in directory.iterdir()}
    except OSError as err:
        raise UserError(f"{directory}: cannot list the folder ({err.strerror})") from None


def _find_in_dir(directory: Path) -> Path | None:
    """The file or image-tree root in ``directory`` that holds FER2013, or None (names only)."""
    entries = _listing(directory)
    for base in CSV_NAMES:
        for suffix in COMPRESSED:
            if (hit := entries.get(base + suffix)) and hit.is_file():
                return hit
    if (hit := entries.get("fer2013.tar.gz")) and hit.is_file():
        return hit
    train = entries.get("train")
    if train and train.is_dir() and any(p.is_dir() for p in train.iterdir()):
        return directory
    nested = entries.get("fer2013")
    if nested and nested.is_dir() and (hit := _find_in_dir(nested)):
        return hit
    zips = sorted(p for n, p in entries.items() if n.endswith(".zip") and p.is_file())
    return next((z for z in zips if _zip_holds_fer(z)), None)


def _zip_holds_fer(path: Path) -> bool:
    """Whether a zip of any name (Kaggle's downloads are archive.zip, ...) holds FER2013."""
    try:
        _zip_source(path)
    except UserError:
        return False
    return True


def source_for(path: Path) -> Source:
    if path.is_dir():
        found = _find_in_dir(path)
        if found is None:
            names = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
            raise UserError(
                f"{path}: no FER2013 data found (it holds {names}); expected one of {ACCEPTED}"
            )
        return _tree_source(found) if found.is_dir() else _file_source(found)
    return _file_source(path)


def _file_source(path: Path) -> Source:
    if magic(path) == "zip":
        return _zip_source(path)
    test = None
    if _base_name(path.name) == "train.csv":
        entries = _listing(path.parent)
        hits = [entries[n] for n in ("test.csv" + s for s in COMPRESSED) if n in entries]
        test = Blob(hits[0]) if hits else None
    return Source(str(path), main=Blob(path), test=test)


def _base_name(name: str) -> str:
    name = name.lower()
    for suffix in (".gz", ".zip"):
        name = name.removesuffix(suffix)
    return name


def _zip_source(path: Path) -> Source:
    names = [n for n in _zip_names(path) if not n.endswith("/") and "__MACOSX" not in n]
    images = tree_entries(names, str(path))
    if images:
        return Source(str(path), root=path, images=images)
    by_base = {PurePosixPath(n).name.lower(): n for n in names}
    for base in CSV_NAMES:
        if base in by_base:
            member = by_base[base]
            test = by_base.get("test.csv") if base == "train.csv" else None
            return Source(
                f"{path}:{member}",
                main=Blob(path, member),
                test=Blob(path, test) if test else None,
            )
    csvs = [n for n in names if n.lower().endswith(".csv")]
    if len(csvs) == 1:
        return Source(f"{path}:{csvs[0]}", main=Blob(path, csvs[0]))
    found = ", ".join(names[:6]) or "no files"
    raise UserError(f"{path}: zip holds no FER2013 data (found {found}); expected {ACCEPTED}")


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(
            f"{path}: cannot read the zip archive ({err}); the file is truncated or "
            "corrupt, download it again"
        ) from None


def _tree_source(root: Path) -> Source:
    entries = _listing(root)
    names = []
    for split_dir in (p for n, p in entries.items() if n in SPLIT_DIRS and p.is_dir()):
        for class_dir in (p for p in split_dir.iterdir() if p.is_dir()):
            names += [f"{split_dir.name}/{class_dir.name}/{f.name}" for f in class_dir.iterdir()]
    return Source(str(root), root=root, images=tree_entries(names, str(root)))
