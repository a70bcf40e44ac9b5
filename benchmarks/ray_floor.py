"""Bare Ray Tune's floor at the scale plan's size: the same number of one-second trials, ASHA
with the same rungs, no searcher database, no checkpoints, no callbacks, as Ray's own
scalability tests run them (fer_search.bench.scale.run_ray_floor, each run in a process of its
own). `fer-search bench --only scale` runs it beside fer-search's searches; this runs it alone,
at the concurrencies given.

    python benchmarks/ray_floor.py --concurrency 8 64            # 1,000 trials each
    python benchmarks/ray_floor.py --trials 200 --concurrency 16

Writes results/benchmarks/ray-floor.json and ray-floor.md. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_search.bench.floor import run_ray_floor  # noqa: E402
from fer_search.bench.output import finite, versions  # noqa: E402
from fer_search.bench.scale import in_own_process, memory_figures, scale_plan  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args(argv)
    plan = scale_plan(quick=False)
    started = time.time()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="ray-floor-") as tmp:
        for c in args.concurrency:
            floor, peaks = in_own_process(run_ray_floor, plan, args.trials, c, f"{tmp}/floor-{c}")
            runs[str(c)] = {**floor, **memory_figures(peaks)}
    command = "python benchmarks/ray_floor.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
    result = {
        "command": command.strip(),
        "date": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "wall_s": time.time() - started,
        "machine": machine,
        "versions": versions(),
        "plan": {
            "trials": args.trials,
            "epochs": plan.epochs,
            "epoch_s": plan.epoch_s,
            "reduction_factor": plan.reduction_factor,
        },  # fmt: skip
        "runs": runs,
        "note": "bare Ray Tune: a function that sleeps epoch_s per epoch and reports, ASHA, "
        "Tune's random search, no checkpoints, no callbacks, no searcher database",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray-floor.json").write_text(json.dumps(finite(result), indent=2) + "\n")
    lines = [
        "# Bare Ray Tune's floor",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']} ({result['wall_s']:.0f} s)",
        f"- machine: {machine['platform']}; {machine['cpus']} CPUs",
        f"- {args.trials} trials x {plan.epochs} epochs of {plan.epoch_s:g} s, ASHA "
        f"(reduction factor {plan.reduction_factor}); {result['note']}",
        "",
        "| at once | epochs run | Tune phase | minimum | overhead | driver CPU per result "
        "| results/s | driver peak | one trial process |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, r in runs.items():
        trial = f"{r['trial_process_mib']:.0f} MiB" if r["trial_processes_seen"] else "-"
        lines.append(
            f"| {c} | {r['epochs']} | {r['tune_s']:.0f} s | {r['minimum_s']:.0f} s | "
            f"{r['overhead']:.2f} | {r['driver_ms_per_result']:.1f} ms | "
            f"{r['results_per_s']:.1f} | {r['driver_peak_mib']:.0f} MiB | {trial} |"
        )
    (args.out / "ray-floor.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
