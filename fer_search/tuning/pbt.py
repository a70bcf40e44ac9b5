"""A PBT search (`scheduler: pbt`): its initial population, each trial's lineage, and how the
Optuna study records it.

Ray refuses any Searcher with PopulationBasedTraining, so Optuna's sampler cannot hand out
trials as they start. Instead, before the Tuner runs, the study is asked for the whole
population at once (`initial_population`): `num_samples` configurations, `points_to_evaluate`
first, each an Optuna trial (user attribute `pbt: initial configuration`), given to Tune as
BasicVariantGenerator points. With no finished trials to learn from, TPE draws them as its
seeded independent startup samples (a warm-started study's earlier trials do inform them).

PBT then changes trials as they run. A trial PBT never exploited trained its initial
configuration to the end: its Optuna trial is COMPLETE with its best value, like any trial.
A trial that was exploited stopped being its initial configuration at the first exploit: it
took another trial's weights and a perturbed copy of that trial's configuration. Its Optuna
trial is therefore PRUNED at that epoch (intermediate values up to it, its own curve;
`stopped_by: pbt`, `status: exploited`), and what it became is told in user attributes only:
`pbt_lineage` (as the leaderboard's `lineage` column says it), `pbt_exploits` (each exploit:
donor's Ray trial id and Optuna number, epoch, settings changed [from, to]), `pbt_final_config`
(the mutable settings it ended with) and `pbt_final_val_acc`. No trial of the study claims a
configuration PBT produced, so TPE (a later warm start) never learns from one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.tuning import _ray_compat as compat

if TYPE_CHECKING:
    from fer_search.space import SearchSpace
    from fer_search.tuning.results import LeaderboardRow

__all__ = [
    "INITIAL",
    "add_lineage",
    "close_pbt_study",
    "initial_population",
    "lineage_text",
    "trial_lineage",
]

INITIAL = "initial configuration"  # the `pbt` user attribute of the study's trials
POINT_INDEX = "pbt_point"  # and its place in the population (Tune's points_to_evaluate)
RECORDING = (
    "PBT: each trial is its initial configuration, sampled before training; a trial PBT "
    "exploited is PRUNED at its first exploit, and its lineage is in user attributes"
)


def initial_population(exp: Path, space: SearchSpace, sampler: Any) -> list[dict[str, Any]]:
    """The population's configurations, asked of the experiment's Optuna study (created here, or
    the one a warm start seeded) with `sampler`, keyed by TrainConfig setting, each with its
    `trial_number`."""
    import optuna

    from fer_search.config import TrainConfig
    from fer_search.space import sample_config
    from fer_search.space.mutations import keep_in_space, mutable_params
    from fer_search.tuning.optuna_searcher import DISPLAY_DEFAULTS
    from fer_search.tuning.study import sqlite_storage

    ex = space.experiment
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=exp.name,
        storage=sqlite_storage(exp / "optuna.db", searching=True),
        sampler=sampler,
        direction="maximize" if ex.mode == "max" else "minimize",
        load_if_exists=True,
    )
    study.set_user_attr("pbt", RECORDING)
    for point in space.points:
        study.enqueue_trial(dict(point))
    configs = []
    for index in range(ex.num_samples):
        trial = study.ask()
        config = sample_config(space, trial)
        trial.set_user_attr("pbt", INITIAL)
        trial.set_user_attr(POINT_INDEX, index)  # Tune's trial made from this point says it
        for name in (*DISPLAY_DEFAULTS, *mutable_params(space)):  # PBT mutates what is there
            config.setdefault(name, getattr(TrainConfig, name))
        configs.append({**keep_in_space(space, config), "trial_number": trial.number})
    return configs


# --- lineage ------------------------------------------------------------------------------------


def trial_lineage(
    exploits: list[compat.PBTExploit], tags: dict[str, str], mutable: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Ray trial id -> its exploits in order: {from: donor's trial id, epoch: the epoch it had
    reached when PBT chose to replace it, from_epoch: the donor's, changes: {setting: [donor's
    value, new value]} for the mutable settings that changed}. `tags` maps each trial's
    original experiment tag to its trial id. (Epochs are Tune's training_iteration, which is
    the epoch: a trial reports once per epoch. The donor's checkpoint is the one it reported
    at its last perturbation epoch, at or before from_epoch.)"""
    lineage: dict[str, list[dict[str, Any]]] = {}
    for event in exploits:
        changes = {
            name: [event.donor_config.get(name), event.new_config.get(name)]
            for name in mutable
            if event.donor_config.get(name) != event.new_config.get(name)
        }
        target = tags.get(event.target_tag, event.target_tag)
        lineage.setdefault(target, []).append(
            {"from": tags.get(event.donor_tag, event.donor_tag),
             "epoch": event.target_iteration, "from_epoch": event.donor_iteration,
             "changes": changes}
        )  # fmt: skip
    return lineage


def lineage_text(events: list[dict[str, Any]]) -> str:
    """'copied 8a1f_00002 (its epoch 3) at epoch 2: lr 0.01->0.012; ...' ('' if never)."""
    parts = []
    for event in events:
        changes = ", ".join(
            f"{name} {_short(old)}->{_short(new)}" for name, (old, new) in event["changes"].items()
        )
        parts.append(
            f"copied {event['from']} (its epoch {event['from_epoch']}) at epoch {event['epoch']}: "
            f"{changes or 'no change'}"
        )
    return "; ".join(parts)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def add_lineage(
    rows: list[LeaderboardRow], exp: Path, space: SearchSpace, location: Path | str
) -> None:
    """Each row's `lineage` column (and its `exploits` and `pbt_index` for the study), from the
    experiment's PBT log and Tune's saved trials at `location`; rows re-ranked."""
    from fer_search.space.mutations import mutable_params
    from fer_search.tuning.results import rank_rows, saved_trials

    trials = saved_trials(location)
    tags = {compat.pbt_original_tag(t.experiment_tag): t.trial_id for t in trials}
    index = {t.trial_id: compat.pbt_point_index(t.experiment_tag) for t in trials}
    lineage = trial_lineage(compat.pbt_exploits(exp), tags, list(mutable_params(space)))
    for row in rows:
        # a trial that went on from another's checkpoint reports that trial's id as its own
        if row.get("trial_dir"):
            row["trial_id"] = Path(str(row["trial_dir"])).name.removeprefix("trial_")
        complete_from_progress(row, exp, space.experiment.epochs)
        events = lineage.get(str(row["trial_id"]), [])
        row["lineage"] = lineage_text(events)
        row.exploits = events
        row.pbt_index = index.get(str(row["trial_id"]))
    rows[:] = rank_rows(rows)


def complete_from_progress(row: LeaderboardRow, exp: Path, max_t: int) -> None:
    """A PBT trial's row from all of its progress.csv: Tune pauses and restarts PBT's trials
    at each perturbation, and the result.json its row was read from can then lack epochs."""
    import pandas as pd

    path = exp / str(row.get("trial_dir") or "") / "progress.csv"
    if not row.get("trial_dir") or not path.is_file():
        return
    frame = pd.read_csv(path)
    if "val_acc" not in frame or "epoch" not in frame:
        return
    frame = frame[frame["val_acc"].notna()]
    if frame.empty or int(frame["epoch"].max()) <= int(row["epochs"] or 0):
        return
    best = frame["val_acc"].idxmax()
    row.update(
        epochs=int(frame["epoch"].max()),
        best_epoch=int(frame.loc[best, "epoch"]),
        val_acc=float(frame.loc[best, "val_acc"]),
        val_f1=float(frame.loc[best, "val_f1"]),
    )
    if row["status"] == "pruned" and row["epochs"] >= max_t:
        row["status"] = "completed"


# --- the Optuna study ---------------------------------------------------------------------------


def close_pbt_study(exp: Path, rows: list[LeaderboardRow], metric: str) -> dict[str, int]:
    """Record each Ray trial on the Optuna trial of its initial configuration (the module's
    docstring); a trial an interrupted search left FAIL/unfinished is recorded again when a
    resumed search has finished it; a configuration Tune never started is FAIL. No trial is
    left RUNNING. Returns the counts, as study.close_study does."""
    import optuna
    from optuna.trial import TrialState

    from fer_search.tuning.study import fail_not_started, open_study

    counts = {"told": 0, "resumed": 0, "not_started": 0}
    handle = open_study(exp)
    if handle is None:
        return counts
    if not handle.study.metric_names:
        handle.study.set_metric_names([metric])
    latest: dict[int, Any] = {}  # point index -> its latest Optuna trial (in number order)
    for trial in handle.trials():
        if trial.user_attrs.get("pbt") == INITIAL:
            latest[int(trial.user_attrs[POINT_INDEX])] = trial
    by_ray_id = {
        str(r["trial_id"]): latest[r.pbt_index].number for r in rows
        if r.pbt_index is not None and r.pbt_index in latest
    }  # fmt: skip
    for row in rows:
        trial = None if row.pbt_index is None else latest.pop(row.pbt_index, None)
        if trial is None:
            continue
        state, values, curve, attrs = pbt_record(exp, row, by_ray_id)
        if trial.state == TrialState.RUNNING:
            study_id = handle.storage.get_study_id_from_name(handle.study.study_name)
            internal = handle.storage.get_trial_id_from_study_id_trial_number(
                study_id, trial.number
            )
            for step, value in curve.items():
                handle.storage.set_trial_intermediate_value(internal, step, value)
            handle.set_attrs(trial.number, attrs)
            told = values if state == TrialState.COMPLETE else None  # PRUNED: the last curve value
            handle.study.tell(trial.number, told, state=state, skip_if_finished=True)
            counts["told"] += 1
        elif trial.user_attrs.get("status") == "unfinished" and row["status"] != "unfinished":
            handle.study.add_trial(
                optuna.trial.create_trial(
                    params=trial.params, distributions=trial.distributions, values=values,
                    state=state, intermediate_values=curve,
                    user_attrs={**trial.user_attrs, **attrs, "resumed_from": trial.number},
                )
            )  # fmt: skip
            counts["resumed"] += 1
    counts["not_started"] = fail_not_started(handle, latest.values())  # population, not run
    return counts


def pbt_record(
    exp: Path, row: LeaderboardRow, numbers: dict[str, int]
) -> tuple[Any, Any, dict[int, float], dict[str, Any]]:
    """(state, values, intermediate values, user attributes) of a row's Optuna trial."""
    from optuna.trial import TrialState

    from fer_search.tuning.study import RAY_TRIAL_ID, epoch_values, final_state, trial_attrs

    events = row.exploits
    if not events:
        curve = epoch_values(exp, row)
        state, values = final_state(row["status"], float(row["val_acc"]), curve)
        return state, values, curve, trial_attrs(row)
    first = int(events[0]["epoch"])
    curve = {e: v for e, v in own_curve(exp, row, first).items() if e <= first}
    config = row.config
    attrs = {
        RAY_TRIAL_ID: str(row["trial_id"]),
        "status": "exploited",
        "stopped_by": "pbt",
        "epochs": first,
        "pbt_lineage": row["lineage"],
        "pbt_exploits": [
            {**event, "from_number": numbers.get(str(event["from"]))} for event in events
        ],
        "pbt_final_config": {
            name: config.get(name) for event in events for name in event["changes"]
        },
        "pbt_final_status": row["status"],
    }
    if not math.isnan(float(row["val_acc"])):
        attrs["pbt_final_val_acc"] = float(row["val_acc"])
    values = [curve[max(curve)]] if curve else None
    return TrialState.PRUNED, values, curve, attrs


def own_curve(exp: Path, row: LeaderboardRow, until: int) -> dict[int, float]:
    """epoch -> val_acc of the trial's own configuration: its progress.csv rows up to and
    including epoch `until`, before the first restore from another trial's checkpoint."""
    import pandas as pd

    path = exp / str(row.get("trial_dir") or "") / "progress.csv"
    if not row.get("trial_dir") or not path.is_file():
        return {}
    frame = pd.read_csv(path)
    curve: dict[int, float] = {}
    for epoch, value in zip(frame["epoch"], frame["val_acc"], strict=True):
        if int(epoch) in curve or int(epoch) > until:
            break  # the first row after the exploit
        if not math.isnan(float(value)):
            curve[int(epoch)] = float(value)
    return curve
