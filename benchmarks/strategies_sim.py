"""Search strategies over many seeds on a surrogate of recorded FER2013 learning curves
(issue #35): simulated trials, the real Ray Tune + Optuna + scheduler path.

    python benchmarks/strategies_sim.py --curves results/benchmarks/curves/curves.csv \
        --out results/benchmarks [--seeds 30] [--workers 8] [--budget-h 0.05] [--speedup 10]

1. The surrogate (fer_search.tuning.surrogate) is fitted on the curve table, and its fidelity on
   held-out configurations (k-fold) is measured and written first.
2. Every arm searches the table's own space (`fer_search.tuning.curve_space`, the design
   benchmarks/curves.py trained, as a fer-search space) with
   `SimulatedTrainer(curve=surrogate, speedup=S)`: a trial's epoch waits the seconds that
   configuration's epoch took on the recording machine divided by S, and reports the
   surrogate's val_acc with noise measured on the table's repeats. Ray is started
   once with `--workers` logical CPUs, one per trial, and every arm runs `--workers` trials at
   once; the arms run in turn within each seed, seed after seed.
3. The budget is training time: the seconds of this CPU the reported epochs stand for, summed
   over all trials (Ray's own overheads are not counted), `--budget-h` hours per worker. A
   search runs on wall time a little beyond its budget (PBT, whose exploits restore
   checkpoints, on twice that), and is cut at it afterwards: every result carries its time, so
   the best result so far is known at every budget.
4. A search is scored by the true val_acc of the result it would deliver: the configuration
   and epoch with the best reported val_acc so far, valued without noise (the surrogate's mean).

Arms: `default` (fer-search's search: seeded multivariate TPE with the constant liar + ASHA),
`random` (RandomSampler + the same ASHA), `tpe-independent`, `tpe-no-liar`, `tpe-startup-40`
(variants of the default's TPE), `hyperband` (the default TPE under fer-search's HyperBand),
`pbt` (fer-search's PBT, a population of as many trials as the budget trains to the end), and
`ray-optuna` (Ray Tune's stock OptunaSearch + ASHAScheduler, as a Ray Tune user writes it;
`reuse_actors=True` as fer-search's trials have, and stopped at its budget by a Tune Stopper).

Writes OUT/strategies-sim.json, .md and .png; each finished search is appended to
OUT/strategies-sim-runs.jsonl as it ends, and a second call with the same settings skips the
searches already there (a session may end mid-way). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_search.tuning import curve_space  # noqa: E402

ARMS = ("default", "random", "tpe-independent", "tpe-no-liar", "tpe-startup-40", "hyperband",
        "pbt", "ray-optuna")  # fmt: skip
EPOCHS = 12  # the table's; ASHA's max_t (rungs at 1, 3 and 9 with grace 1 and eta 3)
GRID = 40  # budget points a trajectory is kept at
BOOTSTRAP = 2000
CLASSES = 7
# the table's design as a fer-search space: the same choices and ranges
SPACE_PARAMS = curve_space.search_params()


# ---------------------------------------------------------------- one search per arm
def space(seed: int, num_samples: int, scheduler: str = "asha") -> dict[str, Any]:
    experiment = {"epochs": EPOCHS, "grace_period": 1, "reduction_factor": 3,
                  "num_samples": num_samples, "seed": seed, "cpus_per_trial": 1,
                  "scheduler": scheduler}  # fmt: skip
    return {"name": "sim", "experiment": experiment, "params": SPACE_PARAMS}


def sampler_for(arm: str, seed: int, workers: int) -> Any:
    """The Optuna sampler an arm passes in place of the default (None: the default)."""
    import optuna

    if arm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    variants: dict[str, dict[str, Any]] = {
        "tpe-independent": {"multivariate": False, "constant_liar": workers > 1},
        "tpe-no-liar": {"multivariate": True, "group": True, "constant_liar": False},
        "tpe-startup-40": {"multivariate": True, "group": True, "constant_liar": workers > 1,
                           "n_startup_trials": 40},
    }  # fmt: skip
    if arm in variants:
        settings: dict[str, Any] = {"n_startup_trials": 10, **variants[arm]}
        return optuna.samplers.TPESampler(seed=seed, **settings)
    return None


def run_fer_search(arm: str, seed: int, plan: dict[str, Any], surrogate: Any, scratch: Path) -> Any:
    """One fer-search arm: its experiment directory's trials as events."""
    import fer_search

    trainer = fer_search.SimulatedTrainer(curve=surrogate, speedup=plan["speedup"],
                                          checkpoint_mib=0.0)  # fmt: skip
    scheduler = {"hyperband": "hyperband", "pbt": "pbt"}.get(arm, "asha")
    samples = plan["pbt_population"] if arm == "pbt" else 100_000
    exp = fer_search.search(
        space(seed, samples, scheduler), data=plan["data"], trainer=trainer,
        sampler=sampler_for(arm, seed, plan["workers"]),
        # PBT and HyperBand take no max_concurrent: Ray's `workers` CPUs bound it alike
        max_concurrent=None if scheduler in ("pbt", "hyperband") else plan["workers"],
        time_budget=plan["pbt_wall_s" if arm == "pbt" else "wall_s"], no_final_eval=True,
        storage=str(scratch),
        name=f"{arm}-{seed}", top_k=1,
    )  # fmt: skip
    return events_of_experiment(exp.path)


def events_of_experiment(path: Path) -> list[dict[str, Any]]:
    """Every result of every trial in a fer-search experiment: its time, the training seconds
    it stands for, val_acc, epoch and the trial's configuration at that result (Tune's
    result.json, a line per result, keeps the config of each: PBT changes it)."""
    events = []
    for results in sorted(path.glob("trial_*/result.json")):
        for line in results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                events.append(event(row, row["config"], results.parent.name))
    return events


def event(row: Any, config: dict[str, Any], trial: str) -> dict[str, Any]:
    return {"at": float(row["reported_at"]), "seconds": float(row["sim_epoch_s"]),
            "val_acc": float(row["val_acc"]), "epoch": int(row["epoch"]), "trial": trial,
            "config": config}  # fmt: skip


def run_ray_optuna(seed: int, plan: dict[str, Any], surrogate: Any, scratch: Path) -> Any:
    """Ray Tune's stock OptunaSearch (Optuna's default TPE, seeded) and ASHAScheduler over the
    same space (define-by-run for the learning rate that depends on the optimiser), a function
    trainable that waits and reports as SimulatedTrainer does."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict[str, Any]) -> None:
        settings = {**config, "lr": config.get("lr_sgd", config.get("lr_adamw")), "seed": seed}
        seconds = surrogate.epoch_seconds(settings)
        for epoch in range(1, EPOCHS + 1):
            time.sleep(seconds / plan["speedup"])
            tune.report({"val_acc": surrogate(settings, epoch, CLASSES), "epoch": epoch,
                         "sim_epoch_s": seconds, "reported_at": time.time()})  # fmt: skip

    class Budget(tune.Stopper):
        """Stop the search once its results stand for the budget (Tune's own run loop is not
        the fer-search arms' one: it runs on its budget, not on time)."""

        def __init__(self) -> None:
            self.spent = 0.0

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.spent += float(result.get("sim_epoch_s", 0.0))
            return False

        def stop_all(self) -> bool:
            return self.spent >= plan["budget_s"] * 1.05

    searcher = OptunaSearch(define_by_run, metric="val_acc", mode="max", seed=seed)
    scheduler = ASHAScheduler(time_attr="epoch", max_t=EPOCHS, grace_period=1, reduction_factor=3)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric="val_acc", mode="max",
            num_samples=100_000, max_concurrent_trials=plan["workers"], reuse_actors=True,
            time_budget_s=4 * plan["wall_s"],
        ),
        run_config=tune.RunConfig(name=f"ray-optuna-{seed}", storage_path=str(scratch),
                                  verbose=0, stop=Budget()),
    )  # fmt: skip
    events = []
    results = tuner.fit()
    for index in range(len(results)):
        result = results[index]
        frame = result.metrics_dataframe
        if frame is None or frame.empty or result.config is None:
            continue  # a trial the time budget ended before its first result
        config = {**result.config, "lr": result.config.get("lr_sgd", result.config.get("lr_adamw"))}
        for _, row in frame.iterrows():
            events.append(event(row, config, str(result.path)))
    return events


def define_by_run(trial: Any) -> None:
    """SPACE_PARAMS in Optuna's define-by-run, as a Ray Tune user would write it."""
    for name, param in SPACE_PARAMS.items():
        if not isinstance(param, dict) or "when" in param:
            continue
        if param["type"] == "categorical":
            trial.suggest_categorical(name, param["choices"])
        elif param["type"] == "int":
            trial.suggest_int(name, param["low"], param["high"])
        else:
            log = param["type"] == "loguniform"
            trial.suggest_float(name, param["low"], param["high"], log=log)
        if name == "optimizer":
            lr = SPACE_PARAMS[f"lr@{trial.params['optimizer']}"]
            trial.suggest_float(f"lr_{trial.params['optimizer']}", lr["low"], lr["high"], log=True)


# ---------------------------------------------------------------- scoring (pure)
def trajectory(events: list[dict[str, Any]], surrogate: Any, grid: np.ndarray) -> dict[str, Any]:
    """The search's delivered true val_acc at every budget of `grid` (NaN before its first
    result; after its last, what it delivered then: a search that ends early keeps its result,
    and `spent_s` says it ended early), the budget it spent in all, and how many trials and
    results it had within the grid's last budget."""
    events = sorted(events, key=lambda e: e["at"])
    spent = np.cumsum([e["seconds"] for e in events])
    best_seen, delivered = -1.0, np.nan
    values = np.full(len(grid), np.nan)
    trials: set[str] = set()
    position = 0
    for event_, total in zip(events, spent, strict=True):
        while position < len(grid) and grid[position] < total:
            values[position] = delivered
            position += 1
        if position == len(grid):
            break
        trials.add(event_["trial"])
        if event_["val_acc"] > best_seen:
            best_seen = event_["val_acc"]
            delivered = surrogate.true_val_acc(event_["config"], event_["epoch"])
    values[position:] = delivered  # what it delivered stands once its results end
    within = int(np.searchsorted(spent, grid[-1], side="right"))
    return {"values": values.tolist(), "spent_s": float(spent[-1]) if len(spent) else 0.0,
            "trials": len(trials), "results": within}  # fmt: skip


def crossing(curve: np.ndarray, grid: np.ndarray, target: float) -> float:
    """The first budget at which `curve` reaches `target` (linear between grid points); inf
    when it never does."""
    above = np.flatnonzero(np.nan_to_num(curve, nan=-1.0) >= target - 1e-12)  # a mean's ulps
    if not len(above):
        return math.inf
    i = int(above[0])
    if i == 0 or np.isnan(curve[i - 1]):
        return float(grid[i])
    low, high = curve[i - 1], curve[i]
    return float(grid[i - 1] + (grid[i] - grid[i - 1]) * (target - low) / (high - low))


def budget_ratio(arm: np.ndarray, random: np.ndarray, grid: np.ndarray) -> float:
    """The budget at which the arm's mean curve (over seeds) reaches random search's mean final
    value, over the whole budget (seeds are rows)."""
    target = float(np.nanmean(random[:, -1]))
    return crossing(np.nanmean(arm, axis=0), grid, target) / float(grid[-1])


def ratio_interval(
    arm: np.ndarray, random: np.ndarray, grid: np.ndarray, rng: np.random.Generator
) -> list[float]:
    """95 % percentile interval of `budget_ratio` over seeds resampled with replacement, the
    same seeds for both (paired: seed s of every arm saw the same noise); inf where a
    resample never reaches the target."""
    n = len(arm)
    ratios = []
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, n, n)
        ratios.append(budget_ratio(arm[rows], random[rows], grid))
    # nearest rank: interpolating between a finite ratio and inf ("never") would give NaN
    return [float(np.percentile(ratios, q, method="nearest")) for q in (2.5, 97.5)]


def mean_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per grid point: the mean over seeds and its 95 % t-interval."""
    from scipy import stats

    mean = np.nanmean(values, axis=0)
    n = np.sum(~np.isnan(values), axis=0)
    sem = np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
    half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sem
    return mean, mean - half, mean + half


def summarise(runs: list[dict[str, Any]], grid: np.ndarray) -> dict[str, Any]:
    """Per arm: the mean curve with its interval, the final value, the budget ratio to reach
    random search's final best with its interval; `default_budget_ratio` at the top level."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        by_arm.setdefault(run["arm"], []).append(run)
    random = by_arm.get("random")
    rng = np.random.default_rng(0)
    arms: dict[str, Any] = {}
    for arm, arm_runs in by_arm.items():
        values = np.array([r["values"] for r in arm_runs])
        mean, lo, hi = mean_interval(values)
        entry: dict[str, Any] = {
            "seeds": len(arm_runs),
            "mean": np.round(mean, 5).tolist(), "ci95_lo": np.round(lo, 5).tolist(),
            "ci95_hi": np.round(hi, 5).tolist(),
            "final_mean": round(float(mean[-1]), 5),
            "final_ci95": [round(float(lo[-1]), 5), round(float(hi[-1]), 5)],
            "trials_median": float(np.median([r["trials"] for r in arm_runs])),
            "results_median": float(np.median([r["results"] for r in arm_runs])),
            "reached_budget": sum(int(r["spent_s"] >= grid[-1]) for r in arm_runs),
        }  # fmt: skip
        if random is not None:
            paired = [r for r in random if r["seed"] in {a["seed"] for a in arm_runs}]
            mine = [r for r in arm_runs if r["seed"] in {p["seed"] for p in paired}]
            rand = np.array([r["values"] for r in paired])
            ours = np.array([r["values"] for r in mine])
            entry["budget_ratio"] = _finite(budget_ratio(ours, rand, grid))
            entry["budget_ratio_ci95"] = [_finite(v) for v in ratio_interval(ours, rand, grid, rng)]
        arms[arm] = entry
    summary: dict[str, Any] = {"arms": arms}
    if "default" in arms and "budget_ratio" in arms["default"]:
        summary["default_budget_ratio"] = arms["default"]["budget_ratio"]
        summary["default_budget_ratio_ci95"] = arms["default"]["budget_ratio_ci95"]
    return summary


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 4)


# ---------------------------------------------------------------- the run
def plan_for(args: argparse.Namespace, surrogate: Any, table: Any) -> dict[str, Any]:
    budget_s = args.workers * args.budget_h * 3600.0
    epoch_s = float(np.mean([surrogate.epoch_seconds(c) for c in table.configs.values()]))
    # wall time enough to spend the budget with Ray's overheads, before the trials' start-up
    # (each search is cut at the budget afterwards)
    training_wall_s = budget_s / args.workers / args.speedup * args.wall_margin
    return {
        "workers": args.workers, "speedup": args.speedup, "budget_s": budget_s,
        "wall_s": round(training_wall_s + args.startup_s, 1),
        # PBT trains a fixed population to the end: as many trials as the budget trains fully
        "pbt_population": max(args.workers, round(budget_s / (EPOCHS * epoch_s))),
        # PBT's exploits restore checkpoints: Ray wall time that epochs shortened by the
        # speedup make large (the pilot spent 0.66 of its budget in the others' wall time)
        "pbt_wall_s": round(2 * training_wall_s + args.startup_s, 1),
        "mean_epoch_s": round(epoch_s, 2), "data": "demo",
    }  # fmt: skip


def run_one(arm: str, seed: int, plan: dict[str, Any], surrogate: Any, scratch: Path) -> list:
    if arm == "ray-optuna":
        return run_ray_optuna(seed, plan, surrogate, scratch)
    return run_fer_search(arm, seed, plan, surrogate, scratch)


def read_runs(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in runs if r.get("key") == key]


def write_outputs(out: Path, record: dict[str, Any], grid: np.ndarray, workers: int) -> None:
    (out / "strategies-sim.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(out / "strategies-sim.png", record["summary"]["arms"], grid, workers)
    (out / "strategies-sim.md").write_text(markdown(record, workers))


def plot(path: Path, arms: dict[str, Any], grid: np.ndarray, workers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = grid / workers / 3600
    figure, axes = plt.subplots(figsize=(8, 5))
    for arm, entry in arms.items():
        width = 2.5 if arm in ("default", "random") else 1.2
        (line,) = axes.plot(hours, 100 * np.array(entry["mean"], float), label=arm, lw=width)
        axes.fill_between(hours, 100 * np.array(entry["ci95_lo"], float),
                          100 * np.array(entry["ci95_hi"], float), color=line.get_color(),
                          alpha=0.15)  # fmt: skip
    if "random" in arms:
        axes.axhline(100 * arms["random"]["final_mean"], color="grey", ls=":", lw=1,
                     label="random's final best")  # fmt: skip
    axes.set_xlabel(f"budget: hours of training on {workers} workers (simulated)")
    axes.set_ylabel("true val_acc of the delivered model, % (mean, 95 % CI)")
    axes.set_title("Search strategies on a surrogate of FER2013 curves (simulated trials)")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(record: dict[str, Any], workers: int) -> str:
    s, fid, plan = record["summary"], record["fidelity"], record["plan"]
    chosen = record["surrogate"]
    lines = [
        "# Search strategies on a surrogate of FER2013 learning curves (simulated trials)", "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']} ({record['wall_s']:.0f} s)",
        f"- machine: {record['machine']}; versions: {record['versions']}",
        f"- budget: {plan['budget_s'] / 3600:.1f} hours of training ({workers} workers x "
        f"{plan['budget_s'] / workers / 3600:.2f} h), simulated {plan['speedup']:g}x faster "
        f"(mean epoch {plan['mean_epoch_s']} s on the recording CPU); PBT population "
        f"{plan['pbt_population']}", "",
        *seeds_note(record),
        "Every trial is simulated: no model is trained. Its curve comes from a surrogate fitted "
        "on real FER2013 training (`results/benchmarks/curves/`); everything else is the real "
        "Ray Tune, Optuna and scheduler path.", "",
        "## Strategies", "",
        "| arm | seeds | final true val_acc (95 % CI) | budget to reach random's final best "
        "(95 % CI) | trials | reached budget |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for arm, e in s["arms"].items():
        ratio = "-"  # without a random arm there is nothing to reach
        if "budget_ratio" in e:
            ratio = _ratio_text(e["budget_ratio"], e["budget_ratio_ci95"])
        lines.append(
            f"| {arm} | {e['seeds']} | {100 * e['final_mean']:.2f} % "
            f"({100 * e['final_ci95'][0]:.2f}–{100 * e['final_ci95'][1]:.2f}) | {ratio} | "
            f"{e['trials_median']:.0f} | {e['reached_budget']}/{e['seeds']} |"
        )
    if "default_budget_ratio" in s:
        lines += ["", f"**default_budget_ratio**: "
                  f"{_ratio_text(s['default_budget_ratio'], s['default_budget_ratio_ci95'])} "
                  "(the default's budget to reach random search's final best, over random "
                  "search's whole budget; paired bootstrap over seeds)."]  # fmt: skip
    lines += ["", "![strategies](strategies-sim.png)", "", "## The surrogate", "",
              f"Fitted on {fid['configurations']} configurations x {fid['epochs']} epochs; "
              f"held out by {fid['folds']}-fold cross-validation over configurations. Chosen: "
              f"**{chosen['accuracy_family']}** for val_acc, **{chosen['seconds_family']}** "
              f"for epoch seconds. Noise: run offset sd {chosen['noise']['run_sd']:.4f}, "
              f"epoch jitter sd {chosen['noise']['epoch_sd']:.4f} "
              f"({chosen['noise']['source']}).", "",
              "| family | tau final | tau best | tau epoch 1 | tau epoch 3 | MAE | "
              "epoch-seconds error |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, f in fid["families"].items():
        taus = [f[k] for k in ("kendall_tau_final", "kendall_tau_best", "kendall_tau_epoch1",
                               "kendall_tau_epoch3")]  # fmt: skip
        cells = " | ".join("-" if t is None else f"{t:.2f}" for t in taus)
        lines.append(f"| {name} | {cells} | {100 * f['mae']:.2f} pp | "
                     f"{100 * f['seconds_median_relative_error']:.0f} % |")  # fmt: skip
    floor = fid["seed_to_seed"]
    if floor.get("configurations"):
        lines += ["", f"Seed to seed on the {floor['configurations']} repeated configurations: "
                  f"tau of the final val_acc {floor['kendall_tau_final']}, MAE "
                  f"{100 * floor['mae']:.2f} pp (a perfect surrogate's floor)."]  # fmt: skip
    best = fid["families"][chosen["accuracy_family"]]
    lines += ["", "Held-out MAE per epoch of the chosen family (pp): "
              + ", ".join(f"{100 * v:.1f}" for v in best["mae_per_epoch"]), ""]  # fmt: skip
    return "\n".join(lines)


def seeds_note(record: dict[str, Any]) -> list[str]:
    """A paragraph saying the run is partial, when an arm has fewer seeds than were asked for."""
    fewest = min((e["seeds"] for e in record["summary"]["arms"].values()), default=0)
    if fewest >= record["seeds_requested"]:
        return []
    return [f"**Partial**: {fewest} seeds or more per arm of the {record['seeds_requested']} "
            "asked for (the run stopped at its `--stop-after-min`; the same command goes on "
            "from `strategies-sim-runs.jsonl`).", ""]  # fmt: skip


def _ratio_text(ratio: float | None, ci: list[float | None] | None) -> str:
    def text(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f}"

    return f"{text(ratio)} ({text(ci[0])}–{text(ci[1])})" if ci else text(ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curves", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--budget-h", type=float, default=0.05, help="hours per worker")
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument("--wall-margin", type=float, default=1.4)
    parser.add_argument("--startup-s", type=float, default=15.0)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument(
        "--stop-after-min",
        type=float,
        default=None,
        help="start no search after this many minutes; write what is done",
    )
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; known: {', '.join(ARMS)}")

    import ray

    from fer_search.tuning.surrogate import CurveTable, fidelity, fit_surrogate

    started = time.time()
    table = CurveTable.read(args.curves)
    report = fidelity(table)
    surrogate = fit_surrogate(table, report)
    plan = plan_for(args, surrogate, table)
    key = json.dumps([plan, surrogate.describe(), len(table.val_acc)], sort_keys=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "strategies-sim-runs.jsonl"
    runs = read_runs(runs_path, key)
    done = {(r["arm"], r["seed"]) for r in runs}
    grid = np.linspace(plan["budget_s"] / GRID, plan["budget_s"], GRID)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="strategies-sim-") as scratch:
        todo = [(seed, arm) for seed in range(args.seeds) for arm in arms
                if (arm, seed) not in done]  # fmt: skip
        for seed, arm in todo:
            if args.stop_after_min and time.time() - started > 60 * args.stop_after_min:
                print(f"stopped after {args.stop_after_min:g} min; the same command goes on")
                break
            began = time.time()
            events = run_one(arm, seed, plan, surrogate, Path(scratch))
            run = {"key": key, "arm": arm, "seed": seed, "wall_s": time.time() - began,
                   **trajectory(events, surrogate, grid)}  # fmt: skip
            with runs_path.open("a") as file:
                file.write(json.dumps(run) + "\n")
            runs.append(run)
            print(f"seed {seed} {arm}: final {run['values'][-1]:.4f}, {run['trials']} "
                  f"trials, {run['spent_s'] / plan['budget_s']:.2f} of the budget in "
                  f"{run['wall_s']:.0f} s", flush=True)  # fmt: skip
    ray.shutdown()
    from importlib import metadata

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in
                         ("ray", "optuna", "scikit-learn", "numpy"))  # fmt: skip
    record = {
        "command": "python " + shlex.join(sys.argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_s": time.time() - started,
        "machine": f"{platform.platform()}; {os.cpu_count()} CPUs",
        "versions": versions, "plan": {k: v for k, v in plan.items() if k != "data"},
        "surrogate": surrogate.describe(), "fidelity": report,
        "seeds_requested": args.seeds, "grid_s": grid.round(1).tolist(),
        "summary": summarise(runs, grid),
    }  # fmt: skip
    write_outputs(args.out, record, grid, args.workers)
    print(f"wrote {args.out / 'strategies-sim.md'}")


if __name__ == "__main__":
    main()
