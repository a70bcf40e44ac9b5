"""`fer-search bench --only scale`: the control plane at cluster scale, with simulated trials.

Every search here runs through `fer_search.api.search` with `SimulatedTrainer` (tuning.simulated):
real Ray Tune, the Optuna searcher with its SQLite study, ASHA, the callbacks, checkpoints, the
leaderboard, study closing, the final evaluation's selection, the report; only the training is
simulated (each epoch waits `epoch_s` and reports a learning curve). Ray is local and advertises
as many logical CPUs as trials run at once (one CPU per trial), the way Ray's own scalability
tests (release/tune_tests/scalability_tests) put many trials on few cores.

Each search runs in a process of its own (a fresh Ray, its own peak memory); this process
samples that driver's memory and its trial workers' from outside, so the sampling costs the
driver nothing. Figures, per concurrency:

- overhead: the Tune phase's wall time over its minimum, the epochs that ran x epoch_s /
  concurrency (experiment.json's phases.tune; the epochs from the leaderboard);
- driver_ms_per_result: the driver process's CPU time in the Tune phase per reported epoch
  (all its threads: Tune's loop, the searcher and SQLite, the callbacks, Ray's client);
  results_per_s: reported epochs per second of the Tune phase;
- suggest_ms: each Optuna trial's `suggest_ms` (its ask and the space's define-by-run on the
  SQLite study), the median of the 25 trials before trial 100, 500 and 1,000;
- memory: the driver's peak RSS, one trial process's (median of their peaks; USS beside);
- post-search: each step after the Tune phase (experiment.json's phases);
- resume: a search interrupted (SIGINT, as Ctrl-C) once half its trials have started, then
  `fer_search.resume`: seconds from the call to the first new epoch reported, and whether any
  trial ran twice (a Tune or Optuna trial more than num_samples, or a trial's epoch 1 twice);
- viewers: on the largest search, seconds from starting TensorBoard (its HParams table) and
  optuna-dashboard (its study page) until their HTTP API returns every trial (bench.viewers);
- Ray's floor: the same number of trials through bare Ray Tune (a function that sleeps and
  reports, ASHA, its random search, no checkpoints, no callbacks), as Ray's release tests run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psutil

from fer_search.bench.floor import run_ray_floor
from fer_search.bench.measure import goal_met
from fer_search.bench.plan import Context

__all__ = ["ScalePlan", "scale_figures", "scale_plan"]

MIB = 2**20
SPACE_PARAMS: dict[str, Any] = {
    "model": "simple_cnn",
    "width": {"type": "categorical", "choices": [16, 32, 64]},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    "lr@sgd": {"type": "loguniform", "low": 1e-3, "high": 0.3, "when": {"optimizer": "sgd"}},
    "lr@adamw": {"type": "loguniform", "low": 1e-4, "high": 1e-2, "when": {"optimizer": "adamw"}},
    "weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.6},
}
GOALS = {"overhead": 1.10, "driver_ms_per_result": 5.0, "suggest_ms": 100.0,
         "post_search_s": 60.0, "resume_s": 30.0}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ScalePlan:
    trials: int
    epochs: int
    epoch_s: float
    concurrency: tuple[int, ...]
    post_search_trials: int  # a second, smaller search for the post-search steps at that size
    resume_concurrency: int
    floor_at: tuple[int, ...]  # the concurrencies where bare Ray Tune runs the same trials
    checkpoint_mib: float = 1.0
    demo_size: float = 10.0  # val: 3,500 demo images, about PublicTest's 3,589
    reduction_factor: int = 3  # ASHA rungs at 1, 3 and 9 epochs of 10


def scale_plan(quick: bool) -> ScalePlan:
    if quick:
        return ScalePlan(200, 10, 1.0, (16,), 100, 16, (16,))
    return ScalePlan(1000, 10, 1.0, (8, 32, 64), 100, 64, (64,))


def space(plan: ScalePlan, trials: int) -> dict[str, Any]:
    experiment = {
        "epochs": plan.epochs, "grace_period": 1, "reduction_factor": plan.reduction_factor,
        "num_samples": trials, "seed": 0, "top_k": 5, "cpus_per_trial": 1,
    }  # fmt: skip
    return {"name": "scale", "experiment": experiment, "params": SPACE_PARAMS}


# ---------------------------------------------------------------- in the driver's process
def run_search(
    plan: ScalePlan, trials: int, concurrency: int, storage: str, name: str, stop_at: int = 0
) -> dict[str, Any]:
    """One simulated search (in a process of its own); `stop_at`: send this process SIGINT
    once that many trials have started (an interrupted search)."""
    import fer_search

    data = fer_search.load_data("demo", demo_size=plan.demo_size)
    trainer = fer_search.SimulatedTrainer(epoch_s=plan.epoch_s, checkpoint_mib=plan.checkpoint_mib)
    if stop_at:
        interrupt_when_started(Path(storage) / name, stop_at)
    exp = fer_search.search(
        space(plan, trials), data=data, trainer=trainer, cpus=concurrency,
        max_concurrent=concurrency, storage=storage, name=name, verbose=0,
    )  # fmt: skip
    return {"path": str(exp.path), "interrupted": exp.interrupted}


def run_resume(path: str) -> dict[str, Any]:
    """`fer_search.resume` of an interrupted simulated search; when it was called."""
    import fer_search

    called = time.time()
    exp = fer_search.resume(path, verbose=0)
    return {"called": called, "wall_s": time.time() - called, "interrupted": exp.interrupted}


def interrupt_when_started(exp: Path, trials: int) -> None:
    """SIGINT to this process (as Ctrl-C) once `trials` trial directories exist in `exp`."""

    def watch() -> None:
        while len(list(exp.glob("trial_*"))) < trials:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


# ---------------------------------------------------------------- in the bench's process
def in_own_process(function: Any, *args: Any) -> tuple[Any, dict[str, Any]]:
    """`function(*args)` in a fresh process, and that process's memory, sampled from here."""
    spawn = get_context("spawn")
    answers = spawn.Queue()
    process = spawn.Process(target=answer, args=(answers, function, args))
    process.start()
    assert process.pid is not None, "started"
    with sample_memory(process.pid) as peaks:
        ok, result = answers.get()
    process.join()
    if not ok:
        raise RuntimeError(f"{function.__name__} failed in its own process:\n{result}")
    return result, peaks


def answer(answers: Any, function: Any, args: tuple[Any, ...]) -> None:
    """In the fresh process: run, and put (True, the result) or (False, the traceback)."""
    import traceback

    try:
        answers.put((True, function(*args)))
    except BaseException:  # noqa: BLE001 - the bench's process shows it and goes on
        answers.put((False, traceback.format_exc()))


@contextlib.contextmanager
def sample_memory(pid: int, interval: float = 2.0) -> Iterator[dict[str, Any]]:
    """Peak RSS of process `pid` and of each trial worker under it (`ray::` processes running
    a trainable), and at the busiest sample one worker's USS."""
    peaks: dict[str, Any] = {"driver_rss": 0, "trials": {}, "trial_uss": [], "most": 0}
    stop = threading.Event()

    def sample() -> None:
        with contextlib.suppress(psutil.Error):
            driver = psutil.Process(pid)
            while not stop.is_set():
                peaks["driver_rss"] = max(peaks["driver_rss"], driver.memory_info().rss)
                workers = [p for p in driver.children(recursive=True) if is_trial(p)]
                for worker in workers:
                    with contextlib.suppress(psutil.Error):
                        rss = worker.memory_info().rss
                        peaks["trials"][worker.pid] = max(peaks["trials"].get(worker.pid, 0), rss)
                if len(workers) > peaks["most"] and workers:
                    peaks["most"] = len(workers)
                    with contextlib.suppress(psutil.Error):
                        peaks["trial_uss"] = [p.memory_full_info().uss for p in workers[:3]]
                stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def is_trial(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        name = process.name() + " " + " ".join(process.cmdline()[:1])
        return "ray::ImplicitFunc" in name or "ray::trainer_trial" in name
    return False


def search_figures(exp: Path, plan: ScalePlan, concurrency: int) -> dict[str, Any]:
    """What one finished search measured, from its own files."""
    import pandas as pd

    record = json.loads((exp / "experiment.json").read_text())
    phases = record["phases"]
    board = pd.read_csv(exp / "leaderboard.csv")
    results = int(board["epochs"].sum())
    tune = phases["tune"]
    minimum = results * plan.epoch_s / concurrency
    final = json.loads((exp / "final.json").read_text())
    post = {k: v["wall_s"] for k, v in phases.items() if k != "tune"}
    return {
        "trials": len(board),
        "results": results,
        "tune_s": tune["wall_s"],
        "minimum_s": minimum,
        "overhead": tune["wall_s"] / minimum if minimum else float("nan"),
        "driver_ms_per_result": 1000 * tune["cpu_s"] / max(1, results),
        "results_per_s": results / tune["wall_s"] if tune["wall_s"] else float("nan"),
        "suggest_ms": suggest_latency(exp / "optuna.db", (100, 500, 1000)),
        "post_search_steps_s": post,
        "post_search_s": sum(post.values()),
        "final_reads": final.get("reads"),
        "statuses": board["status"].value_counts().to_dict(),
    }


def suggest_latency(db: Path, at: tuple[int, ...], window: int = 25) -> dict[str, float]:
    """Median `suggest_ms` of the `window` Optuna trials before each trial number in `at`."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT t.number, a.value_json FROM trial_user_attributes a "
            "JOIN trials t ON t.trial_id = a.trial_id WHERE a.key = 'suggest_ms'"
        ).fetchall()
    finally:
        connection.close()
    by_number = {int(number): float(json.loads(value)) for number, value in rows}
    found = {}
    for n in at:
        values = [by_number[i] for i in range(n - window, n) if i in by_number]
        if values:
            found[str(n)] = statistics.median(values)
    return found


def resume_figures(exp: Path, called: float, trials: int) -> dict[str, Any]:
    """After a resume: seconds from the call to the first epoch reported after it (result.json
    timestamps: whole seconds), and whether any trial ran twice."""
    first, restarted, repeated = float("inf"), 0, 0
    dirs = sorted(exp.glob("trial_*"))
    for trial in dirs:
        epochs = []
        with contextlib.suppress(OSError):
            for line in (trial / "result.json").read_text().splitlines():
                result = json.loads(line)
                epochs.append(int(result.get("epoch", 0)))
                if float(result.get("timestamp", 0)) >= int(called):
                    first = min(first, float(result["timestamp"]))
        restarted += epochs.count(1) > 1
        repeated += len(epochs) - len(set(epochs))
    connection = sqlite3.connect(f"file:{exp / 'optuna.db'}?mode=ro", uri=True)
    try:
        optuna_trials = connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        ray_ids = connection.execute(
            "SELECT COUNT(DISTINCT value_json) FROM trial_user_attributes WHERE key = ?",
            ("ray_trial_id",),
        ).fetchone()[0]
        again = connection.execute(
            "SELECT COUNT(*) FROM trial_user_attributes WHERE key = 'resumed_from'"
        ).fetchone()[0]
    finally:
        connection.close()
    return {
        "resume_s": first - called if first != float("inf") else float("nan"),
        "tune_trials": len(dirs),
        # Optuna cannot reopen a trial: one the interruption left running is recorded again
        # when it ends (`resumed_from`), so the study holds trials + those records
        "optuna_trials": int(optuna_trials),
        "optuna_trials_recorded_again": int(again),
        "optuna_ray_trial_ids": int(ray_ids),
        "trials_restarted": restarted,  # a trial whose epoch 1 was reported twice
        "epochs_repeated": repeated,  # epochs after a trial's last checkpoint, trained again
        "run_twice": len(dirs) != trials or ray_ids != trials or restarted > 0,
    }


def scale_figures(ctx: Context) -> list[dict[str, Any]]:
    """Figure 8 (module docstring), one figure per quantity and concurrency."""
    plan = scale_plan(ctx.plan.quick)
    ctx.stop_ray()  # each search starts a Ray of its own size, in its own process
    runs: dict[int, dict[str, Any]] = {}
    floors: dict[int, dict[str, Any]] = {}
    memory: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fer-scale-", dir=ctx.tmp) as tmp:
        for c in plan.concurrency:
            done, peaks = in_own_process(run_search, plan, plan.trials, c, tmp, f"scale-{c}")
            runs[c] = search_figures(Path(done["path"]), plan, c)
            memory[c] = memory_figures(peaks)
            if c == max(plan.concurrency):  # the viewers a user opens, on the largest search
                viewers = viewer_figures(Path(done["path"]), runs[c]["trials"])
            if c in plan.floor_at:
                floors[c], _ = in_own_process(
                    run_ray_floor, plan, plan.trials, c, f"{tmp}/floor-{c}"
                )
        small, _ = in_own_process(
            run_search, plan, plan.post_search_trials, plan.resume_concurrency, tmp, "post-small"
        )
        post_small = search_figures(Path(small["path"]), plan, plan.resume_concurrency)
        stop_at = plan.trials // 2
        part, _ = in_own_process(
            run_search, plan, plan.trials, plan.resume_concurrency, tmp, "resumed", stop_at
        )
        resumed, _ = in_own_process(run_resume, part["path"])
        resume = resume_figures(Path(part["path"]), resumed["called"], plan.trials)
        resume.update(interrupted_first=part["interrupted"], resume_wall_s=resumed["wall_s"])
    return build_figures(plan, runs, floors, memory, post_small, resume, viewers)


def viewer_figures(exp: Path, trials: int) -> dict[str, Any]:
    """Seconds until TensorBoard's HParams table and optuna-dashboard show every trial."""
    from fer_search.bench.viewers import time_optuna_dashboard, time_tensorboard

    return {
        "tensorboard_hparams": time_tensorboard(exp / "tensorboard", trials),
        "optuna_dashboard": time_optuna_dashboard(exp / "optuna.db", trials),
    }


def memory_figures(peaks: dict[str, Any]) -> dict[str, float]:
    trials = list(peaks["trials"].values())
    return {
        "driver_peak_mib": peaks["driver_rss"] / MIB,
        "trial_process_mib": statistics.median(trials) / MIB if trials else float("nan"),
        "trial_uss_mib": statistics.median(peaks["trial_uss"]) / MIB
        if peaks["trial_uss"]
        else float("nan"),
        "trial_processes_seen": len(trials),
    }


def build_figures(
    plan: ScalePlan,
    runs: dict[int, dict[str, Any]],
    floors: dict[int, dict[str, Any]],
    memory: dict[int, dict[str, Any]],
    post_small: dict[str, Any],
    resume: dict[str, Any],
    viewers: dict[str, Any],
) -> list[dict[str, Any]]:
    top = max(plan.concurrency)
    big = runs[top]
    n = plan.trials
    suggest_n = big["suggest_ms"].get(str(n), float("nan"))
    summary: dict[str, Any] = {
        "figure": "scale",
        "arch": "simulated",
        "plan": dataclasses.asdict(plan),
        "overhead": {str(c): r["overhead"] for c, r in runs.items()},
        "driver_ms_per_result": {str(c): r["driver_ms_per_result"] for c, r in runs.items()},
        "results_per_s": {str(c): r["results_per_s"] for c, r in runs.items()},
        f"suggest_ms_at_{n}": {str(c): r["suggest_ms"].get(str(n)) for c, r in runs.items()},
        "suggest_ms": {str(c): r["suggest_ms"] for c, r in runs.items()},
        f"post_search_s_at_{n}": big["post_search_s"],
        f"post_search_s_at_{plan.post_search_trials}": post_small["post_search_s"],
        "post_search_steps_s": {
            str(plan.post_search_trials): post_small["post_search_steps_s"],
            str(n): big["post_search_steps_s"],
        },
        "resume_s": resume["resume_s"],
        "resume": resume,
        "trial_process_mib": {str(c): m["trial_process_mib"] for c, m in memory.items()},
        "memory": {str(c): m for c, m in memory.items()},
        "runs": {str(c): r for c, r in runs.items()},
        "ray_floor": {str(c): f for c, f in floors.items()},
        "viewers_s": {name: v["s"] for name, v in viewers.items()},
        "viewers": viewers,
        "summary": f"{n} simulated trials x {plan.epochs} epochs of {plan.epoch_s:g} s, ASHA; "
        f"at {top} at once: overhead {big['overhead']:.2f} (Ray alone "
        f"{floors[top]['overhead']:.2f}), {big['driver_ms_per_result']:.1f} ms driver CPU per "
        f"result",
        "note": "simulated trials (tuning.simulated.SimulatedTrainer): real Ray Tune, Optuna "
        "with SQLite, ASHA, callbacks, checkpoints, leaderboard, final evaluation and report; no "
        "training. Concurrency = logical CPUs of a local Ray on this machine.",
    }
    figures = [summary]
    for c, run in runs.items():
        floor = floors.get(c)
        alone = (f"; Ray alone {floor['overhead']:.2f} ({floor['tune_s']:.0f} s, "
                 f"{floor['epochs']} epochs)") if floor else ""  # fmt: skip
        alone_ms = f"; Ray alone {floor['driver_ms_per_result']:.1f} ms" if floor else ""
        figures.append({
            "figure": "scale overhead", "arch": f"{c} at once",
            "ratio": run["overhead"], "goal": f"<= {GOALS['overhead']:.2f} (64 at once)",
            "met": goal_met(run["overhead"], GOALS["overhead"], False) if c == 64 else None,
            "summary": f"Tune phase {run['tune_s']:.0f} s for {run['results']} epochs "
            f"(minimum {run['minimum_s']:.0f} s){alone}",
        })  # fmt: skip
        figures.append({
            "figure": "scale driver CPU per result", "arch": f"{c} at once",
            "ratio": run["driver_ms_per_result"],
            "goal": f"<= {GOALS['driver_ms_per_result']:g} ms (64 at once)",
            "met": goal_met(run["driver_ms_per_result"], GOALS["driver_ms_per_result"], False)
            if c == 64 else None,
            "summary": f"{run['driver_ms_per_result']:.1f} ms per result, "
            f"{run['results_per_s']:.1f} results/s{alone_ms}",
        })  # fmt: skip
        figures.append({
            "figure": "scale memory", "arch": f"{c} at once",
            "summary": f"driver peak {memory[c]['driver_peak_mib']:.0f} MiB; one trial process "
            f"{memory[c]['trial_process_mib']:.0f} MiB RSS, "
            f"{memory[c]['trial_uss_mib']:.0f} MiB USS",
        })  # fmt: skip
    figures.append({
        "figure": "scale suggest", "arch": f"{top} at once", "ratio": suggest_n,
        "goal": f"<= {GOALS['suggest_ms']:g} ms at {n}",
        "met": goal_met(suggest_n, GOALS["suggest_ms"], False),
        "summary": ", ".join(f"{k}: {v:.0f} ms" for k, v in big["suggest_ms"].items()),
    })  # fmt: skip
    for trials, run in ((plan.post_search_trials, post_small), (n, big)):
        steps = ", ".join(f"{k} {v:.1f}" for k, v in run["post_search_steps_s"].items())
        figures.append({
            "figure": "scale post-search", "arch": f"{trials} trials",
            "ratio": run["post_search_s"], "goal": f"<= {GOALS['post_search_s']:g} s at {n}",
            "met": goal_met(run["post_search_s"], GOALS["post_search_s"], False)
            if trials == n else None,
            "summary": f"{run['post_search_s']:.1f} s: {steps}; loaded "
            f"{(run['final_reads'] or {}).get('checkpoints_loaded')} of "
            f"{(run['final_reads'] or {}).get('pool')} checkpoints",
        })  # fmt: skip
    figures.append({
        "figure": "scale resume", "arch": f"{n} trials", "ratio": resume["resume_s"],
        "goal": f"<= {GOALS['resume_s']:g} s, no trial run twice",
        "met": goal_met(resume["resume_s"], GOALS["resume_s"], False) and not resume["run_twice"],
        "summary": f"trials ran again {resume['resume_s']:.0f} s after the call; "
        f"{resume['tune_trials']} Tune trials, {resume['optuna_ray_trial_ids']} in Optuna "
        f"({resume['optuna_trials_recorded_again']} recorded again after the interruption), "
        f"{resume['trials_restarted']} restarted from epoch 1",
    })  # fmt: skip
    for name, viewer in viewers.items():
        figures.append({
            "figure": f"scale {name.replace('_', ' ')}", "arch": f"{big['trials']} trials",
            "ratio": viewer["s"],
            "summary": f"every trial shown after {viewer['s']} s ({viewer['items']} rows, "
            f"{viewer['bytes'] / MIB:.1f} MiB answer)" if viewer["s"] is not None
            else f"gave up after {viewer['gave_up_after_s']:g} s at {viewer['items']} rows",
        })  # fmt: skip
    return figures
