"""The refit: the best configurations trained again from scratch, for as many epochs as the
time left holds, as the trials of one more Tune run under `<experiment>/refit/` (so they
checkpoint, log and resume like any trial) and compete on PublicTest like any trial."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.tuning.results import (
    choose,
    searched_settings,
    selectable,
    trial_rows,
    trial_states,
    write_leaderboard,
)
from fer_search.tuning.storage import fetch_trial_files

if TYPE_CHECKING:
    from fer_search.space import SearchSpace
    from fer_search.tuning.resources import ResourcePlan
    from fer_search.tuning.results import LeaderboardRow
    from fer_search.tuning.search_run import SearchRun
    from fer_search.tuning.tensorboard import RunNames

__all__ = [
    "REFIT_DIR",
    "THREAD_SCALING",
    "plan_refit",
    "refit_epochs",
    "refit_members",
    "refit_phase",
    "refit_share",
]

log = logging.getLogger(__name__)

REFIT_DIR = "refit"  # exp/refit/trial_refit, trial_refit2, ...: the best configurations retrained


def refit_dirname(trial: Any) -> str:
    from fer_search.config import refit_id
    from fer_search.tuning.trainable import REFIT_MEMBER

    return f"trial_{refit_id(int(trial.config.get(REFIT_MEMBER, 0)))}"


def refit_epochs(best: LeaderboardRow, seconds: float) -> int:
    """Epochs of the best configuration that fit in `seconds`, at the best trial's measured
    seconds per epoch (training plus validation, same resources); 0 when that is no longer
    than the trial already trained."""
    per_epoch = best.epoch_s
    if math.isnan(per_epoch) or per_epoch <= 0:
        return 0
    epochs = int(seconds / per_epoch)
    return epochs if epochs > best["epochs"] else 0


# How a CPU trial's speed grows with its threads, for planning a refit that gets more CPUs than
# its trial had: speed ~ threads ** THREAD_SCALING. On this project's 2-core machine, a bf16
# simple_cnn training step on a resident batch ran at 441 images/s on one thread and 815 on two
# (2 ** 0.89), but whole epochs less well: results/reference-run3's one-CPU trial took 83 s per
# epoch and its two-CPU refit 49.2 s (2 ** 0.75; planned at 0.8, it overran by 39 s). 0.7 plans
# on the safe side, since a refit that overruns its budget overruns the whole search's.
THREAD_SCALING = 0.7


def refit_share(plan: ResourcePlan, k: int) -> tuple[dict[str, float], float]:
    """The resources of each of `k` refits running at once, and how much slower than a search
    trial each is expected to be (below 1: faster). The k refits share what the search's
    concurrent trials used: with fewer refits than concurrent trials on CPU, each gets the CPUs
    of several trials (two one-CPU trials at a time, one refit: two CPUs, planned at
    2 ** -THREAD_SCALING of its trial's seconds per epoch); on GPU each still gets one trial's
    resources (one model does not spread over several GPUs); with more refits than concurrent
    trials each gets an equal share (2 CPUs and one trial at a time: two refits of 1 CPU each,
    each about 2x slower per epoch)."""
    cpus, gpus = float(plan["cpus_per_trial"]), float(plan["gpus_per_trial"])
    concurrent = int(plan["max_concurrent"])
    if k < concurrent and not gpus:
        pooled = float(math.floor(cpus * concurrent / k))
        return {"cpu": pooled, "gpu": 0.0}, (cpus / pooled) ** THREAD_SCALING
    if k <= concurrent:
        return {"cpu": cpus, "gpu": gpus}, 1.0
    share = concurrent / k
    cpus_each = max(1.0, math.floor(cpus * share))
    if gpus:
        return {"cpu": cpus_each, "gpu": gpus * share}, 1.0 / share
    return {"cpu": cpus_each, "gpu": 0.0}, cpus / cpus_each


def refit_members(refit: dict[str, Any]) -> list[dict[str, Any]]:
    """The refit's configurations; an experiment.json from before `refit_top_k` held one."""
    from fer_search.config import REFIT_ID

    if "members" in refit:
        return list(refit["members"])
    keys = ("from_trial", "epochs", "config")
    return [{"id": REFIT_ID, **{k: refit[k] for k in keys}}]


def run_refit(search: SearchRun, names: RunNames) -> list[Any] | None:
    """Train the refit's configurations from scratch, at once, as the trials of one Tune run
    under exp/refit (so they checkpoint, log to TensorBoard and resume like any trial).
    Returns the Tune results, or None when the refit was interrupted. `names`: the refit's
    TensorBoard run names."""
    from ray import tune

    from fer_search.tuning import tensorboard as tb
    from fer_search.tuning.console import console_callbacks, console_on_restore, ray_verbosity
    from fer_search.tuning.trainable import REFIT_MEMBER, run_refit_trial

    space, plan, verbose = search.space, search.plan, search.options.verbose
    base = search.location
    location = f"{base.rstrip('/')}/{REFIT_DIR}"
    refit = search.record["refit"]
    assert refit is not None, "run_refit after plan_refit"
    members = refit_members(refit)
    configs = [{**m["config"], "epochs": m["epochs"]} for m in members]
    resources = refit.get("resources") or {
        "cpu": plan["cpus_per_trial"],
        "gpu": plan["gpus_per_trial"],
    }
    trainable = tune.with_resources(
        tune.with_parameters(
            run_refit_trial, data=search.refs, members=configs, trainer=search.trainer
        ),
        resources,
    )
    callbacks = tb.logger_callbacks(search.exp / tb.LOG_DIR, names)
    callbacks += console_callbacks(verbose, "refit", space, len(members), members=members)
    if tune.Tuner.can_restore(location):
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True)
        console_on_restore(tuner, callbacks, verbose)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={REFIT_MEMBER: tune.grid_search(list(range(len(members))))},
            tune_config=tune.TuneConfig(
                metric=space.experiment.metric,
                mode=space.experiment.mode,
                num_samples=1,
                max_concurrent_trials=len(members),
                trial_dirname_creator=refit_dirname,
                trial_name_creator=refit_dirname,
            ),
            run_config=tune.RunConfig(
                name=REFIT_DIR,
                storage_path=base,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=space.experiment.max_failures),
                callbacks=callbacks,
                verbose=ray_verbosity(verbose),
            ),
        )
    with tb.without_ray_tensorboard():
        grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    states = trial_states(location)
    if any(state not in ("TERMINATED", "ERROR") for state in states.values()):
        return None
    return results


def refit_rows(
    results: Any, members: list[dict[str, Any]], space: SearchSpace, exp: Path
) -> list[LeaderboardRow]:
    """Leaderboard rows of the refit's trials, named refit, refit2, ... with the parameters of
    the configuration each trained (Tune only knows its index)."""
    from fer_search.space import train_values
    from fer_search.tuning.trainable import REFIT_MEMBER

    rows = []
    for result in results:
        member = members[int((result.config or {}).get(REFIT_MEMBER, 0))]
        row = trial_rows([result], space, exp, {})[0]
        values = train_values(member["config"])
        row.update({name: values.get(name, "") for name in searched_settings(space)})
        row["trial_id"], row.config = member["id"], member["config"]
        rows.append(row)
    return rows


def plan_refit(
    rows: list[LeaderboardRow], space: SearchSpace, elapsed: float, plan: ResourcePlan | None = None
) -> dict[str, Any] | None:
    """What to refit (the configurations of the best `refit_top_k` trials) and for how many
    epochs each, or None with the reason printed: no refit budget, no candidate, or too little
    time left. `plan` (the search's resources) sets what each of several refits gets."""
    from fer_search.config import refit_id

    ex = space.experiment
    ranked = [r for r in selectable(rows) if r.config]
    if not ex.refit_budget or not ranked:
        return None
    seconds = ex.time_budget - elapsed if ex.time_budget else ex.refit_budget
    k = min(ex.refit_top_k, len(ranked))
    resources, slowdown = refit_share(plan, k) if plan else ({}, 1.0)
    members: list[dict[str, Any]] = []
    for row in ranked[:k]:
        epochs = refit_epochs(row, seconds / slowdown)
        if not epochs:
            log.info(
                "no refit of trial %s: %.0f s left fit no more than the %s epochs it already "
                "trained", row["trial_id"], seconds, row["epochs"],
            )  # fmt: skip
            continue
        config = {key: v for key, v in row.config.items() if key != "trial_number"}
        if config.get("anneal_at"):  # one schedule over its epochs: the search's rungs are not its
            config["anneal_at"] = ""
        if resources:
            config["threads"] = max(1, int(resources["cpu"]))
        members.append(
            {"id": refit_id(len(members)), "from_trial": row["trial_id"], "epochs": epochs,
             "config": config}
        )  # fmt: skip
        log.info(
            "refit: training trial %s's configuration again for %d epochs (%.0f s left at "
            "%.1f s per epoch)", row["trial_id"], epochs, seconds, row.epoch_s * slowdown,
        )  # fmt: skip
    if not members:
        return None
    return {"members": members, "resources": resources or None, "done": False}


def refit_phase(
    search: SearchRun, rows: list[LeaderboardRow], elapsed: float
) -> list[LeaderboardRow] | None:
    """Plan (once) and run the refit; the ranked rows with it, or None if it was interrupted.
    `elapsed`: the search's wall time so far (what a time budget has left)."""
    exp, space, record = search.exp, search.space, search.record
    if record.get("refit") is None:
        record["refit"] = plan_refit(rows, space, elapsed, search.plan)
        search.save()
    if not record["refit"]:
        return rows
    from fer_search.tuning.tensorboard import (
        LOG_DIR,
        RunNames,
        finish_runs,
        write_experiment_config,
    )

    names = refit_run_names(space, record["refit"], rows)
    results = run_refit(search, names)
    if results is None:
        return None
    if search.remote:
        fetch_trial_files(search.location, exp)
    record["refit"]["done"] = True
    members = refit_members(record["refit"])
    refits = refit_rows(results, members, space, exp)
    finish_runs(exp / LOG_DIR, refits, names)
    finish_runs(exp / LOG_DIR, rows, RunNames(space, refit=True))  # their refit_of: "-"
    write_experiment_config(exp / LOG_DIR, space, [m["run"] for m in names.members or []])
    rows = choose([*rows, *refits], space)[0]
    write_leaderboard(rows, exp)
    return rows


def refit_run_names(
    space: SearchSpace, refit: dict[str, Any], rows: list[LeaderboardRow]
) -> RunNames:
    """TensorBoard run names of the refit's trials: the source trial's run, `_refit` added."""
    from fer_search.tuning.tensorboard import RunNames, run_name

    numbers = {row["trial_id"]: row.config.get("trial_number") for row in rows}
    members = [
        {"id": m["id"], "config": m["config"],
         "run": run_name(numbers.get(m["from_trial"]), str(m["from_trial"]))}
        for m in refit_members(refit)
    ]  # fmt: skip
    return RunNames(space, members)
