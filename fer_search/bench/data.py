"""Figure 6: data. The CSV parse cold against a cached load, and the start time of
`fer-search --help` against a bare Python."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fer_search.bench.measure import median, timed
from fer_search.bench.plan import Context
from fer_search.config import EMOTIONS
from fer_search.data import FERData, load_data, resolve_data_path

__all__ = ["data_figures", "figure_csv", "figure_help", "write_kaggle_csv"]

FER2013_ROWS = 35887
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def write_kaggle_csv(data: FERData, path: Path) -> Path:
    """The data as a Kaggle fer2013.csv (emotion,pixels,Usage), for timing the CSV parser."""
    with open(path, "w", newline="") as file:
        file.write("emotion,pixels,Usage\n")
        for name, split in data.splits.items():
            emotions = [EMOTIONS.index(split.class_names[i]) for i in split.labels]
            for image, label in zip(split.images, emotions, strict=True):
                file.write(f"{label},{' '.join(map(str, image.ravel()))},{USAGE[name]}\n")
    return path


def figure_csv(data_path: Path | str, repeats: int, cache: Path) -> dict[str, Any]:
    """load_data with cache=False (a cold parse) against a cached load, alternated."""
    load_data(data_path, cache_dir=cache)  # fill the cache (not timed)
    cold, cached = [], []
    for _ in range(repeats):
        cold.append(timed(lambda: load_data(data_path, cache=False)))
        cached.append(timed(lambda: load_data(data_path, cache_dir=cache)))
    a, b = median(cold), median(cached)
    size = Path(data_path).stat().st_size if Path(data_path).is_file() else None
    return {
        "figure": "data: parse",
        "data": str(data_path),
        "file_bytes": size,
        "cold_s": round(a, 3),
        "cached_s": round(b, 3),
        "cold_runs_s": [round(s, 6) for s in cold],
        "cached_runs_s": [round(s, 6) for s in cached],
        "ratio": a / b,
        "goal": None,
        "met": None,
        "summary": f"cold {a:.2f} s / cached {b:.3f} s",
    }


def help_command() -> list[str]:
    script = shutil.which("fer-search")
    return [script, "--help"] if script else [sys.executable, "-m", "fer_search", "--help"]


def package_root() -> str:
    """The directory holding this checkout's fer_search, so the timed CLI is this one."""
    return str(Path(__file__).resolve().parents[2])


def figure_help(repeats: int) -> dict[str, Any]:
    """Wall time of `fer-search --help` in a fresh process, against a bare `python -c pass`."""
    paths = [package_root(), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    command = help_command()
    helps, bare = [], []
    for _ in range(repeats):
        helps.append(timed(lambda: subprocess.run(command, env=env, capture_output=True)))
        bare.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env)))
    a, b = median(helps), median(bare)
    return {
        "figure": "data: --help start",
        "command": shlex.join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
        "help_s": round(a, 3),
        "python_s": round(b, 3),
        "help_runs_s": [round(s, 6) for s in helps],
        "python_runs_s": [round(s, 6) for s in bare],
        "ratio": a / b,
        "goal": None,
        "met": None,
        "summary": f"--help {a:.2f} s (python alone {b:.2f} s)",
    }


def data_figures(ctx: Context) -> list[dict[str, Any]]:
    """The run's data file parsed (the demo data written as a Kaggle CSV), and --help."""
    data, cache = ctx.load(), ctx.tmp / "cache"
    if data.source == "demo":
        path: Path | str = write_kaggle_csv(data, ctx.tmp / "demo-fer2013.csv")
    else:
        path = resolve_data_path(ctx.options.data)
    figure = figure_csv(path, ctx.plan.repeats, cache)
    if data.source == "demo":
        rows = sum(len(split) for split in data.splits.values())
        figure["note"] = (
            f"the demo data ({rows:,} rows) written as a Kaggle fer2013.csv; "
            f"FER2013 has {FER2013_ROWS:,} rows"
        )
    return [figure, figure_help(ctx.plan.repeats + 2)]
