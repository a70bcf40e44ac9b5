"""`bench.run`: the job list, each job's figures collected (a broken one recorded, the others
kept), and the result written."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from fer_search import engine
from fer_search.bench.bench_options import BenchOptions
from fer_search.bench.checkpoint import checkpoint_figures
from fer_search.bench.data import data_figures
from fer_search.bench.memory import figure_memory
from fer_search.bench.output import finite, format_table, machine, versions, write_results
from fer_search.bench.pipeline import pipeline_figures
from fer_search.bench.plan import Context, Plan, describe, make_plan
from fer_search.bench.rungs import figure_rungs
from fer_search.bench.scale import scale_figures
from fer_search.bench.search import figure_asha, figure_search_overhead

__all__ = ["Job", "jobs", "run", "run_options"]

log = logging.getLogger(__name__)

Figures = list[dict[str, Any]]
Job = tuple[str, Callable[[], Figures]]  # its name in the log, and what measures its figures

QUICK_NOTE = (
    "--quick: a few demo trials of sub-second epochs, so the search overhead is mostly the "
    "fixed cost per trial and ASHA has one rung to stop at; those two goals are for the full "
    "run on FER2013 (fer-search bench --data path/to/fer2013.csv)"
)


def jobs(ctx: Context) -> list[Job]:
    """The measurements in order: cheap and Ray-free first (DataLoader workers are forked
    before Ray starts its threads), then the searches; `--only` keeps some groups."""
    out: list[tuple[str, str, Callable[[], Figures]]] = [
        ("data", "data", partial(data_figures, ctx))
    ]
    for arch in ctx.plan.archs:
        out.append(("pipeline", f"pipeline {arch}", partial(pipeline_figures, ctx, arch)))
    out.append(("overhead", "search overhead", lambda: [figure_search_overhead(ctx)]))
    out.append(("asha", "ASHA savings", lambda: [figure_asha(ctx)]))
    out.append(("memory", "memory", lambda: [figure_memory(ctx)]))
    out.append(("checkpoint", "checkpoint MB", partial(checkpoint_figures, ctx)))
    out.append(("rungs", "rung fairness", lambda: [figure_rungs(ctx)]))
    out.append(("scale", "scale (simulated trials)", partial(scale_figures, ctx)))
    return [(name, job) for group, name, job in out if group in ctx.options.groups]


def run_jobs(job_list: list[Job]) -> Figures:
    """Each job's figures; a job that raises becomes one figure holding its error."""
    figures: Figures = []
    for name, job in job_list:
        log.info("bench: %s ...", name)
        t0 = time.perf_counter()
        try:
            figures += job()
        except Exception as exc:  # one broken figure must not lose the others
            log.exception("bench: %s failed", name)
            figures.append({"figure": name, "error": f"{type(exc).__name__}: {exc}"})
        log.info("bench: %s took %.0f s", name, time.perf_counter() - t0)
    return figures


def plan_notes(options: BenchOptions, plan: Plan) -> list[str]:
    notes = []
    if plan.skipped and "pipeline" in options.groups:
        notes.append(f"skipped on CPU: {', '.join(plan.skipped)} (about 2 img/s on 2 cores)")
    if plan.quick and {"overhead", "asha"} & set(options.groups):
        notes.append(QUICK_NOTE)
    return notes


def load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def run(
    *,
    quick: bool = False,
    device: str = "cpu",
    out: Path | str = Path("results/benchmarks"),
    only: Iterable[str] | None = None,
    as_json: bool = False,
    data_args: Mapping[str, Any] | None = None,
    command: str | None = None,
    show: Callable[[str], None] | None = None,
) -> int:
    """Measure the figures, write `<out>/bench[-quick][-GROUP...].{json,md}` and hand `show`
    (the CLI's print) a table of them (`as_json`: the JSON). 1 when a figure failed, else 0."""
    options = BenchOptions.from_call(
        quick=quick, device=device, out=out, only=only, as_json=as_json, data_args=data_args,
        command=command,
    )  # fmt: skip
    return run_options(options, show)


def run_options(options: BenchOptions, show: Callable[[str], None] | None = None) -> int:
    """`run` with its options already built."""
    device = engine.resolve_device(options.device)
    options = dataclasses.replace(options, device=device.type)  # "auto" -> what it chose
    plan = make_plan(options.quick, device)
    started, date = time.perf_counter(), dt.datetime.now(dt.UTC)
    info, notes = machine(device), plan_notes(options, plan)
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        ctx = Context(options, plan, device, Path(tmp))
        data = ctx.load()
        simulated_only = tuple(options.only) == ("scale",)  # simulated trials: data aside
        if not plan.quick and data.source == "demo" and not simulated_only:
            notes.append("a full run on the demo data: pass --data path/to/fer2013.csv for FER2013")
        try:
            figures = run_jobs(jobs(ctx))
        finally:
            ctx.stop_ray()
    info["load_average_at_end"] = load_average()
    result: dict[str, Any] = finite({
        "command": options.command_line(),
        "date": date.isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - started,
        "quick": plan.quick,
        "only": list(options.only),
        "data": describe(data),
        "machine": info,
        "versions": versions(),
        "plan": dataclasses.asdict(plan),
        "figures": figures,
        "notes": notes,
    })  # fmt: skip
    json_path, md_path = write_results(result, options.out)
    if show is not None and options.as_json:
        show(json.dumps(result, indent=2, default=str))
    elif show is not None:
        show(f"{format_table(figures)}\nwrote {json_path} and {md_path}")
    return 1 if any("error" in f for f in figures) else 0
