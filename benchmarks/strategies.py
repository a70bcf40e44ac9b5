"""Strategies side by side at equal wall time (issue #22 item 4): fer-search's search against
(a) the default recipe of `fer-search train`, (b) random search with the same scheduler and
(c) Ray Tune's stock OptunaSearch with ASHA, as a Ray Tune user writes it.

    python benchmarks/strategies.py --minutes 10 --data ../shared/data/fer2013/fer2013.csv.gz
    python benchmarks/strategies.py --minutes 0.5 --only fer-search,default-recipe   # demo data

The arms run one after the other on the same machine, fer-search first. fer-search gets M
minutes: `reserve` seconds of them (15 %, 5-180 s) are kept for Ray's start-up and its final
evaluation and report, the rest is its search's time budget. Its measured wall time W then is
every other arm's budget, so that the arms get the same wall time whatever fer-search's final
evaluation took: random search gets fer-search's own time budget (the same machinery), the
default recipe W less 10 s for its winner's predictions, Ray's OptunaSearch W less 30 s for
Ray's start-up and its winner's predictions. Without the fer-search arm, every arm gets M
minutes. The data is loaded once, before the arms, and no arm's time includes loading it. An
arm's wall time runs from its start to its winner's PrivateTest predictions (Ray's start-up and
the search's own final evaluation and report included; Ray's shutdown after it is not). Every
arm picks its winner on PublicTest (val); PrivateTest (test) is predicted once per winner,
without test-time augmentation.

- fer-search: `fer_search.search(space, ...)` with the space's sampler (seeded TPE), scheduler,
  hand-tuned start point and refit, its time budget = the training time; the refit gets
  `--refit-share` of it (default the space's own share, 0.75 for `reference`), and the trial
  length (epochs = ASHA's max_t), grace period and refit size are scaled from the space's by the
  budget (`search_plan`).
- default-recipe: `TrainConfig()` as `fer-search train` uses it, for as many epochs as fit in
  the training time: one epoch on a tenth of the train split warms up, one whole epoch is timed,
  both inside the budget, then the recipe trains from scratch.
- random: the fer-search arm's search with `optuna.samplers.RandomSampler(seed)` and without
  the hand-tuned start point (random search knows none); the same scheduler, refit and budget.
- ray-optuna: `tune.Tuner` with `OptunaSearch(seed=)` (Optuna's default TPE), `ASHAScheduler`
  (the fer-search arm's max_t, grace period and reduction factor), `time_budget_s` = the
  training time, the same space as Tune distributions, a function trainable calling
  `fer_search.engine.train` and reporting val_acc with a checkpoint each epoch; no refit, no
  ensemble, no start point.

Writes OUT/strategies.json and OUT/strategies.md; the arms' runs stay in a scratch directory
(its path is in the JSON). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = ("fer-search", "default-recipe", "random", "ray-optuna")
BASELINES = {"default-recipe": "(a)", "random": "(b)", "ray-optuna": "(c)"}
REFIT_SHARE = 0.4  # the refit's share for a space with a refit but no time budget
MARGIN_PP = 1.0  # the bar: fer-search ahead of the default recipe by >= 1 pp
PROBE_FRACTION = 0.1  # the default recipe warms up with one epoch on this share of train
# the default recipe plans its epochs as if each took this much longer than the timed one: at 25
# minutes its epochs ran 5.5 % slower (57 s against 54 s), so it stopped 2 short of its schedule
EPOCH_SLACK = 1.1
# seconds of an arm's budget kept for what follows its training when it runs after fer-search:
# its winner's predictions, and for Ray's OptunaSearch Ray's start-up (27 s in all at 10 min)
AFTER_TRAINING_S = {"default-recipe": 10.0, "ray-optuna": 30.0}


# ---------------------------------------------------------------- plans (pure)
def reserve_seconds(budget_s: float) -> float:
    """The part of fer-search's budget kept for Ray's start-up and its final evaluation and
    report (179 s of a 10-minute budget on FER2013 here, so 15 %, at most 180 s)."""
    return min(180.0, max(5.0, 0.15 * budget_s))


def training_seconds(
    arm: str, budget_s: float, reserve_s: float, ours: dict[str, Any] | None
) -> tuple[float, float]:
    """An arm's (budget, training time) in seconds. fer-search's, and every arm's when it did
    not run (`ours` None): `budget_s` less `reserve_s`. After it, its measured wall time is the
    budget: random search trains as long as it did, the others that less what follows their
    training (AFTER_TRAINING_S)."""
    if arm == "fer-search" or ours is None:
        return budget_s, budget_s - reserve_s
    if arm == "random":
        return ours["wall_s"], ours["train_s"]
    return ours["wall_s"], ours["wall_s"] - AFTER_TRAINING_S[arm]


def space_refit_share(ex: Any) -> float:
    """The refit's share of the space's own time budget (reference.yaml: 2580 of 3420 s, 0.75);
    REFIT_SHARE for a space with a refit but no time budget; 0 for one without a refit."""
    if not ex.refit_budget:
        return 0.0
    return ex.refit_budget / ex.time_budget if ex.time_budget else REFIT_SHARE


def search_plan(ex: Any, train_s: float, refit_share: float = REFIT_SHARE) -> dict[str, Any]:
    """The search overrides for `train_s` seconds of training, scaled from the space's own
    experiment `ex`: the refit's share of the time (0 when the space has no refit), the trial
    length (epochs = max_t) and grace period by the search part's ratio to the space's, the
    number of refits by the refit's ratio to the space's. Never more than the space says."""
    refit_s = round(refit_share * train_s) if ex.refit_budget else 0
    search_s = train_s - refit_s
    scale = search_s / ex.search_budget if ex.time_budget and ex.search_budget > 0 else 1.0
    epochs = max(2, min(ex.epochs, round(ex.epochs * scale)))
    grace = max(1, min(ex.grace_period, epochs - 1, round(ex.grace_period * scale)))
    plan = {
        "time_budget": float(train_s),
        "refit_budget": float(refit_s),
        "epochs": epochs,
        "grace_period": grace,
    }
    if refit_s:
        refit_scale = refit_s / ex.refit_budget if ex.time_budget else 1.0
        plan["refit_top_k"] = max(1, min(ex.refit_top_k, round(ex.refit_top_k * refit_scale)))
    return plan


def epochs_that_fit(seconds: float, per_epoch_s: float, slack: float = 1.0) -> int:
    """Whole epochs of `per_epoch_s` times `slack` in `seconds`, at least one."""
    return max(1, int(seconds // (per_epoch_s * slack))) if per_epoch_s > 0 else 1


def verdict(arms: dict[str, dict[str, Any]], paired: dict[str, dict[str, Any]]) -> str:
    """One sentence: did fer-search beat the default recipe by >= MARGIN_PP on PublicTest, and
    is it ahead of random search and Ray's OptunaSearch; each with the paired difference on the
    same val images, its 95 % interval and McNemar's p-value."""
    if "fer-search" not in arms:
        return "fer-search was not run, so there is no verdict."
    parts = []
    for arm, comparison in paired.items():
        diff = comparison["difference"] * 100
        low, high = (x * 100 for x in comparison["difference_ci95"])
        figure = (
            f"{diff:+.2f} pp (95 % CI {low:+.2f} to {high:+.2f}, McNemar p = "
            f"{comparison['p_value']:.2g})"
        )
        if arm == "default-recipe":
            met = "beat" if diff >= MARGIN_PP else "did not beat"
            if low >= MARGIN_PP:
                sure = f"; the whole interval is above {MARGIN_PP:g} pp"
            elif low > 0:
                sure = f"; ahead beyond noise, but the interval reaches below {MARGIN_PP:g} pp"
            elif high >= 0:
                sure = "; the interval includes 0 (within noise)"
            else:
                sure = "; behind it beyond noise"
            parts.append(
                f"{met} {BASELINES[arm]} the default recipe by >= {MARGIN_PP:g} pp: {figure}{sure}"
            )
        else:
            ahead = "is ahead of" if diff > 0 else ("ties" if diff == 0 else "is behind")
            noise = " (within noise)" if comparison["within_noise"] else ""
            name = "random search" if arm == "random" else "Ray's stock OptunaSearch + ASHA"
            parts.append(f"{ahead} {BASELINES[arm]} {name}: {figure}{noise}")
    if not parts:
        return "fer-search ran alone, so there is nothing to compare it with."
    return "On PublicTest, fer-search " + "; it ".join(parts) + "."


# ---------------------------------------------------------------- winners
def winner_record(model: Any, data: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """A winner's val and test predictions (kept for the paired comparisons) and its scores,
    each accuracy with its 95 % bootstrap interval."""
    from fer_search import engine, stats

    where = engine.resolve_device("auto")
    record: dict[str, Any] = dict(extra)
    for split, key in (("val", "val_acc"), ("test", "test_acc")):
        part = data.splits[split]
        pred = engine.predict_probs(model, part.images, device=where).argmax(1)
        record[f"_{split}_pred"] = pred
        record[key] = float((pred == part.labels).mean())
        record[f"{key}_ci95"] = stats.accuracy_ci(part.labels, pred)
    return record


@contextlib.contextmanager
def logged(path: Path) -> Iterator[None]:
    """The arm's console output goes to its log file."""
    with open(path, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


# ---------------------------------------------------------------- arms
def run_search_arm(arm: str, args: argparse.Namespace, data: Any, runs: Path, train_s: float):
    import optuna

    import fer_search
    from fer_search import engine

    space = fer_search.api.as_space(args.space)
    plan = search_plan(space.experiment, train_s, args.refit_share)
    spec = space.to_dict()
    options: dict[str, Any] = {**plan, "seed": args.seed}
    if arm == "random":
        spec.pop("points_to_evaluate", None)
        options["sampler"] = optuna.samplers.RandomSampler(seed=args.seed)
    start = time.perf_counter()
    with logged(runs / f"{arm}.log"):
        exp = fer_search.search(spec, data, storage=str(runs), name=arm, verbose=1, **options)
    if exp.interrupted or not exp.final:
        raise RuntimeError(
            f"{arm}: the search ended without a final evaluation ({exp.note}); "
            f"see {runs / f'{arm}.log'}"
        )
    best = exp.final["best"]
    payload = engine.load_checkpoint(exp.path / best["checkpoint"])
    model = engine.model_from_checkpoint(payload, engine.resolve_device("auto"))
    board = exp.leaderboard
    epochs_of = dict(zip(board["trial_id"].astype(str), board["epochs"], strict=True))
    is_refit = board["trial_id"].astype(str).str.startswith("refit")
    record = winner_record(
        model,
        data,
        {
            "trials": int((~is_refit).sum()),
            "refits": int(is_refit.sum()),
            "epochs": int(board["epochs"].sum()),
            "winner": f"trial {best['trial_id']}, {int(epochs_of[str(best['trial_id'])])} epochs",
            "plan": {k: v for k, v in options.items() if k != "sampler"},
            "sampler": "RandomSampler" if arm == "random" else "the space's (seeded TPE)",
            "start_point": arm != "random" and bool(space.points),
            "experiment": str(exp.path),
            # the search and its refit, as fer-search times them: the rest of wall_s is Ray's
            # start-up, the final evaluation, the report and the winner's predictions here
            "search_wall_s": float(exp.wall_time_s or 0.0),
            "product_final": {k: exp.final[k] for k in ("ensemble", "tta") if exp.final.get(k)},
        },
    )
    record["wall_s"] = time.perf_counter() - start
    stop_ray()
    return record


def run_default_recipe(args: argparse.Namespace, data: Any, runs: Path, train_s: float):
    """TrainConfig() for as many epochs as fit, each planned EPOCH_SLACK times one timed whole
    epoch (after one on a tenth of train that warms up; a tenth alone times no validation and
    under-planned)."""
    from fer_search import engine
    from fer_search.bench.search import stratified_share
    from fer_search.config import TrainConfig

    start = time.perf_counter()
    train, val = data.splits["train"], data.splits["val"]
    fraction = min(1.0, max(PROBE_FRACTION, 4 * TrainConfig().batch_size / len(train)))
    probe_cfg = TrainConfig(epochs=1, seed=args.seed)
    with logged(runs / "default-recipe-probe.log"):
        engine.train(probe_cfg, stratified_share(data, fraction).splits["train"], val)
        per_epoch = engine.train(probe_cfg, train, val).history[-1].epoch_time
    probe_s = time.perf_counter() - start
    left = train_s - probe_s
    cfg = TrainConfig(epochs=epochs_that_fit(left, per_epoch, EPOCH_SLACK), seed=args.seed)
    deadline = start + train_s
    last = {"t": time.perf_counter()}

    def on_epoch(stats: Any, save: Any) -> bool:
        now = time.perf_counter()
        epoch_s, last["t"] = now - last["t"], now
        return stats.epoch < cfg.epochs and now + epoch_s > deadline  # the next would overrun

    with logged(runs / "default-recipe.log"):
        result = engine.train(cfg, train, val, on_epoch=on_epoch)
    record = winner_record(
        result.model,
        data,
        {
            "trials": 1,
            "epochs": result.epochs_run,
            "planned_epochs": cfg.epochs,
            "probe": {
                "warm_up_train_fraction": round(fraction, 3),
                "epoch_s": round(per_epoch, 2),
                "seconds": round(probe_s, 1),
            },
            "winner": f"epoch {result.best_epoch} of {result.epochs_run} ({result.status})",
            "config": "TrainConfig() defaults (fer-search train): "
            + ", ".join(
                f"{k}={v}"
                for k, v in cfg.to_dict().items()
                if k
                in (
                    "model",
                    "width",
                    "depth",
                    "convs",
                    "optimizer",
                    "lr",
                    "schedule",
                    "dropout",
                    "hflip",
                    "crop_pad",
                    "batch_size",
                    "amp",
                )
            ),
        },
    )
    record["wall_s"] = time.perf_counter() - start
    return record


def tune_distribution(param: Any) -> Any:
    """A space's parameter as a Ray Tune search-space entry."""
    from ray import tune

    if param.kind == "fixed":
        return param.value
    if param.kind == "categorical":
        return tune.choice(list(param.choices))
    low, high, step = param.low, param.high, param.step
    if param.kind == "int":
        if step:
            return tune.qrandint(int(low), int(high), int(step))  # inclusive upper bound
        return (tune.lograndint if param.log else tune.randint)(int(low), int(high) + 1)
    if param.kind == "loguniform":
        return tune.qloguniform(low, high, step) if step else tune.loguniform(low, high)
    return tune.quniform(low, high, step) if step else tune.uniform(low, high)


def active_settings(config: dict[str, Any], conditions: dict[str, Any]) -> dict[str, Any]:
    """A flat Tune config with the parameters whose `when` does not hold dropped (a dict space
    cannot say `lr@sgd only when optimizer is sgd`; the trainable applies it by hand)."""
    from fer_search.space import train_values

    kept = {
        name: value
        for name, value in config.items()
        if all(config.get(ref) in allowed for ref, allowed in conditions.get(name, ()))
    }
    return train_values(kept)


def run_ray_optuna(args: argparse.Namespace, data: Any, runs: Path, train_s: float):
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    import fer_search
    from fer_search.tuning.engine_trainer import load_trial_model

    space = fer_search.api.as_space(args.space)
    # the trial length and grace period a Ray user would take from the space: fer-search's plan
    # for its whole training time with no refit (at 25 minutes, the space's own 8 and 2)
    plan = search_plan(space.experiment, args.search_train_s, refit_share=0.0)
    ex = space.experiment
    param_space = {p.name: tune_distribution(p) for p in space.params}
    conditions = {p.name: p.when for p in space.params if p.when}
    epochs, cpus = plan["epochs"], ex.cpus_per_trial

    def trainable(config: dict[str, Any], train: Any, val: Any) -> None:
        from fer_search import engine
        from fer_search.config import TrainConfig

        values = {**active_settings(config, conditions), "epochs": epochs, "seed": args.seed}
        cfg = TrainConfig.from_dict(values)

        def on_epoch(stats: Any, save: Any) -> bool:
            with tempfile.TemporaryDirectory() as directory:
                save(Path(directory) / "checkpoint.pt")
                tune.report(
                    {"val_acc": stats.val_acc, "epoch": stats.epoch},
                    checkpoint=tune.Checkpoint.from_directory(directory),
                )
            return False

        engine.train(cfg, train, val, on_epoch=on_epoch)

    start = time.perf_counter()
    with logged(runs / "ray-optuna.log"):
        ray.init(
            address="local", include_dashboard=False, log_to_driver=False
        )  # never a ray start cluster
        concurrent = max(1, int(ray.cluster_resources()["CPU"] // cpus))
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(trainable, train=data.splits["train"], val=data.splits["val"]),
                {"cpu": cpus},
            ),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(seed=args.seed),
                scheduler=ASHAScheduler(
                    max_t=epochs,
                    grace_period=plan["grace_period"],
                    reduction_factor=ex.reduction_factor,
                ),
                metric="val_acc",
                mode="max",
                num_samples=ex.num_samples,
                max_concurrent_trials=concurrent,
                time_budget_s=train_s,
            ),
            run_config=tune.RunConfig(
                name="ray-optuna",
                storage_path=str(runs),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1,
                    checkpoint_score_attribute="val_acc",
                    checkpoint_score_order="max",
                ),
            ),
        )
        results = tuner.fit()
        best = results.get_best_result(metric="val_acc", mode="max", scope="all")
        checkpoint = best.get_best_checkpoint("val_acc", "max") if best.metrics else None
        if checkpoint is None:
            raise RuntimeError("ray-optuna: no trial reported an epoch within the budget")
        _, model, _ = load_trial_model(checkpoint, "cpu")
    frame = results.get_dataframe()
    metrics = best.metrics or {}
    record = winner_record(
        model,
        data,
        {
            "trials": len(results),
            "epochs": int(frame["training_iteration"].fillna(0).sum()),
            "winner": f"{metrics.get('trial_id', '?')}, best of "
            f"{metrics.get('training_iteration', '?')} epochs",
            "plan": {
                "time_budget_s": train_s,
                "max_t": epochs,
                "grace_period": plan["grace_period"],
                "reduction_factor": ex.reduction_factor,
                "num_samples": ex.num_samples,
                "max_concurrent_trials": concurrent,
                "cpus_per_trial": cpus,
            },
            "errors": len(results.errors),
        },
    )
    record["wall_s"] = time.perf_counter() - start
    stop_ray()
    return record


RUNNERS = {
    "fer-search": lambda args, data, runs, s: run_search_arm("fer-search", args, data, runs, s),
    "default-recipe": run_default_recipe,
    "random": lambda args, data, runs, s: run_search_arm("random", args, data, runs, s),
    "ray-optuna": run_ray_optuna,
}


# ---------------------------------------------------------------- comparisons and output
def paired_against_fer_search(arms: dict[str, dict[str, Any]], data: Any) -> dict[str, Any]:
    """fer-search's winner minus each other winner on the same val images (and test images)."""
    from fer_search import stats

    if "fer-search" not in arms:
        return {}
    ours = arms["fer-search"]
    out = {}
    for arm, other in arms.items():
        if arm == "fer-search":
            continue
        out[arm] = {
            split: stats.paired_comparison(
                data.splits[split].labels, ours[f"_{split}_pred"], other[f"_{split}_pred"]
            )
            for split in ("val", "test")
        }
    return out


def machine() -> dict[str, Any]:
    import torch

    versions = {name: metadata.version(name) for name in ("torch", "ray", "optuna")}
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "python": platform.python_version(),
        **versions,
    }


def pct(value: float) -> str:
    return f"{value * 100:.2f} %"


def ci(interval: list[float]) -> str:
    return f"{interval[0] * 100:.2f}–{interval[1] * 100:.2f}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def table(report: dict[str, Any]) -> str:
    lines = [
        "| arm | trials | epochs | budget | wall time | PublicTest (val) | 95 % CI "
        "| PrivateTest (test) | 95 % CI | winner |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for arm, r in report["arms"].items():
        trials = f"{r['trials']}" + (f" + {r['refits']} refit" if r.get("refits") else "")
        lines.append(
            f"| {' '.join(filter(None, (arm, BASELINES.get(arm))))} | {trials} | {r['epochs']} | "
            f"{minutes(r['budget_s'])} | {minutes(r['wall_s'])} | {pct(r['val_acc'])} | "
            f"{ci(r['val_acc_ci95'])} | "
            f"{pct(r['test_acc'])} | {ci(r['test_acc_ci95'])} | {r['winner']} |"
        )
    for arm, f in report.get("failed", {}).items():
        lines.append(f"| {arm} | failed after {minutes(f['wall_s'])}: {f['error'][:200]} |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    b, m = report["budget"], report["machine"]
    lines = [
        "# Strategies side by side at equal wall time",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}; data: {report['data']}",
        f"- budget: fer-search {b['minutes']:g} min ({b['budget_s']:.0f} s), of which "
        f"{b['reserve_s']:.0f} s kept for Ray's start-up and its final evaluation and report, "
        f"{b['train_s']:.0f} s its search's time budget; arms run one after the other, "
        "fer-search first, and each other arm's budget is fer-search's wall time (random "
        "search: fer-search's time budget; the default recipe and Ray's OptunaSearch: the wall "
        "time less "
        + " and ".join(f"{s:g} s" for s in b["after_training_s"].values())
        + " for what follows training)",
        f"- machine: {m['platform']}, {m['cpu_count']} CPUs ({m['processor']}), {m['device']}; "
        f"torch {m['torch']}, ray {m['ray']}, optuna {m['optuna']}; load average "
        f"{report['load_average']['start']} at the start, {report['load_average']['end']} at "
        "the end",
        "- wall time: from the arm's start to its winner's PrivateTest predictions (Ray's "
        "start-up and fer-search's final evaluation and report included; loading the data, "
        "done once before the arms, not)",
        "",
        table(report),
        "",
        "Every arm picks its winner on PublicTest; PrivateTest is predicted once per winner, "
        f"without TTA. Intervals: {report['ci_method']}.",
        "",
    ]
    if report["paired"]:
        lines += [
            "fer-search's winner minus each other winner, on the same images:",
            "",
            "| against | val difference | 95 % CI | McNemar p | test difference | 95 % CI |",
            "| --- | ---: | --- | ---: | ---: | --- |",
        ]
        for arm, c in report["paired"].items():
            v, t = c["val"], c["test"]
            lines.append(
                f"| {arm} | {v['difference'] * 100:+.2f} pp | {ci(v['difference_ci95'])} | "
                f"{v['p_value']:.2g} | {t['difference'] * 100:+.2f} pp | "
                f"{ci(t['difference_ci95'])} |"
            )
        lines.append("")
    lines += [f"**Verdict.** {report['verdict']}", "", "## The arms", ""]
    lines += [f"- **{arm}**: {text}" for arm, text in report["arms_described"].items()]
    lines.append("")
    return "\n".join(lines)


ARM_WORDS = {
    "fer-search": "`fer_search.search` with the space's seeded TPE, ASHA, hand-tuned start "
    "point, refit and final evaluation; its time budget is the training time, the refit's share "
    "and the trial length scaled from the space (`plan`).",
    "default-recipe": "`TrainConfig()` (what `fer-search train` trains): one epoch on a tenth "
    "of train warms up, one whole epoch is timed, then as many epochs as fit are trained from "
    f"scratch (planned {round((EPOCH_SLACK - 1) * 100)} % slower than the timed epoch); the "
    "best epoch on PublicTest.",
    "random": "the fer-search arm's search with `RandomSampler(seed)` and no start point.",
    "ray-optuna": "`tune.Tuner` with Ray's `OptunaSearch(seed=)` and `ASHAScheduler` (max_t, "
    "grace period and reduction factor from the space, scaled to the whole training time as "
    "fer-search's plan would be without a refit), `time_budget_s` = the training "
    "time, a function trainable over `engine.train` reporting val_acc with a checkpoint each "
    "epoch; no refit, ensemble or start point.",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo", help="FER2013 file or folder (default demo)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="fer-search's wall-clock budget (the other arms get its wall time)",
    )
    parser.add_argument("--space", default="reference", help="search space (default reference)")
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks")
    parser.add_argument("--only", default=",".join(ARMS), help="arms to run, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refit-share",
        type=float,
        default=None,
        help="the fer-search and random arms' refit share of the training time (default the "
        "space's own: its refit_budget / time_budget)",
    )
    parser.add_argument(
        "--reserve",
        type=float,
        default=None,
        metavar="SECONDS",
        help="of fer-search's budget, kept for start-up and final evaluation "
        "(default 15 %%, 5-180 s)",
    )
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.only.split(",") if arm.strip()]
    unknown = [arm for arm in args.arms if arm not in ARMS]
    if unknown or not args.arms:
        parser.error(f"--only {args.only!r}: arms are {', '.join(ARMS)}")
    if args.refit_share is None:
        from fer_search.api import as_space

        args.refit_share = space_refit_share(as_space(args.space).experiment)
    if not args.minutes > 0 or not 0 <= args.refit_share < 1:
        parser.error(
            f"need --minutes > 0 and 0 <= --refit-share < 1, got {args.minutes:g}, "
            f"{args.refit_share:g}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    import fer_search
    from fer_search import stats
    from fer_search.bench.plan import describe

    args = parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/strategies.py", *(sys.argv[1:] if argv is None else argv)]
    )
    budget_s = args.minutes * 60
    reserve = reserve_seconds(budget_s) if args.reserve is None else args.reserve
    args.search_train_s = budget_s - reserve
    if args.search_train_s <= 0:
        raise SystemExit(f"--reserve {reserve:g} s leaves no training time in {budget_s:g} s")
    data = fer_search.load_data(args.data)
    runs = Path(tempfile.mkdtemp(prefix="fer-strategies-"))
    print(f"{len(args.arms)} arms x {args.minutes:g} min on {describe(data)}; runs in {runs}")
    load_start = [round(x, 2) for x in os.getloadavg()]
    arms: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}

    def write() -> dict[str, Any]:
        """The figures so far, to OUT: rewritten after every arm, so that one arm's crash
        keeps the others'."""
        paired = paired_against_fer_search(arms, data)
        report = {
            "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": describe(data),
            "machine": machine(),
            "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
            "budget": {
                "minutes": args.minutes,
                "budget_s": budget_s,
                "reserve_s": reserve,
                "train_s": args.search_train_s,
                "after_training_s": AFTER_TRAINING_S,
                "refit_share": args.refit_share,
            },
            "space": args.space,
            "seed": args.seed,
            "ci_method": stats.METHOD,
            "runs": str(runs),
            "arms": {
                a: {k: v for k, v in r.items() if not k.startswith("_")} for a, r in arms.items()
            },
            "failed": failed,
            "arms_described": {arm: ARM_WORDS[arm] for arm in args.arms},
            "paired": paired,
            "verdict": verdict(arms, {a: c["val"] for a, c in paired.items()}),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "strategies.json").write_text(
            json.dumps(report, indent=2, default=float) + "\n"
        )
        (args.out / "strategies.md").write_text(markdown(report))
        return report

    for arm in sorted(args.arms, key=ARMS.index):  # fer-search first: it sets the budget
        arm_budget, train_s = training_seconds(arm, budget_s, reserve, arms.get("fer-search"))
        print(f"{arm}: {arm_budget:.0f} s, {train_s:.0f} s of training ...", flush=True)
        start = time.perf_counter()
        try:
            arms[arm] = {
                **RUNNERS[arm](args, data, runs, train_s),
                "budget_s": arm_budget,
                "train_s": train_s,
            }
        except RuntimeError as exc:  # one arm's failure must not lose the others' figures
            stop_ray()
            failed[arm] = {"error": str(exc), "wall_s": time.perf_counter() - start}
            print(f"{arm}: failed: {exc}", file=sys.stderr, flush=True)
            report = write()
            continue
        r = arms[arm]
        print(
            f"{arm}: val {pct(r['val_acc'])} ({ci(r['val_acc_ci95'])}), test "
            f"{pct(r['test_acc'])}, {r['epochs']} epochs, {minutes(r['wall_s'])}",
            flush=True,
        )
        report = write()
    print(table(report))
    print(report["verdict"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
