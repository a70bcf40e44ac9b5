"""FER2013 readers, synthetic demo data, splits and the parsed-data cache.

``load_data(path)`` returns a :class:`FERData` with ``train``/``val``/``test`` splits of 48x48
uint8 images. Accepted sources (each CSV may also be gzip- or zip-compressed; compression is
detected from the file's first bytes, so a misnamed file still reads):

* the Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``; Training -> train, PublicTest -> val,
  PrivateTest -> test), also inside the Kaggle ``fer2013.tar.gz``;
* ``icml_face_data.csv`` (the same columns, header names with leading spaces);
* the challenge's ``train.csv`` (``emotion,pixels``) with an optional ``test.csv`` beside it; a
  test.csv without an ``emotion`` column (the Kaggle one) gives no labelled test split;
* an image-folder tree ``<root>/train/<class>/*.png|jpg|jpeg`` plus ``test/`` and optionally
  ``val/`` or ``validation/``; a ``.zip`` of such a tree works too. Class folders match
  EMOTIONS case-insensitively, with aliases ("Happiness", "anger", "surprised", ...). Images that
  are not 48x48 grayscale are converted to grayscale (Pillow ``convert("L")``, ITU-R 601-2 luma)
  and resized to 48x48 with antialiased bilinear resampling, stretching non-square images rather
  than cropping them (a crop could cut the face); a note says how many were converted;
* a directory holding any of the above (also in a ``fer2013/`` sub-directory, or in a zip of
  any name, such as Kaggle's ``archive.zip``).

Where a source has no validation split (train.csv, image trees without val/), a stratified
``val_fraction`` of train is carved off with a fixed seed.

Parsing the 300 MB CSV takes a few seconds, so the parsed arrays (all 7 classes, before FER+
relabelling, class sets and val carving, which are cheap and applied on every load) are cached as
an uncompressed ``.npz`` in :func:`cache_dir`. The cache key hashes, with BLAKE2b, a format
version and for every source file its absolute path, size, modification time and first and last
MiB (hashing all 300 MB would cost more than a cached load; an edit that keeps size and mtime is
not seen); an image tree is keyed by every image's relative path, size and modification time.
A cache file that cannot be read is rebuilt; an unwritable cache directory only disables caching.

FER+ (``ferplus=fer2013new.csv``) replaces the FER2013 labels row by row, either with majority
labels or with soft vote distributions; see :func:`load_data`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import tarfile
import tempfile
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from fer_search.config import CLASS_SETS, EMOTIONS, IMAGE_SIZE, SPLITS
from fer_search.errors import UserError, did_you_mean

__all__ = [
    "FERData",
    "FERSplit",
    "cache_dir",
    "format_summary",
    "load_data",
    "make_demo",
    "resolve_data_path",
    "summarize",
]

PIXELS = IMAGE_SIZE * IMAGE_SIZE
FORMAT_VERSION = 1  # bump when the cached arrays or their meaning change
FERPLUS_MODES = ("majority", "soft")
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
_MIB = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, so keep identity eq
class FERSplit:
    """One split: ``images`` uint8 (N, 48, 48), ``labels`` int64 (N,) indexing ``class_names``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    soft_labels: np.ndarray | None = None  # float32 (N, C) FER+ vote distribution

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.shape != (n, IMAGE_SIZE, IMAGE_SIZE) or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images {self.images.shape} {self.images.dtype}")
        if self.labels.dtype != np.int64:
            raise ValueError(f"{self.name}: labels dtype {self.labels.dtype}, expected int64")
        if self.soft_labels is not None and self.soft_labels.shape != (n, len(self.class_names)):
            raise ValueError(f"{self.name}: soft_labels shape {self.soft_labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Class name -> number of images, every class included."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}


@dataclass
class FERData:
    """The splits (keys in train, val, test order), class names, where they came from, notes."""

    splits: dict[str, FERSplit]
    class_names: tuple[str, ...]
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _Parsed:
    """What a source parses to, before FER+, class sets and val carving (this is cached)."""

    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,), EMOTIONS index
    splits: np.ndarray  # int8 (N,), SPLITS index
    kind: str  # "kaggle" | "challenge" | "folders"
    notes: list[str]


@dataclass(frozen=True)
class _Blob:
    """A file on disk, or a member of a zip archive on disk."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class _Source:
    """A resolved data source: CSV file(s), or an image tree on disk or in a zip."""

    name: str
    main: _Blob | None = None  # fer2013.csv / icml_face_data.csv / train.csv
    test: _Blob | None = None  # the challenge's test.csv beside train.csv
    root: Path | None = None  # image tree: a directory, or a zip file
    images: tuple[tuple[int, int, str], ...] = ()  # (split, label, path relative to root)


# --------------------------------------------------------------------------- entry points


def cache_dir() -> Path:
    """$FER_SEARCH_CACHE if set, else the per-user cache directory of fer-search."""
    return _user_cache_dir()


def _user_cache_dir() -> Path:  # load_data's cache_dir argument shadows cache_dir()
    env = os.environ.get("FER_SEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fer-search"))


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


def load_data(
    path: str | Path | None = None,
    *,
    class_set: str = "all",
    ferplus: str | Path | None = None,
    ferplus_mode: str = "majority",
    val_fraction: float = 0.1,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    demo_size: float = 1,
) -> FERData:
    """Load FER2013 (any supported form) or the demo data, split into train/val/test.

    ``path`` None uses ./data when it holds FER2013, else the demo data (with a note saying so);
    "demo" forces the demo. ``class_set`` is one of CLASS_SETS. ``ferplus`` names FER+'s
    fer2013new.csv, aligned row by row with a Kaggle/icml csv; ``ferplus_mode="majority"`` drops
    rows without an image name, rows whose most-voted class is unknown, NF or contempt, and ties,
    and labels the rest with the most-voted class (note: FERPlus's own code additionally discards
    single votes and needs more than half of the votes); ``"soft"`` keeps the vote distribution
    over the 7 classes (dropping unnamed rows, unknown/NF-majority rows and rows with no votes on
    them) in ``soft_labels`` and labels each row with its first most-voted class.
    ``val_fraction`` and ``seed`` only matter where val is carved from train.
    """
    _check_options(class_set, ferplus_mode, val_fraction, seed)
    resolved = resolve_data_path(path)
    if resolved == "demo":
        return _demo_data(path, ferplus, demo_size, seed, class_set)
    source = _source_for(Path(resolved))
    directory = Path(cache_dir) if cache_dir is not None else _user_cache_dir()
    parsed = _load_parsed(source, directory if cache else None)
    present = tuple(int(i) for i in np.unique(parsed.splits))
    labels, soft, keep, notes = parsed.labels, None, None, list(parsed.notes)
    if ferplus is not None:
        labels, soft, keep, note = _apply_ferplus(Path(ferplus), ferplus_mode, parsed, source)
        notes.append(note)
    images, splits = parsed.images, parsed.splits
    if keep is not None:
        images, labels, splits = images[keep], labels[keep], splits[keep]
        soft = soft[keep] if soft is not None else None
    return _assemble(
        images, labels, splits, soft, class_set, val_fraction, seed, source.name, notes, present
    )


def make_demo(size: float = 1, seed: int = 0, class_set: str = "all") -> FERData:
    """Synthetic cartoon faces, 48x48 uint8, the 7 FER2013 classes, balanced and deterministic.

    ``size=1`` gives 300 train, 50 val and 50 test images per class (2,100 / 350 / 350); the
    counts scale linearly with ``size`` (a fraction such as 0.1 is fine for quick tests). Each
    split is drawn from its own generator seeded with ``(seed, split index)``.
    """
    _check_options(class_set, "majority", 0.1, seed)
    if not size > 0:
        raise UserError(f"demo size must be > 0, got {size!r}")
    per_class = {"train": 300, "val": 50, "test": 50}
    names, splits = _class_set_names(class_set), {}
    for index, split in enumerate(SPLITS):
        n = max(1, round(per_class[split] * size))
        rng = np.random.default_rng([seed, index])
        labels = rng.permutation(np.repeat(np.arange(len(EMOTIONS), dtype=np.int64), n))
        images = _render_faces(labels, rng)
        keep, labels, _ = _map_class_set(labels, None, class_set)
        splits[split] = FERSplit(split, images[keep], labels, names)
    note = (
        f"synthetic demo data (size={size}, seed={seed}): cartoon faces, not FER2013; "
        f"for real results pass {DEMO_HINT}"
    )
    return FERData(splits, names, "demo", [note])


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


# --------------------------------------------------------------------------- options, demo


def _check_options(class_set: str, ferplus_mode: str, val_fraction: float, seed: int) -> None:
    if class_set not in CLASS_SETS:
        raise UserError(
            f"unknown class set {class_set!r}; choose one of "
            f"{', '.join(CLASS_SETS)}{did_you_mean(class_set, CLASS_SETS)}"
        )
    if ferplus_mode not in FERPLUS_MODES:
        raise UserError(
            f"unknown FER+ mode {ferplus_mode!r}; choose one of "
            f"{', '.join(FERPLUS_MODES)}{did_you_mean(ferplus_mode, FERPLUS_MODES)}"
        )
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val fraction must be between 0 and 1, got {val_fraction!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be an integer >= 0, got {seed!r}")


def _demo_data(path: Any, ferplus: Any, size: float, seed: int, class_set: str) -> FERData:
    if ferplus is not None:
        raise UserError(f"FER+ labels ({ferplus}) need the real fer2013.csv; pass {DEMO_HINT}")
    data = make_demo(size, seed, class_set)
    if path is None:
        data.notes.insert(
            0,
            f"no --data given and {Path.cwd() / 'data'} holds no FER2013, so "
            f"using the synthetic demo data; point at real data with {DEMO_HINT}",
        )
    return data


# --------------------------------------------------------------------------- splits, class sets


def _class_set_names(class_set: str) -> tuple[str, ...]:
    if class_set == "all":
        return EMOTIONS
    return tuple(name for name in EMOTIONS if name != "disgust")


def _map_class_set(
    labels: np.ndarray, soft: np.ndarray | None, class_set: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (rows kept, new labels, new soft labels) for ``class_set``; disgust is class 1."""
    if class_set == "all":
        return np.ones(len(labels), bool), labels, soft
    if soft is not None:
        soft = soft.copy()
        if class_set == "merge-disgust":
            soft[:, 0] += soft[:, 1]
        soft = np.delete(soft, 1, axis=1)
        keep = soft.sum(1) > 0
        if class_set == "drop-disgust":
            keep &= labels != 1
        soft = soft[keep] / soft[keep].sum(1, keepdims=True)
        return keep, soft.argmax(1).astype(np.int64), soft.astype(np.float32)
    if class_set == "merge-disgust":
        labels = np.where(labels == 1, 0, labels)
    keep = labels != 1
    kept = labels[keep]
    return keep, (kept - (kept > 1)).astype(np.int64), None


def _carve_val(labels: np.ndarray, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified validation subset: ``fraction`` of every class (>= 1 image
    for a class with 2 or more, never all of one)."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(labels), bool)
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        if rows.size < 2:
            continue
        k = min(max(1, round(rows.size * fraction)), rows.size - 1)
        val[rng.permutation(rows)[:k]] = True
    return val


def _assemble(
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    soft: np.ndarray | None,
    class_set: str,
    val_fraction: float,
    seed: int,
    source: str,
    notes: list[str],
    present: tuple[int, ...],
) -> FERData:
    """Apply the class set, carve val from train when the source has none, build the splits;
    a split the source had (``present``, SPLITS indices) must not end up empty."""
    keep, labels, soft = _map_class_set(labels, soft, class_set)
    images, splits = images[keep], splits[keep]
    names = _class_set_names(class_set)
    if class_set != "all":
        how = "disgust dropped" if class_set == "drop-disgust" else "disgust -> angry"
        notes.append(f"class set {class_set}: {len(names)} classes ({how})")
    if 1 not in present:
        present = (*present, 1)
        splits = splits.copy()
        train = np.flatnonzero(splits == 0)
        splits[train[_carve_val(labels[train], len(names), val_fraction, seed)]] = 1
        notes.append(
            f"val split carved from train: {val_fraction:.0%} stratified per class, "
            f"seed {seed} ({int((splits == 1).sum()):,} images)"
        )
    out = {}
    for index, name in enumerate(SPLITS):
        rows = np.flatnonzero(splits == index)
        if rows.size == 0 and index in present:
            raise UserError(
                f"{source}: the {name} split is empty after FER+ filtering and "
                f"class set {class_set!r}"
            )
        if rows.size:
            out[name] = FERSplit(
                name,
                np.ascontiguousarray(images[rows]),
                labels[rows],
                names,
                None if soft is None else soft[rows],
            )
    return FERData(out, names, source, notes)


# --------------------------------------------------------------------------- resolving sources


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


def _source_for(path: Path) -> _Source:
    if path.is_dir():
        found = _find_in_dir(path)
        if found is None:
            names = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
            raise UserError(
                f"{path}: no FER2013 data found (it holds {names}); expected one of {ACCEPTED}"
            )
        return _tree_source(found) if found.is_dir() else _file_source(found)
    return _file_source(path)


def _file_source(path: Path) -> _Source:
    if _magic(path) == "zip":
        return _zip_source(path)
    test = None
    if _base_name(path.name) == "train.csv":
        entries = _listing(path.parent)
        hits = [entries[n] for n in ("test.csv" + s for s in COMPRESSED) if n in entries]
        test = _Blob(hits[0]) if hits else None
    return _Source(str(path), main=_Blob(path), test=test)


def _base_name(name: str) -> str:
    name = name.lower()
    for suffix in (".gz", ".zip"):
        name = name.removesuffix(suffix)
    return name


def _zip_source(path: Path) -> _Source:
    names = [n for n in _zip_names(path) if not n.endswith("/") and "__MACOSX" not in n]
    images = _tree_entries(names, str(path))
    if images:
        return _Source(str(path), root=path, images=images)
    by_base = {PurePosixPath(n).name.lower(): n for n in names}
    for base in CSV_NAMES:
        if base in by_base:
            member = by_base[base]
            test = by_base.get("test.csv") if base == "train.csv" else None
            return _Source(
                f"{path}:{member}",
                main=_Blob(path, member),
                test=_Blob(path, test) if test else None,
            )
    csvs = [n for n in names if n.lower().endswith(".csv")]
    if len(csvs) == 1:
        return _Source(f"{path}:{csvs[0]}", main=_Blob(path, csvs[0]))
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


def _tree_source(root: Path) -> _Source:
    entries = _listing(root)
    names = []
    for split_dir in (p for n, p in entries.items() if n in SPLIT_DIRS and p.is_dir()):
        for class_dir in (p for p in split_dir.iterdir() if p.is_dir()):
            names += [f"{split_dir.name}/{class_dir.name}/{f.name}" for f in class_dir.iterdir()]
    return _Source(str(root), root=root, images=_tree_entries(names, str(root)))


def _tree_entries(names: list[str], where: str) -> tuple[tuple[int, int, str], ...]:
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


# --------------------------------------------------------------------------- reading bytes


def _magic(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise UserError(f"{path}: cannot read the file ({err.strerror})") from None
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if path.name.lower().endswith((".gz", ".zip")):
        kind = "gzip" if path.name.lower().endswith(".gz") else "zip"
        raise UserError(
            f"{path}: named like a {kind} file but is not {kind} data; the file is "
            "truncated or corrupt, download it again (or rename it)"
        )
    return "plain"


def _raw_bytes(blob: _Blob) -> bytes:
    """The bytes of a file, or of a zip member, as stored."""
    try:
        if blob.member is None:
            return blob.path.read_bytes()
        with zipfile.ZipFile(blob.path) as archive:
            return archive.read(blob.member)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise UserError(
            f"{blob.name}: cannot unzip ({err}); the file is truncated or corrupt, "
            "download it again"
        ) from None
    except OSError as err:
        raise UserError(f"{blob.name}: cannot read the file ({err.strerror or err})") from None


def _blob_chunks(blob: _Blob) -> Iterator[bytes]:
    """The decompressed content of a blob in pieces (gzip inflates while the caller parses;
    a tar archive, such as Kaggle's fer2013.tar.gz, yields its fer2013.csv)."""
    data = _raw_bytes(blob)
    pieces = _gunzip_pieces(data, blob.name) if data[:2] == GZIP_MAGIC else iter([data])
    first = next(pieces, b"")
    if first[257:262] == b"ustar":
        yield _untar(first + b"".join(pieces), blob.name)
        return
    yield first
    yield from pieces


def _read_blob(blob: _Blob) -> bytes:
    data = b"".join(_blob_chunks(blob))
    if not data or data.isspace():
        raise UserError(f"{blob.name}: the file is empty; expected {ACCEPTED}")
    return data


def _gunzip_pieces(data: bytes, name: str) -> Iterator[bytes]:
    """Inflate gzip ``data`` on a helper thread, yielding pieces as they come: zlib releases
    the GIL, so with two cores decompression overlaps the caller's parsing."""
    pieces: queue.SimpleQueue[bytes | Exception | None] = queue.SimpleQueue()
    threading.Thread(target=_inflate, args=(data, pieces), daemon=True).start()
    while (piece := pieces.get()) is not None:
        if isinstance(piece, Exception) and not isinstance(piece, (OSError, EOFError, zlib.error)):
            raise piece  # a bug or MemoryError, not a bad file
        if isinstance(piece, Exception):
            raise UserError(
                f"{name}: cannot decompress gzip data ({piece}); the file is "
                "truncated or corrupt, download it again"
            )
        yield piece


def _inflate(data: bytes, out: queue.SimpleQueue[bytes | Exception | None]) -> None:
    """Decompress every gzip member of ``data`` into ``out``; then None, or the error."""
    view, step = memoryview(data), 4 * _MIB
    try:
        while view.nbytes and bytes(view[:2]) == GZIP_MAGIC:
            inflater = zlib.decompressobj(31)
            start = 0
            while start < view.nbytes and not inflater.eof:
                out.put(inflater.decompress(view[start : start + step]))
                start += step
            if not inflater.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            view = view[min(start, view.nbytes) - len(inflater.unused_data) :]
        if view.nbytes and bytes(view).strip(b"\0"):
            raise OSError("trailing garbage after the gzip data")
        out.put(None)
    except Exception as err:  # handed to the reading thread, which must not wait forever
        out.put(err)


def _untar(data: bytes, name: str) -> bytes:
    members: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members = {PurePosixPath(m.name).name.lower(): m for m in archive if m.isfile()}
            for base in CSV_NAMES[:2]:
                if base in members and (fh := archive.extractfile(members[base])):
                    return fh.read()
    except tarfile.TarError as err:
        raise UserError(f"{name}: cannot read the tar archive ({err})") from None
    raise UserError(
        f"{name}: the tar archive holds no fer2013.csv (found "
        f"{', '.join(list(members)[:6])}); expected {ACCEPTED}"
    )


# --------------------------------------------------------------------------- CSV parsing


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


def _parse_csv(blob: _Blob) -> _Parsed:
    """Parse one labelled CSV; ``kind`` is kaggle when it has a Usage column."""
    lines = _lines(_blob_chunks(blob))
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
    return _Parsed(pixels.images(), labels, splits, kind, notes)


def _parse_csv_source(source: _Source) -> _Parsed:
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


def _add_challenge_test(parsed: _Parsed, blob: _Blob) -> _Parsed:
    header = _header(_lines(_blob_chunks(blob)), blob.name)
    if "emotion" not in header:
        _columns(header, blob.name, ("pixels",))
        parsed.notes.append(
            f"{blob.name} has no emotion column (the challenge's unlabelled "
            "test set): no labelled test split"
        )
        return parsed
    test = _parse_csv(blob)
    return _Parsed(
        np.concatenate([parsed.images, test.images]),
        np.concatenate([parsed.labels, test.labels]),
        np.concatenate([parsed.splits, np.full(len(test.labels), 2, np.int8)]),
        "challenge",
        parsed.notes + test.notes + [f"test split from {blob.name}"],
    )


# --------------------------------------------------------------------------- image folders


def _parse_tree(source: _Source) -> _Parsed:
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
    return _Parsed(images, labels, splits, "folders", notes)


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


# --------------------------------------------------------------------------- cache


def _fingerprint(path: Path, digest: Any) -> None:
    """Feed size, mtime and the first and last MiB of ``path`` to ``digest`` (see module doc)."""
    stat = path.stat()
    # the path too: notes name the file, and a moved file is rare enough to re-parse
    digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_MIB))
        if stat.st_size > 2 * _MIB:
            fh.seek(-_MIB, os.SEEK_END)
            digest.update(fh.read(_MIB))


def _cache_key(source: _Source) -> str:
    digest = hashlib.blake2b(f"fer-search data v{FORMAT_VERSION}|".encode(), digest_size=16)
    digest.update(f"{Path(source.name).resolve()}|".encode())
    for blob in (source.main, source.test):
        if blob is not None:
            digest.update(f"{blob.member}|".encode())
            _fingerprint(blob.path, digest)
    if source.root is not None and source.root.is_file():
        _fingerprint(source.root, digest)
    elif source.root is not None:
        for split, label, name in source.images:
            stat = (source.root / name).stat()  # root is in the key via source.name
            digest.update(f"{split}|{label}|{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _parse_source(source: _Source) -> _Parsed:
    return _parse_csv_source(source) if source.main is not None else _parse_tree(source)


def _load_parsed(source: _Source, directory: Path | None) -> _Parsed:
    """Parse ``source``, through the cache in ``directory`` unless it is None."""
    if directory is None:
        return _parse_source(source)
    try:
        file = directory / f"fer2013-{_cache_key(source)}.npz"
    except OSError as err:
        raise UserError(f"{source.name}: cannot read the file ({err.strerror})") from None
    parsed = _read_cache(file)
    if parsed is None:
        parsed = _parse_source(source)
        _write_cache(file, parsed)
    return parsed


def _read_cache(file: Path) -> _Parsed | None:
    """The cached arrays, or None when the file is absent or unreadable (then it is rebuilt)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            parsed = _Parsed(
                npz["images"], npz["labels"], npz["splits"], meta["kind"], list(meta["notes"])
            )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
    n = len(parsed.labels)
    shapes_ok = parsed.images.shape == (n, IMAGE_SIZE, IMAGE_SIZE) and parsed.splits.shape == (n,)
    types_ok = parsed.images.dtype == np.uint8 and parsed.labels.dtype == np.int64
    return parsed if shapes_ok and types_ok and meta.get("version") == FORMAT_VERSION else None


def _write_cache(file: Path, parsed: _Parsed) -> None:
    """Write atomically (temp file + rename); an unwritable directory just skips the cache."""
    meta = json.dumps({"version": FORMAT_VERSION, "kind": parsed.kind, "notes": parsed.notes})
    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=file.parent, suffix=".tmp", delete=False) as fh:
            tmp = fh.name
            np.savez(
                fh,
                images=parsed.images,
                labels=parsed.labels,
                splits=parsed.splits,
                meta=np.array(meta),
            )
        os.replace(tmp, file)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- FER+


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


def _read_ferplus(path: Path, parsed: _Parsed) -> tuple[np.ndarray, np.ndarray]:
    """(votes int64 (N, 10) in FERPLUS_VOTES order, has image name (N,)) checked against FER2013."""
    import csv

    if not path.exists():
        raise UserError(f"FER+ file {str(path)!r} does not exist; pass the path of fer2013new.csv")
    blob = _Blob(path)
    text = _read_blob(blob).decode("utf-8-sig", errors="replace")
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


def _apply_ferplus(
    path: Path, mode: str, parsed: _Parsed, source: _Source
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


# --------------------------------------------------------------------------- demo faces

# Expression parameters per class, in EMOTIONS order. Units are pixels of an unscaled face
# (semi-axes about 14 x 18): brow raise, brow slant (+ = inner ends up), eye half-height,
# mouth curve (+ = smile), mouth opening, mouth half-width, lip asymmetry/wave.
_EXPRESSION = np.array([
    [-1.6, -0.45, 1.1, -0.6, 0.3, 6.0, 0.0],   # angry
    [-1.0, -0.30, 1.0, -1.4, 0.9, 6.0, 1.3],   # disgust
    [1.8, 0.35, 2.5, -0.6, 2.0, 7.0, 0.3],     # fear
    [0.2, 0.00, 1.3, 3.0, 1.0, 8.5, 0.0],      # happy
    [0.3, 0.50, 1.3, -2.2, 0.2, 6.5, 0.0],     # sad
    [2.5, 0.10, 2.8, 0.0, 4.0, 4.5, 0.0],      # surprise
    [0.0, 0.00, 1.7, 0.0, 0.2, 7.0, 0.0],      # neutral
], dtype=np.float32)  # fmt: skip
_EXPRESSION_STD = np.array([0.7, 0.18, 0.4, 0.8, 0.6, 0.9, 0.4], dtype=np.float32)


def _soft_mask(distance: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(distance + 0.5, 0.0, 1.0)


def _render_faces(labels: np.ndarray, rng: np.random.Generator, chunk: int = 1024) -> np.ndarray:
    out = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for start in range(0, len(labels), chunk):
        out[start : start + chunk] = _render_chunk(labels[start : start + chunk], rng)
    return out


def _expression(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image expression parameters: neutral + strength * (class - neutral) + noise."""
    n = len(labels)
    strength = rng.uniform(0.5, 1.25, (n, 1)).astype(np.float32)
    neutral = _EXPRESSION[6]
    params = neutral + strength * (_EXPRESSION[labels] - neutral)
    params += rng.standard_normal((n, 7), dtype=np.float32) * _EXPRESSION_STD
    params[:, 2] = np.maximum(params[:, 2], 0.35)
    params[:, 5] = np.clip(params[:, 5], 3.0, 10.0)
    params[:, 4] = np.maximum(params[:, 4], 0.0)
    return params


def _render_chunk(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)

    def col(values: np.ndarray) -> np.ndarray:  # (n,) -> (n, 1, 1) for broadcasting
        return values.astype(np.float32).reshape(n, 1, 1)

    p = [col(v) for v in _expression(labels, rng).T]
    brow_raise, brow_slant, eye_open, curve, opening, width, wave = p
    scale = col(rng.uniform(0.85, 1.15, n))
    angle = col(np.deg2rad(rng.uniform(-10, 10, n)))
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) - (IMAGE_SIZE - 1) / 2
    y, x = grid[None, :, None], grid[None, None, :]
    dx, dy = col(rng.uniform(-3.5, 3.5, n)), col(rng.uniform(-3, 3.5, n))
    u = ((x - dx) * np.cos(angle) + (y - dy) * np.sin(angle)) / scale
    v = (-(x - dx) * np.sin(angle) + (y - dy) * np.cos(angle)) / scale
    fa, fb = col(rng.uniform(12.5, 15.5, n)), col(rng.uniform(16.5, 19.5, n))
    face = _soft_mask((1 - np.sqrt((u / fa) ** 2 + (v / fb) ** 2)) * fa * scale)
    eye_x, eye_y = col(rng.uniform(5.0, 6.2, n)), col(rng.uniform(-4.5, -2.5, n))
    features = np.zeros_like(u)
    for side in (-1.0, 1.0):
        eu, ev = u - side * eye_x, v - eye_y
        eye = (1 - np.sqrt((eu / 3.0) ** 2 + (ev / eye_open) ** 2)) * np.minimum(eye_open, 3.0)
        outward = side * u - eye_x
        brow_y = eye_y - 4.0 - brow_raise + brow_slant * outward
        brow = np.minimum(1.1 - np.abs(v - brow_y), 3.6 - np.abs(outward))
        features = np.maximum(features, _soft_mask(np.maximum(eye, brow) * scale))
    features = np.maximum(features, _mouth(u, v, curve, opening, width, wave, scale, rng))
    return _shade(face, features, x, y, rng)


def _mouth(
    u: np.ndarray,
    v: np.ndarray,
    curve: np.ndarray,
    opening: np.ndarray,
    width: np.ndarray,
    wave: np.ndarray,
    scale: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """A curved band (smile/frown/flat), thickened by ``opening`` ('O' when narrow)."""
    n = len(u)
    t = u / width
    side = rng.choice(np.array([-1.0, 1.0], np.float32), (n, 1, 1))
    mouth_y = rng.uniform(8.0, 10.0, (n, 1, 1)).astype(np.float32)
    centre = mouth_y + curve * (0.35 - t**2) + wave * side * (0.6 * t + 0.4 * np.sin(3 * np.pi * t))
    half = 0.8 + 0.5 * opening * np.sqrt(np.clip(1 - t**2, 0, 1))
    inside = np.minimum(half - np.abs(v - centre), (1 - np.abs(t)) * width)
    return _soft_mask(inside * scale)


def _shade(
    face: np.ndarray,
    features: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Tones, lighting gradient, contrast and Gaussian noise -> uint8."""
    n = len(face)

    def col(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)

    background = col(15, 140) + col(-25, 25) * y / 24
    img = background * (1 - face) + col(115, 210) * face
    img *= 1 - col(0.45, 0.8) * features * face
    img *= 1 + col(-0.35, 0.35) * x / 24 + col(-0.25, 0.25) * y / 24
    mean = img.mean(axis=(1, 2), keepdims=True)
    img = (img - mean) * col(0.6, 1.2) + mean
    img += rng.standard_normal(img.shape, dtype=np.float32) * col(2, 10)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
