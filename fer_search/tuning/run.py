"""A search from start to end: set up the experiment, run the Tuner, refit, evaluate, report.

`start_search` begins a new experiment; `resume_search` continues an interrupted one. The
driver loads the dataset once, puts it in Ray's object store and hands each trial the
references; it writes the leaderboard, evaluates the best trial (and a top-k ensemble) on the
test split once, and builds the report.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer_search.config import recorded_scheduler
from fer_search.errors import UserError
from fer_search.tuning._ray_compat import live_trial_states
from fer_search.tuning.engine_trainer import EngineTrainer
from fer_search.tuning.experiment_dir import (
    check_free_space,
    load_experiment,
    new_experiment_dir,
    new_record,
)
from fer_search.tuning.pbt import add_lineage, close_pbt_study
from fer_search.tuning.phases import Phases
from fer_search.tuning.results import (
    FINAL_STATES,
    choose,
    saved_search_complete,
    trial_rows,
    trial_states,
    was_interrupted,
    write_leaderboard,
)
from fer_search.tuning.search_options import SearchOptions
from fer_search.tuning.search_run import SearchRun
from fer_search.tuning.simulated import SimulatedTrainer
from fer_search.tuning.study import Objectives, close_study, plain_journal, record_outcome
from fer_search.tuning.trainers import Trainer
from fer_search.tuning.warm_start import check_sources, seed_study, summary_line

if TYPE_CHECKING:
    from fer_search.data import FERData
    from fer_search.space import SearchSpace
    from fer_search.tuning.experiment_dir import ExperimentRecord
    from fer_search.tuning.resources import ResourcePlan
    from fer_search.tuning.results import LeaderboardRow
    from fer_search.tuning.trainable import DatasetRefs

__all__ = ["Outcome", "resume_search", "start_search"]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How a search call ended: its directory, and whether it was interrupted (then
    `resume_search(path)` continues it)."""

    path: Path
    interrupted: bool = False
    note: str = ""
    wall_time_s: float = 0.0


def start_search(space: SearchSpace, data: FERData, options: SearchOptions) -> Outcome:
    """A new search of `space` (a SearchSpace) on `data` (a FERData)."""
    import yaml

    from fer_search.space import apply_overrides

    options.validate()
    space = apply_overrides(space, **options.space_overrides())
    check_local_gpus(options)
    sources = check_sources(options.warm_start, space, data) if options.warm_start else []
    exp = new_experiment_dir(options.storage, options.name, space)
    check_free_space(exp.parent)
    plan = start_cluster(options, exp, space)
    refs = dataset_refs(data)
    exp.mkdir(parents=True)
    (exp / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    record = new_record(options, exp, space, data, plan)
    trainer = options.trainer or EngineTrainer()
    record["trainer"] = trainer.describe()
    if sources:  # before the Tuner: its searcher loads the study made here
        record["warm_start"] = seed_study(exp, space, sources)
        log.info(summary_line(record["warm_start"]))
    search = SearchRun(exp, space, data, refs, options, record, trainer)
    search.save()
    return run(search, restore=False)


def trainer_from_record(record: ExperimentRecord) -> Trainer:
    """The trainer an experiment ran with (experiment.json's `trainer`; none: the engine)."""
    described = dict(record.get("trainer") or {"kind": "engine"})
    kind = described.pop("kind", "engine")
    if kind == "simulated":
        return SimulatedTrainer.from_description(described)
    if described.get("faults"):  # a test's search with injected faults injects them again
        from fer_search.tuning.faults import FaultyTrainer

        return FaultyTrainer(spec=described["faults"])
    return EngineTrainer()


def resume_search(
    path: str | Path, data: FERData | None = None, options: SearchOptions | None = None
) -> Outcome:
    """Continue the experiment at `path`; `data` defaults to the data it was started on."""
    from fer_search.space import apply_overrides, load_space
    from fer_search.tuning.cluster import start_ray

    options = options or SearchOptions()
    options.validate()
    exp, record = load_experiment(path)
    if recorded_scheduler(record) == "pbt":
        raise UserError(
            f"{exp}: --resume of a PBT search is not supported (Tune would restart PBT with "
            f"none of its population's scores or copied checkpoints; untested); its trials so "
            f"far are in {exp / 'leaderboard.csv'}: start a new search to go on"
        )
    space = load_space(str(exp / "space.yaml"))
    data = data if data is not None else data_from_record(record)
    # the scheduler it ran with (a space.yaml from before `scheduler` says asha for --no-asha)
    space = apply_overrides(space, scheduler=recorded_scheduler(record))
    options.no_asha = space.experiment.scheduler == "fifo"
    options.storage = record.get("storage_uri")  # None: Tune's state is in `exp` itself
    trainer = options.trainer or trainer_from_record(record)
    check_free_space(exp.parent)
    start_ray(options.address, options.cpus, options.gpus)
    return run(
        SearchRun(exp, space, data, dataset_refs(data), options, record, trainer), restore=True
    )


def data_from_record(record: ExperimentRecord) -> FERData:
    """The data a search was started on, loaded again from experiment.json's `data_args`
    (load_data's arguments; before they were recorded so, the CLI's data flags)."""
    from fer_search.data import load_recorded

    return load_recorded(record.get("data_args"))


def check_local_gpus(options: SearchOptions) -> None:
    from fer_search.tuning.resources import local_gpu_count

    on_cluster = bool(options.address or os.environ.get("RAY_ADDRESS"))
    if not on_cluster and options.gpus and options.gpus > local_gpu_count():
        raise UserError(
            f"--gpus {options.gpus:g} asked for {options.gpus:g} GPUs but this machine has "
            f"{local_gpu_count()}; use --gpus 0 to search on CPU, or --address to "
            f"join a GPU cluster"
        )


def start_cluster(options: SearchOptions, exp: Path, space: SearchSpace) -> ResourcePlan:
    """Start or join Ray, check the nodes, and plan each trial's resources."""
    import ray

    from fer_search.tuning import cluster
    from fer_search.tuning.resources import plan_resources

    cluster.start_ray(options.address, options.cpus, options.gpus)
    cluster.check_shared_storage(exp.parent, options.storage)
    plan = plan_resources(
        options.gpus, space.experiment, ray.cluster_resources(), cluster.node_resources()
    )
    if plan["device"] == "cuda":
        cluster.check_gpu_nodes()
    return plan


def dataset_refs(data: FERData) -> DatasetRefs:
    from fer_search.tuning.trainable import DatasetRefs

    return DatasetRefs(data.splits, data.class_names)


def run(search: SearchRun, *, restore: bool) -> Outcome:
    """Tuner, leaderboard, refit, final evaluation and report (`restore`: continue)."""
    from fer_search.tuning.storage import fetch_trial_files
    from fer_search.tuning.tensorboard import (
        LOG_DIR,
        RunNames,
        finish_runs,
        without_ray_tensorboard,
    )
    from fer_search.tuning.tuner import build_tuner

    exp, space, record = search.exp, search.space, search.record
    announce(space, search.plan, exp)
    started = time.time()
    tuner = build_tuner(search, restore=restore)
    finished = (
        None if search.storage_uri else saved_search_complete(exp, space, record.get("started"))
    )
    phases = Phases()
    if restore and finished is not None:
        results = tuner.get_results()  # nothing left to run: finalise
        record["wall_time_s"] = record.get("wall_time_s") or finished
    else:
        with without_ray_tensorboard(), phases.step("tune"):
            results = tuner.fit()
    prior_wall = float(record.get("wall_time_s") or 0.0)  # before a --resume
    if search.remote:  # a URI: copy progress.csv & co. here for the report
        fetch_trial_files(search.location, exp)
    with phases.step("trial_rows"):
        states = saved_or_live_states(trial_states(search.location), live_trial_states(results))
        rows = trial_rows(results, space, exp, states)
    # no trial left RUNNING in optuna.db
    with phases.step("close_study"):
        if space.experiment.scheduler == "pbt":  # single-objective (space.mutations.check_pbt)
            add_lineage(rows, exp, space, search.location)  # the `lineage` column
            close_pbt_study(exp, rows, space.experiment.metric)
        else:
            close_study(
                exp, rows, space.experiment.metric, space.experiment.scheduler,
                Objectives.of(space),
            )  # fmt: skip
    with phases.step("tensorboard"):
        finish_runs(exp / LOG_DIR, rows, RunNames(space))  # each trial's final status
    with phases.step("leaderboard"):
        write_leaderboard(rows, exp)
    record["phases"] = phases.steps
    record["wall_time_s"] = time.time() - started + prior_wall
    if was_interrupted(states, space, finished or time.time() - started):
        done = sum(state in FINAL_STATES for state in states.values())
        return interrupted(search, f"after {done} of {space.experiment.num_samples} trials")
    return finish(search, rows, started, prior_wall)


def finish(
    search: SearchRun, rows: list[LeaderboardRow], started: float, prior_wall: float
) -> Outcome:
    """After the Tuner: the refit, the choice among objectives, the final evaluation, the
    report. `started`: when this call's Tuner began; `prior_wall`: the wall time before it."""
    from fer_search.report import build_report
    from fer_search.tuning.final import final_evaluation
    from fer_search.tuning.refit import refit_phase
    from fer_search.tuning.storage import upload_driver_files

    exp, space, record = search.exp, search.space, search.record
    elapsed = float(record.get("wall_time_s") or 0.0)  # set by run() before finish()
    phases = Phases(record.get("phases"))
    with phases.step("refit"):
        ranked = refit_phase(search, rows, elapsed)
    record["wall_time_s"] = wall = time.time() - started + prior_wall
    if ranked is None:
        return interrupted(search, "during the refit")
    if space.objectives or space.constraints:
        ranked, record["choice"] = choice_record(ranked, space)
    final = None
    with phases.step("final_evaluation"):
        if not search.options.no_final_eval:
            final = final_evaluation(search, ranked)
    with phases.step("record_outcome"):
        record_outcome(exp, ranked, record.get("refit"), final, Objectives.of(space))
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    record["phases"] = phases.steps
    search.save()
    with phases.step("report"):
        build_report(exp)
    record["phases"] = phases.steps
    search.save()
    plain_journal(exp / "optuna.db")
    if search.remote:
        upload_driver_files(exp, search.location)
    return Outcome(path=exp, wall_time_s=wall)


def choice_record(
    rows: list[LeaderboardRow], space: SearchSpace
) -> tuple[list[LeaderboardRow], dict]:
    """The rows ranked as the space's objectives, constraints and `pick` say, and what was
    chosen for best/ (experiment.json's `choice`); a `pick` no Pareto-optimal trial satisfies
    is said on the console."""
    from fer_search.tuning.results import selectable

    rows, note = choose(rows, space)
    if note:
        log.warning(note)
    best = next(iter(selectable(rows)), None)
    chosen = best is not None and best.eligible
    return rows, {
        "pick": space.experiment.pick,
        "trial_id": str(best["trial_id"]) if chosen and best else None,
        "note": note,
    }


def saved_or_live_states(saved: dict[str, str], live: dict[str, str]) -> dict[str, str]:
    """Tune's saved trial states, except a trial saved PAUSED that ended in the run that just
    returned: Tune can keep a once-paused trial (HyperBand) PAUSED in its saved state after it
    ended (see _ray_compat). Only PAUSED is corrected: when a search is interrupted, Tune stops
    its running trials, and the saved state, not the live one, says they are unfinished."""
    return {
        trial_id: live[trial_id]
        if state == "PAUSED" and live.get(trial_id) in FINAL_STATES
        else state
        for trial_id, state in saved.items()
    }


def interrupted(search: SearchRun, what: str) -> Outcome:
    """Save the record (and, for URI storage, the driver's files); say how to go on."""
    from fer_search.tuning.storage import upload_driver_files

    search.save()
    if search.remote:
        upload_driver_files(search.exp, search.location)
    wall = float(search.record.get("wall_time_s") or 0.0)
    return Outcome(path=search.exp, interrupted=True, note=what, wall_time_s=wall)


def announce(space: SearchSpace, plan: ResourcePlan, exp: Path) -> None:
    ex = space.experiment
    log.info(
        "searching %s: %d trials x <= %d epochs on %s, %d at a time; results in %s",
        space.name, ex.num_samples, ex.epochs, plan["device"], plan["max_concurrent"], exp,
    )  # fmt: skip
