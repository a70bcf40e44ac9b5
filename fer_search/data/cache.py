"""The content-keyed cache of parsed arrays.

Parsing the 300 MB CSV takes a few seconds, so the parsed arrays (all 7 classes, before FER+
relabelling, class sets and val carving, which are cheap and applied on every load) are cached
as an uncompressed ``.npz`` in :func:`cache_dir`. The key hashes, with BLAKE2b, a format version
and for every source file its absolute path, size, modification time and first and last MiB
(hashing all 300 MB would cost more than a cached load; an edit that keeps size and mtime is
not seen); an image tree is keyed by every image's relative path, size and modification time.
A cache file that cannot be read is rebuilt; an unwritable cache directory only disables
caching.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fer_search.config import IMAGE_SIZE
from fer_search.data.formats import MIB, Parsed, Source

FORMAT_VERSION = 1  # bump when the cached arrays or their meaning change


def cache_dir() -> Path:
    """$FER_SEARCH_CACHE if set, else the per-user cache directory of fer-search."""
    return user_cache_dir()


def user_cache_dir() -> Path:  # load_data's cache_dir argument shadows cache_dir()
    env = os.environ.get("FER_SEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fer-search"))


def _fingerprint(path: Path, digest: Any) -> None:
    """Feed size, mtime and the first and last MiB of ``path`` to ``digest`` (see module doc)."""
    stat = path.stat()
    # the path too: notes name the file, and a moved file is rare enough to re-parse
    digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(MIB))
        if stat.st_size > 2 * MIB:
            fh.seek(-MIB, os.SEEK_END)
            digest.update(fh.read(MIB))


def cache_key(source: Source) -> str:
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


def read_cache(file: Path) -> Parsed | None:
    """The cached arrays, or None when the file is absent or unreadable (then it is rebuilt)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            parsed = Parsed(
                npz["images"], npz["labels"], npz["splits"], meta["kind"], list(meta["notes"])
            )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
    n = len(parsed.labels)
    shapes_ok = parsed.images.shape == (n, IMAGE_SIZE, IMAGE_SIZE) and parsed.splits.shape == (n,)
    types_ok = parsed.images.dtype == np.uint8 and parsed.labels.dtype == np.int64
    return parsed if shapes_ok and types_ok and meta.get("version") == FORMAT_VERSION else None


def write_cache(file: Path, parsed: Parsed) -> None:
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
