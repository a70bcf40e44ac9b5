"""Where an experiment's files live: a local path, or a URI (s3://, gs://, ...) that Tune
writes through pyarrow while the driver keeps its own files in `./results/<name>/`.

- `resolve_storage` / `tune_location`: where Tune writes trials and where the driver writes.
- `fetch_trial_files` / `upload_driver_files`: with a URI, the driver keeps a local copy of each
  trial's small files (for the report and TensorBoard) and uploads its own files beside Tune's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fer_search.errors import UserError, first_line

__all__ = [
    "check_location_free",
    "fetch_trial_files",
    "filesystem",
    "is_uri",
    "resolve_storage",
    "tune_location",
    "upload_driver_files",
]

# Files of a trial worth a local copy when Tune writes to a URI: small, and what the report
# (progress.csv) and TensorBoard (events) read. Checkpoints stay in the bucket.
TRIAL_FILES = ("progress.csv", "result.json", "params.json", "events.out.tfevents.")


def is_uri(storage: str | None) -> bool:
    """s3://, gs://, hdfs://, ...: Tune writes through pyarrow. file:// is a plain path."""
    return bool(storage) and "://" in str(storage) and not str(storage).startswith("file://")


def resolve_storage(storage: str | None) -> tuple[Path, str | None]:
    """(the driver's results root, Tune's storage URI or None).

    A path holds everything: `<path>/<name>/`. With a URI, Tune writes the trials to
    `<uri>/<name>/` and the driver keeps its files in `./results/<name>/` (uploaded beside
    Tune's at the end)."""
    if is_uri(storage):
        return Path("results").resolve(), str(storage)
    text = str(storage or "results")
    text = text.removeprefix("file://")
    return Path(text).expanduser().resolve(), None


def tune_location(uri: str, name: str) -> str:
    """`<uri>/<name>`, keeping a query string (s3://b/p?endpoint_override=...) at the end."""
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def filesystem(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) for a URI or a local path."""
    import pyarrow.fs

    if is_uri(location):
        try:
            return pyarrow.fs.FileSystem.from_uri(location)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types here
            raise UserError(f"--storage {location!r}: {first_line(exc)}") from None
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def check_location_free(location: str) -> None:
    """Refuse to write a new experiment over an existing one at a URI."""
    import pyarrow.fs

    fs, path = filesystem(location)
    try:
        info = fs.get_file_info(path)
    except Exception as exc:  # noqa: BLE001 - missing credentials, unreachable endpoint, ...
        raise UserError(f"cannot reach --storage {location!r}: {first_line(exc)}") from None
    if info.type != pyarrow.fs.FileType.NotFound:
        raise UserError(f"experiment {location!r} already exists; choose another --name")


def fetch_trial_files(location: str, exp: Path) -> int:
    """Copy each trial's small files (progress.csv, result.json, TensorBoard events) from Tune's
    experiment at `location` into `exp/<trial dir>/`; returns how many were copied."""
    import pyarrow.fs

    fs, root = filesystem(location)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    copied = 0
    for info in infos:
        rel = Path(os.path.relpath(info.path, root))
        if info.type != pyarrow.fs.FileType.File or len(rel.parts) != 2:
            continue
        if not rel.parts[0].startswith("trial_") or not rel.name.startswith(TRIAL_FILES):
            continue
        target = exp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as src:
            target.write_bytes(src.read())
        copied += 1
    return copied


def upload_driver_files(exp: Path, location: str) -> int:
    """Upload the driver's files (Optuna study, leaderboard, final.json, report, best/...) to
    Tune's experiment at `location`, skipping the local copies of trial files."""
    fs, root = filesystem(location)
    uploaded = 0
    for file in sorted(exp.rglob("*")):
        rel = file.relative_to(exp)
        if not file.is_file() or rel.parts[0].startswith("trial_"):
            continue
        target = f"{root}/{rel.as_posix()}"
        fs.create_dir(str(Path(target).parent), recursive=True)
        with fs.open_output_stream(target) as dst:
            dst.write(file.read_bytes())
        uploaded += 1
    return uploaded
