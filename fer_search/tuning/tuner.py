"""The Tune Tuner of a search: the trainable with its resources, the Optuna searcher (seeded
TPE unless the caller passes a sampler), the scheduler (tuning.schedulers), and the run's
storage and policies."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.config import SCHEDULERS
from fer_search.space.mutations import perturbation_interval
from fer_search.tuning.schedulers import (
    STEP_ATTR,
    anneal_epochs,
    checkpoint_epochs,
    make_scheduler,
)
from fer_search.tuning.storage import is_uri
from fer_search.tuning.trainable import MEASURE_COST

if TYPE_CHECKING:
    from fer_search.space import SearchSpace
    from fer_search.tuning.resources import ResourcePlan
    from fer_search.tuning.search_run import SearchRun

__all__ = ["STEP_ATTR", "build_tuner", "default_sampler", "trial_dirname"]


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def default_sampler(seed: int, num_samples: int, concurrent: int) -> Any:
    """Seeded multivariate TPE (single- or multi-objective, as the study is; it reads the
    constraints the searcher sets on each trial); with several trials at once, the constant
    liar keeps them from sampling the same point."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        n_startup_trials=min(10, max(2, num_samples // 3)),
        constant_liar=concurrent > 1,
    )


def make_searcher(exp: Path, space: SearchSpace, plan: ResourcePlan, sampler: Any) -> Any:

    from fer_search.tuning.optuna_searcher import PruningOptunaSearch, SpaceSampler
    from fer_search.tuning.study import sqlite_storage

    ex = space.experiment
    objectives = [o.metric for o in space.objectives]
    return PruningOptunaSearch(
        space=SpaceSampler(space),
        # a multi-objective study: Ray's OptunaSearch takes lists (one direction each)
        metric=objectives or ex.metric,
        mode=[o.mode for o in space.objectives] or ex.mode,
        sampler=sampler or default_sampler(ex.seed, ex.num_samples, plan["max_concurrent"]),
        constraints=space.constraints,
        storage=sqlite_storage(exp / "optuna.db", searching=True),
        study_name=exp.name,
        max_t=ex.epochs,
        step_attr=STEP_ATTR,
        scheduler=ex.scheduler,
        points_to_evaluate=[dict(point) for point in space.points] or None,
    )


def pbt_population(
    exp: Path, space: SearchSpace, sampler: Any, constants: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """PBT's search algorithm, Tune's BasicVariantGenerator running the population the Optuna
    study sampled (tuning.pbt; Ray refuses a Searcher with PBT), and the param_space for it:
    Tune takes a point's keys only where the param_space has them."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from fer_search.tuning.pbt import initial_population

    ex = space.experiment
    sampler = sampler or default_sampler(ex.seed, ex.num_samples, 1)  # asked all at once
    population = initial_population(exp, space, sampler)
    keys = {key: None for point in population for key in point}
    return BasicVariantGenerator(points_to_evaluate=population), {**keys, **constants}


def checkpoints_kept(space: SearchSpace) -> int:
    """Checkpoints Tune keeps per trial: the last one; under PBT also those since the trial's
    last perturbation epoch, whose checkpoint a worse trial may still copy (a trial reports at
    most one checkpoint per epoch, which Tune registers once (OneSavePerCheckpoint), and PBT
    takes a donor's checkpoint from its last perturbation)."""
    ex = space.experiment
    if ex.scheduler != "pbt":
        return 1
    return perturbation_interval(ex.epochs, ex.perturbation_interval) + 1


def trial_constants(space: SearchSpace, plan: ResourcePlan, class_set: str) -> dict[str, Any]:
    """The part of every trial's config that the search fixes (the rest is sampled)."""
    ex = space.experiment
    return {
        "epochs": ex.epochs,
        "seed": ex.seed,
        "device": plan["device"],
        "threads": max(1, int(plan["cpus_per_trial"])),
        "class_set": class_set,
        "checkpoint_every": ex.checkpoint_every,
        "checkpoint_at": checkpoint_epochs(space),  # where the scheduler may pause a trial
        "anneal_at": anneal_epochs(space),  # the rungs its schedule anneals by (rung_anneal)
        MEASURE_COST: space.measures_cost,
    }


def build_tuner(search: SearchRun, *, restore: bool) -> Any:
    """The search's Tune Tuner, new or restored (`restore`: a `--resume`)."""
    from ray import tune

    from fer_search.tuning import tensorboard as tb
    from fer_search.tuning.checkpoint_keeper import LatestCheckpoint, OneSavePerCheckpoint
    from fer_search.tuning.console import console_callbacks, console_on_restore, ray_verbosity
    from fer_search.tuning.trainable import trainer_trial

    exp, space, plan, options = search.exp, search.space, search.plan, search.options
    storage_uri = search.storage_uri
    ex = space.experiment
    resources = {"cpu": plan["cpus_per_trial"], "gpu": plan["gpus_per_trial"]}
    trainable = tune.with_resources(
        tune.with_parameters(trainer_trial, data=search.refs, trainer=search.trainer), resources
    )
    callbacks = tb.logger_callbacks(exp / tb.LOG_DIR, tb.RunNames(space))
    callbacks += console_callbacks(
        options.verbose, "search", space, ex.num_samples,
        scheduler=SCHEDULERS[ex.scheduler], budget_s=ex.search_budget or None,
    )  # fmt: skip
    if restore:
        if checkpoints_kept(space) == 1 and not is_uri(storage_uri):
            callbacks.append(LatestCheckpoint())
        tuner = tune.Tuner.restore(
            search.location,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
        return console_on_restore(tuner, callbacks, options.verbose)
    keep: int | None = checkpoints_kept(space)
    if keep == 1 and not is_uri(storage_uri):  # the latest only, kept without Tune's snapshots
        keep = None
        callbacks.append(LatestCheckpoint())
    param_space = trial_constants(space, plan, search.class_set)
    if ex.scheduler == "pbt":
        search_alg, param_space = pbt_population(exp, space, options.sampler, param_space)
        callbacks.append(OneSavePerCheckpoint())  # else a checkpoint is registered twice
    else:
        search_alg = make_searcher(exp, space, plan, options.sampler)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=make_scheduler(space),
            metric=ex.metric,
            mode=ex.mode,
            num_samples=ex.num_samples,
            # HyperBand: resources bound the trials running at once; Tune's limit would count
            # paused trials, so a bracket could never fill (tuning.schedulers)
            # (PBT's population, likewise: it pauses trials for pending ones)
            max_concurrent_trials=None
            if ex.scheduler in ("hyperband", "pbt")
            else plan["max_concurrent"],
            time_budget_s=ex.search_budget or None,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=exp.name,
            storage_path=storage_uri if is_uri(storage_uri) else str(exp.parent),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=keep),
            # retries are for workers and nodes that died; a trial's own deterministic failure
            # (NaN, out of memory, a bad config) ends it with its reason instead (trainable)
            failure_config=tune.FailureConfig(max_failures=ex.max_failures),
            callbacks=callbacks,
            verbose=ray_verbosity(options.verbose),
        ),
    )
