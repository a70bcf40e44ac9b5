"""The bytes of a file or zip member: gzip is inflated on a helper thread while the caller
parses, a tar archive (Kaggle's fer2013.tar.gz) yields its fer2013.csv. Compression is detected
from the first bytes, so a misnamed file still reads."""

from __future__ import annotations

import io
import queue
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from fer_search.data.formats import ACCEPTED, CSV_NAMES, MIB, Blob
from fer_search.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"


def magic(path: Path) -> str:
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


def _raw_bytes(blob: Blob) -> bytes:
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


def blob_chunks(blob: Blob) -> Iterator[bytes]:
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


def read_blob(blob: Blob) -> bytes:
    data = b"".join(blob_chunks(blob))
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
    view, step = memoryview(data), 4 * MIB
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
