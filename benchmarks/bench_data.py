"""Time FER2013 loading: a cold parse (cache=False), a cached load, and the demo generator.

    python benchmarks/bench_data.py                      # the shared fer2013.csv.gz
    python benchmarks/bench_data.py --data path/to/fer2013.csv --repeats 5

Writes results/benchmarks/data.json and data.md. Figures only; nothing is asserted. The cache
used here is a temporary directory, so the user's cache is neither read nor written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_search.data import format_summary, load_data, make_demo  # noqa: E402

SHARED_CSV = ROOT.parent / "shared/data/fer2013/fer2013.csv.gz"


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def stats(seconds: list[float]) -> dict[str, object]:
    return {
        "min_s": round(min(seconds), 3),
        "median_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
    }


def machine() -> dict[str, object]:
    versions = {}
    for package in ("numpy", "pandas", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        **versions,
    }


def run(data: Path, repeats: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="fer-bench-cache-") as cache:
        loaded = load_data(data, cache_dir=cache)  # fills the cache (not timed)
        cached = timed(lambda: load_data(data, cache_dir=cache), repeats)
    cold = timed(lambda: load_data(data, cache=False), repeats)
    demo = timed(make_demo, repeats)
    return {
        "data": str(data),
        "file_bytes": data.stat().st_size,
        "rows": sum(len(split) for split in loaded.splits.values()),
        "cold_parse": stats(cold),
        "cached_load": stats(cached),
        "demo_size_1": stats(demo),
        "summary": format_summary(loaded),
    }


def markdown(result: dict[str, object], info: dict[str, object], command: str) -> str:
    rows = [("cold parse (cache=False)", result["cold_parse"]),
            ("cached load", result["cached_load"]),
            ("make_demo(size=1)", result["demo_size_1"])]  # fmt: skip
    lines = [
        "# Data loading benchmark",
        "",
        f"- command: `{command}`",
        f"- date: {info['date']}",
        f"- data: `{result['data']}` ({result['file_bytes']:,} bytes, {result['rows']:,} rows)",
        f"- machine: {info['platform']}, {info['cpu_count']} CPUs ({info['processor']}), "
        f"load average at start {info['load_average_at_start']}",
        f"- python {info['python']}, numpy {info['numpy']}, pandas {info['pandas']}, "
        f"pillow {info['pillow']}",
        "",
        "| step | min (s) | median (s) | max (s) | runs |",
        "|---|---|---|---|---|",
    ]
    for name, figures in rows:
        assert isinstance(figures, dict)
        lines.append(f"| {name} | {figures['min_s']} | {figures['median_s']} | "
                     f"{figures['max_s']} | {len(figures['runs_s'])} |")  # fmt: skip
    lines += ["", "```", str(result["summary"]), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_CSV, help="FER2013 file or folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data} does not exist; pass --data path/to/fer2013.csv")
    command = shlex.join(["python", "benchmarks/bench_data.py", *(argv or sys.argv[1:])])
    info = {**machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    result = run(args.data, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data.json").write_text(
        json.dumps({"command": command, "machine": info, **result}, indent=2) + "\n"
    )
    (args.out / "data.md").write_text(markdown(result, info, command))
    print(markdown(result, info, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
