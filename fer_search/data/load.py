"""load_data: resolve the source, parse it (through the cache), apply FER+ and the class set,
carve val where needed."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from fer_search.data.cache import cache_key, read_cache, user_cache_dir, write_cache
from fer_search.data.checks import check_options
from fer_search.data.csvfile import parse_csv_source
from fer_search.data.demo import demo_data
from fer_search.data.ferplus import apply_ferplus
from fer_search.data.folders import parse_tree
from fer_search.data.formats import Parsed, Source
from fer_search.data.sources import resolve_data_path, source_for
from fer_search.data.splits import FERData, assemble
from fer_search.errors import UserError


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
    ``val_fraction`` and ``seed`` only matter where val is carved from train (and seed the
    demo). The returned data's ``load_args`` records these arguments, with the path resolved
    to an absolute one, so that ``load_data(**data.load_args)`` loads the same data again.
    """
    check_options(class_set, ferplus_mode, val_fraction, seed)
    resolved = resolve_data_path(path)
    args = {
        "path": "demo" if resolved == "demo" else str(Path(resolved).absolute()),
        "class_set": class_set,
        "ferplus": None if ferplus is None else str(Path(ferplus).expanduser().absolute()),
        "ferplus_mode": ferplus_mode,
        "val_fraction": val_fraction,
        "seed": int(seed),
        "cache": cache,
        "cache_dir": None if cache_dir is None else str(Path(cache_dir).expanduser().absolute()),
        "demo_size": demo_size,
    }
    if resolved == "demo":
        data = demo_data(path, ferplus, demo_size, seed, class_set)
        data.load_args = args
        return data
    source = source_for(Path(resolved))
    directory = Path(cache_dir) if cache_dir is not None else user_cache_dir()
    parsed = _load_parsed(source, directory if cache else None)
    present = tuple(int(i) for i in np.unique(parsed.splits))
    labels, soft, keep, notes = parsed.labels, None, None, list(parsed.notes)
    if ferplus is not None:
        labels, soft, keep, note = apply_ferplus(Path(ferplus), ferplus_mode, parsed, source)
        notes.append(note)
    images, splits = parsed.images, parsed.splits
    if keep is not None:
        images, labels, splits = images[keep], labels[keep], splits[keep]
        soft = soft[keep] if soft is not None else None
    data = assemble(
        images, labels, splits, soft, class_set, val_fraction, seed, source.name, notes, present
    )
    data.load_args = args
    return data


def load_recorded(args: dict[str, Any] | None) -> FERData:
    """The data a search was started on, loaded again from experiment.json's `data_args`
    (load_data's arguments; before they were recorded so, the CLI's flag names)."""
    args = dict(args or {})
    if "data" in args:  # experiment.json from before the API: the CLI's flag names
        args["path"], args["cache"] = args.pop("data"), not args.pop("no_cache", False)
        args["class_set"] = args.get("class_set") or "all"
    unknown = sorted(set(args) - set(inspect.signature(load_data).parameters))
    if unknown:
        raise UserError(f"experiment.json's data_args hold unknown arguments: {unknown}")
    return load_data(**args)


def parse_source(source: Source) -> Parsed:
    return parse_csv_source(source) if source.main is not None else parse_tree(source)


def _load_parsed(source: Source, directory: Path | None) -> Parsed:
    """Parse ``source``, through the cache in ``directory`` unless it is None."""
    if directory is None:
        return parse_source(source)
    try:
        file = directory / f"fer2013-{cache_key(source)}.npz"
    except OSError as err:
        raise UserError(f"{source.name}: cannot read the file ({err.strerror})") from None
    parsed = read_cache(file)
    if parsed is None:
        parsed = parse_source(source)
        write_cache(file, parsed)
    return parsed
