"""Figures 3-4: what the search costs and what ASHA saves, through `fer_search.api.search`.

3. search overhead: N short trials through the search (Ray Tune + Optuna, ASHA off) / the same
   trials in a plain loop of `engine.train`, alternated;
4. ASHA savings: epochs of the same sampled trials run to max_t / epochs under ASHA, and the
   best-val_acc gap: each best val_acc with its 95 % interval, the gap's paired on the same val
   images from the probabilities the two best trials stored. Each search gets a fresh
   `RandomSampler(seed=0)`, so both sample the same configurations whatever the results (TPE
   would adapt to them).

Both sides get the same in-memory data, so neither side's time includes loading it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any

import numpy as np
import torch

from fer_search import engine, stats
from fer_search.bench.measure import goal_met, median
from fer_search.bench.plan import Context, describe
from fer_search.data import FERData, FERSplit

__all__ = [
    "FIXED_PARAMS",
    "SAMPLED_PARAMS",
    "SearchRun",
    "figure_asha",
    "figure_search_overhead",
    "leaderboard_configs",
    "run_search",
    "search_space",
    "stratified_share",
]

SEED = 0
SEARCH_WIDTH = 8  # simple_cnn width of the search figures (3-5): short trials
FIXED_PARAMS: dict[str, Any] = {
    "model": "simple_cnn",
    "width": SEARCH_WIDTH,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.05,
    "dropout": 0.2,
    "hflip": 0.5,
    "crop_pad": 2,
}
SAMPLED_PARAMS: dict[str, Any] = {
    "model": "simple_cnn",
    "width": SEARCH_WIDTH,
    "batch_size": 64,
    "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    "lr@sgd": {"type": "loguniform", "low": 0.003, "high": 0.3, "when": {"optimizer": "sgd"}},
    "lr@adamw": {"type": "loguniform", "low": 1e-4, "high": 1e-2, "when": {"optimizer": "adamw"}},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "hflip": 0.5,
    "crop_pad": {"type": "int", "low": 0, "high": 4},
}


def search_space(name: str, trials: int, epochs: int, params: dict[str, Any], **experiment):
    """A search space as the YAML's content (`api.search` takes the dict)."""
    base = {"epochs": epochs, "num_samples": trials, "seed": SEED, "top_k": 1}
    return {"name": name, "experiment": {**base, **experiment}, "params": params}


@dataclasses.dataclass
class SearchRun:
    wall_s: float  # the api.search call, as the user waits for it
    rows: list[dict[str, Any]]  # the leaderboard
    name: str
    best_val_probs: np.ndarray | None = None  # the best trial's at its best epoch (stored)


def run_search(ctx: Context, space: dict[str, Any], data: FERData, **options: Any) -> SearchRun:
    """`api.search` without the final evaluation, its output in a log under the scratch
    directory; `options` are the search options (no_asha=, max_concurrent=, sampler=, ...)."""
    from fer_search import api

    ctx.start_ray()
    name = f"{space['name']}-{time.strftime('%H%M%S')}-{os.getpid()}-{time.perf_counter_ns()}"
    log = ctx.tmp / f"{name}.log"
    storage = str(ctx.tmp / "runs")
    start = time.perf_counter()
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            exp = api.search(space, data=data, storage=storage, name=name, no_final_eval=True,
                             verbose=0, **options)  # fmt: skip
        except Exception as exc:
            raise RuntimeError(f"search {name} failed: {exc}; its log ends:\n{tail(log)}") from exc
    wall = time.perf_counter() - start
    rows = exp.leaderboard.to_dict("records")
    failed = [r for r in rows if r.get("status") in ("failed", "nan")]
    if exp.interrupted or not rows or len(failed) == len(rows):
        what = "was interrupted" if exp.interrupted else "has no finished trial"
        raise RuntimeError(f"search {name} {what}; its log ends:\n{tail(log)}")
    return SearchRun(wall, rows, name, stored_val_probs((exp.best or {}).get("checkpoint")))


def stored_val_probs(checkpoint: str | None) -> np.ndarray | None:
    """The val probabilities a trial's checkpoint stored for its best epoch (None: none)."""
    if not checkpoint:
        return None
    probs = engine.load_checkpoint(checkpoint).get("best_val_probs")
    return None if probs is None else probs.float().numpy()


def tail(log: Any, chars: int = 1500) -> str:
    return log.read_text()[-chars:]


def plain_loop(ctx: Context, data: FERData, trials: int, epochs: int, threads: int) -> float:
    """The same trials as the search runs them (trial_config of the same config), one after
    another in this process: engine.train each config."""
    from fer_search.tuning.trainable import trial_config

    constants = {"epochs": epochs, "seed": SEED, "device": ctx.device.type, "threads": threads}
    constants["class_set"] = ctx.options.class_set or "all"
    start = time.perf_counter()
    for _ in range(trials):
        cfg = trial_config({**constants, **FIXED_PARAMS})
        engine.train(cfg, data.splits["train"], data.splits["val"])
    return time.perf_counter() - start


def figure_search_overhead(ctx: Context) -> dict[str, Any]:
    """N short trials through the search (FIFO, one at a time, all CPUs per trial) against
    the same trials in a plain loop, alternated; Ray's start-up is reported on its own."""
    trials, epochs = ctx.plan.overhead
    cpus = os.cpu_count() or 1
    space = search_space("bench-overhead", trials, epochs, FIXED_PARAMS)
    options = dict(no_asha=True, max_concurrent=1, cpus_per_trial=cpus,
                   **ctx.search_resources(1))  # fmt: skip
    data, threads_before = ctx.load(), torch.get_num_threads()
    ctx.start_ray()
    loops, searches, trial_s = [], [], []
    try:
        for _ in range(ctx.plan.overhead_repeats):
            loops.append(plain_loop(ctx, data, trials, epochs, cpus))
            result = run_search(ctx, space, data, **options)
            searches.append(result.wall_s)
            trial_s.append(sum(float(r["time_s"]) for r in result.rows))
    finally:
        torch.set_num_threads(threads_before)
    loop, search_s, startup = median(loops), median(searches), ctx.ray_startup_s or 0.0
    ratio = search_s / loop
    return {
        "figure": "search overhead",
        "arch": "simple_cnn",
        "trials": trials,
        "epochs": epochs,
        "data": describe(data),
        "search_s": round(search_s, 2),
        "loop_s": round(loop, 2),
        "search_runs_s": [round(s, 2) for s in searches],
        "loop_runs_s": [round(s, 2) for s in loops],
        "trial_time_s": round(median(trial_s), 2),  # Tune's time_total_s, summed over trials
        "overhead_per_trial_s": round((search_s - loop) / trials, 2),
        "ray_startup_s": round(startup, 2),
        "ratio_with_ray_startup": (search_s + startup) / loop,
        "ratio": ratio,
        "goal": "<= 1.10",
        "met": goal_met(ratio, 1.10, False),
        "summary": f"search {search_s:.1f} s / loop {loop:.1f} s ({trials}x{epochs} ep; "
        f"+{startup:.1f} s Ray start)",
    }


def leaderboard_configs(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The sampled settings of each trial, sorted (trial ids do not say the sampling order)."""
    keys = ("optimizer", "lr", "dropout", "crop_pad")
    return sorted(tuple(str(r.get(k, "")) for k in keys) for r in rows)


def stratified_share(data: FERData, fraction: float, seed: int = SEED) -> FERData:
    """`data` with a stratified, seeded `fraction` of its train split (val and test whole)."""
    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([
        rng.permutation(members)[: max(1, round(fraction * len(members)))]
        for members in (np.flatnonzero(train.labels == c) for c in np.unique(train.labels))
    ]))  # fmt: skip
    soft = None if train.soft_labels is None else train.soft_labels[keep]
    part = FERSplit(train.name, train.images[keep], train.labels[keep], train.class_names, soft)
    source = f"{data.source} ({fraction:g} of train)"
    # built by hand: load_data(**load_args) would not give it back, so it records none
    return dataclasses.replace(data, splits={**data.splits, "train": part}, source=source,
                               load_args={})  # fmt: skip


def asha_data(ctx: Context) -> tuple[FERData, str, float]:
    """The ASHA searches' data, what it is in words, and the share of train it holds: the
    demo data at its ASHA size, or the run's data with a stratified share of train."""
    fraction = ctx.plan.asha_train_fraction
    if fraction >= 1.0 or ctx.options.data_is_demo:
        data = ctx.load(ctx.demo_size_if_demo(ctx.plan.asha_demo_size))
        return data, describe(data), 1.0
    full = ctx.load()
    words = f"{fraction:g} of train (stratified, seed {SEED}), all of val, from {describe(full)}"
    return stratified_share(full, fraction), words, fraction


def figure_asha(ctx: Context) -> dict[str, Any]:
    """The same sampled trials (a fresh seeded RandomSampler each) run to max_t and under ASHA."""
    import optuna

    trials, max_t, factor = ctx.plan.asha
    space = search_space("bench-asha", trials, max_t, SAMPLED_PARAMS, grace_period=1,
                         reduction_factor=factor)  # fmt: skip
    options = dict(max_concurrent=2, cpus_per_trial=1, **ctx.search_resources(0.5))
    data, data_words, fraction = asha_data(ctx)
    runs = {
        key: run_search(ctx, space, data, no_asha=key == "full",
                        sampler=optuna.samplers.RandomSampler(seed=SEED), **options)
        for key in ("full", "asha")
    }  # fmt: skip
    epochs = {k: sum(int(r["epochs"]) for r in run.rows) for k, run in runs.items()}
    top = {k: best_row(run.rows) for k, run in runs.items()}
    best = {k: float(row["val_acc"]) for k, row in top.items()}
    ci = {k: stats.recorded_interval(row) for k, row in top.items()}
    ratio = epochs["full"] / max(1, epochs["asha"])
    gap_pp = (best["full"] - best["asha"]) * 100
    gap = gap_interval(runs, data.splits["val"].labels)
    return {
        "figure": "ASHA savings",
        "arch": "simple_cnn",
        "trials": trials,
        "max_t": max_t,
        "grace_period": 1,
        "reduction_factor": factor,
        "train_fraction": fraction,
        "data": data_words,
        "epochs_no_asha": epochs["full"],
        "epochs_asha": epochs["asha"],
        "best_val_acc_no_asha": best["full"],
        "best_val_acc_no_asha_ci95": ci["full"],
        "best_val_acc_asha": best["asha"],
        "best_val_acc_asha_ci95": ci["asha"],
        "gap_pp": round(gap_pp, 2),
        **gap,
        "wall_s_no_asha": round(runs["full"].wall_s, 1),
        "wall_s_asha": round(runs["asha"].wall_s, 1),
        "same_configs": leaderboard_configs(runs["full"].rows)
        == leaderboard_configs(runs["asha"].rows),
        "sampler": f"RandomSampler(seed={SEED}) in place of TPE, so both searches get the same "
        "configs",
        "ratio": ratio,
        "goal": ">= 3 with gap <= 1 pp",
        "met": goal_met(ratio, 3.0, True) and gap_pp <= 1.0,
        "summary": f"{epochs['full']} / {epochs['asha']} epochs, best val_acc "
        f"{stats.percent(best['full'], ci['full'])} / {stats.percent(best['asha'], ci['asha'])}, "
        f"gap {gap_pp:+.2f} pp{fmt_pp_interval(gap.get('gap_pp_ci95'))}",
    }


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best trial's leaderboard row, as the search selects it (Experiment.best): the best
    val_acc of the completed and pruned trials; of all scored trials if none of them is."""
    scored = [r for r in rows if np.isfinite(float(r["val_acc"]))]
    done = [r for r in scored if r.get("status") in ("completed", "pruned")]
    return max(done or scored, key=lambda r: float(r["val_acc"]))


def gap_interval(runs: dict[str, SearchRun], labels: np.ndarray) -> dict[str, Any]:
    """The best trials' val_acc difference (no ASHA minus ASHA) paired on the same val images,
    from the probabilities each stored: its 95 % interval in pp and McNemar's p-value; {} when
    a best trial stored none."""
    full, asha = runs["full"].best_val_probs, runs["asha"].best_val_probs
    if full is None or asha is None or len(full) != len(labels) or len(asha) != len(labels):
        return {}
    paired = stats.paired_comparison(labels, full.argmax(1), asha.argmax(1))
    return {
        "gap_pp_ci95": [round(v * 100, 2) for v in paired["difference_ci95"]],
        "gap_p_value": paired["p_value"],
        "gap_within_noise": paired["within_noise"],
    }


def fmt_pp_interval(interval: list[float] | None) -> str:
    return f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else ""
