"""The Optuna study after a search: every trial in its final state, as the leaderboard says.

The searcher tells Optuna about the trials Tune completes, but Tune never calls it for trials
its time budget ends, nor for trials an interrupted search leaves behind: those would stay
RUNNING in optuna.db for ever (optuna-dashboard then offers to "fail" them). After every Tune
run the driver reconciles the study with the leaderboard rows instead:

- a RUNNING trial is told its leaderboard status: completed -> COMPLETE (best val_acc),
  pruned -> PRUNED (Optuna keeps its last intermediate value), failed/nan -> FAIL, and
  unfinished (the search was interrupted) -> FAIL, marked `status: unfinished`;
- a trial an interrupted search left FAIL/unfinished that a resumed search then finished is
  recorded again, as a new trial with the same parameters, its per-epoch values and the final
  state, pointing back with `resumed_from` (Optuna cannot reopen a finished trial; this is its
  own RetryFailedTrialCallback's pattern);
- a trial Optuna handed out that Tune never started is FAIL, `status: not started`.

A multi-objective study (a space's `objectives`) gets the same treatment with its values: a
completed trial is COMPLETE with its best val_acc and its model's costs, a pruned one PRUNED
without values (such a study keeps no intermediate values), and with `constraints` every trial
gets its constraint values (cost - limit) for the sampler and the dashboard (tuning._optuna_compat).

Each trial carries user attributes the dashboard shows: `ray_trial_id`, `status`, `stopped_by`
(the scheduler: asha | hyperband | median; or time budget), `epochs`, `best_epoch`. After the
refit and the final evaluation the refits' and the test results go on the trials they belong
to and on the study.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.objectives import COSTS, number_or_nan
from fer_search.tuning._optuna_compat import DASHBOARD_CONSTRAINTS, set_trial_end

if TYPE_CHECKING:
    from fer_search.space import SearchSpace

log = logging.getLogger(__name__)

__all__ = [
    "Objectives",
    "StudyHandle",
    "close_study",
    "fail_not_started",
    "open_study",
    "record_outcome",
    "stopped_by",
]

RAY_TRIAL_ID = "ray_trial_id"
REFIT_OF = "refit_of"  # a refit's Optuna trial: the number of the trial it trained again
FINAL_KEYS = ("test_acc", "test_acc_ci95", "test_acc_flip", "test_f1", "val_acc")


@dataclass
class StudyHandle:
    """An experiment's Optuna study and the storage it was loaded from."""

    study: Any
    storage: Any

    def trials(self) -> list[Any]:
        return list(self.study.get_trials(deepcopy=False))

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        """User attributes on trial `number` (Optuna's storage API: finished trials too)."""
        trial_id = self.storage_id(number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def set_constraints(self, number: int, values: dict[str, float]) -> None:
        """Constraint values on RUNNING trial `number` (tuning._optuna_compat)."""
        import optuna

        if not values:
            return
        from fer_search.tuning._optuna_compat import set_constraints

        set_constraints(optuna.trial.Trial(self.study, self.storage_id(number)), values)

    def storage_id(self, number: int) -> int:
        """The storage's id of trial `number` (what its write calls take)."""
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def latest(self) -> dict[str, Any]:
        """Ray trial id -> its latest Optuna trial (a resumed one is recorded again)."""
        latest: dict[str, Any] = {}
        for trial in self.trials():  # in number order
            if trial.user_attrs.get(RAY_TRIAL_ID) is not None:
                latest[str(trial.user_attrs[RAY_TRIAL_ID])] = trial
        return latest

    def numbers(self) -> dict[str, int]:
        """Ray trial id -> the number of its latest Optuna trial."""
        return {ray_id: trial.number for ray_id, trial in self.latest().items()}


def sqlite_storage(db: Path, *, searching: bool = False) -> Any:
    """Optuna's RDBStorage on an SQLite file. `searching`: the search's own connections, which
    write every trial's intermediate values and attributes while Tune waits on them, run in
    write-ahead-log mode with `synchronous=NORMAL` (one fsync per WAL checkpoint instead of
    several per commit; still safe when the process dies, and on power loss it can lose only
    the last commits, not corrupt the file). Study closing turns the file back into a single
    rollback-journal database (`plain_journal`) for the tools that read it after."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    if searching:

        def fast_commits(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        storage.engine.dispose()  # the connection that made the tables: reopened with them
        event.listen(storage.engine, "connect", fast_commits)
    return storage


def plain_journal(db: Path) -> None:
    """Back from write-ahead logging to a single-file database (no -wal/-shm beside it), when
    no other connection holds it; else it stays in WAL mode, which every SQLite reader reads."""
    import sqlite3

    connection = sqlite3.connect(db, timeout=1.0)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as exc:  # another connection is open (a live searcher)
        log.debug("optuna.db stays in WAL mode: %s", exc)
    finally:
        connection.close()


def open_study(exp: Path) -> StudyHandle | None:
    """The experiment's Optuna study (optuna.db in `exp`, named as experiment.json says: the
    folder's name when it was made), or None."""
    import json

    import optuna

    db = exp / "optuna.db"
    if not db.is_file():
        return None
    record = exp / "experiment.json"
    name = json.loads(record.read_text()).get("name") if record.is_file() else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = sqlite_storage(db)
    try:
        return StudyHandle(optuna.load_study(study_name=name or exp.name, storage=storage), storage)
    except KeyError:  # a study of another name: not ours to change
        return None


def stopped_by(row: Mapping[str, Any], told: bool, scheduler: str = "asha") -> str:
    """Why a pruned trial stopped early: the scheduler told the searcher (`told`), or the
    search's time budget ended it (Tune never tells the searcher then)."""
    if row["status"] != "pruned":
        return ""
    return scheduler if told else "time budget"


@dataclass(frozen=True)
class Objectives:
    """What a study's values are: the metric, then the costs of a multi-objective search; and
    the constraints whose values each trial carries."""

    names: tuple[str, ...] = ("val_acc",)
    constraints: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, space: SearchSpace) -> Objectives:
        return cls(tuple(space.objective_names), tuple(space.constraints.items()))

    def values(self, row: Mapping[str, Any], value: float) -> list[float]:
        return [value, *(number_or_nan(row.get(name)) for name in self.names[1:])]

    def constraints_of(self, row: Mapping[str, Any]) -> dict[str, float]:
        """Optuna's constraint values of a scored trial (none for others)."""
        from fer_search.objectives import constraint_values

        if not self.constraints or row["status"] not in ("completed", "pruned"):
            return {}
        return constraint_values(row, dict(self.constraints))


def close_study(
    exp: Path,
    rows: Sequence[MutableMapping[str, Any]],
    metric: str,
    scheduler: str = "asha",
    objectives: Objectives | None = None,
) -> dict[str, int]:
    """Leave no trial RUNNING (see the module's docstring); set `stopped_by` on `rows`
    (`scheduler`: the search's, config.SCHEDULERS; `objectives`: a multi-objective or
    constrained search's, Objectives.of(space)). Returns how many trials it told, recorded
    again, and failed as never started."""
    import optuna
    from optuna.trial import TrialState

    counts = {"told": 0, "resumed": 0, "not_started": 0}
    handle = open_study(exp)
    if handle is None:
        return counts
    objectives = objectives or Objectives((metric,))
    if not handle.study.metric_names:
        with warnings.catch_warnings():  # experimental in Optuna 5, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            handle.study.set_metric_names(list(objectives.names))
    if objectives.constraints:  # the names of each trial's constraint values, in their order
        handle.study.set_user_attr("constraints", [name for name, _ in objectives.constraints])
    latest = handle.latest()
    for row in rows:
        trial = latest.pop(str(row["trial_id"]), None)
        if trial is None:
            continue
        if trial.state == TrialState.RUNNING:
            row["stopped_by"] = stopped_by(row, told=False)
            # before the tell: a finished trial's attributes are read-only
            handle.set_attrs(trial.number, trial_attrs(row))
            handle.set_constraints(trial.number, objectives.constraints_of(row))
            tell(handle, trial.number, row, objectives)
            times = trial_times(exp, row)
            if times is not None:  # closed now, ended then: its own last result's time
                set_trial_end(handle.storage, handle.storage_id(trial.number), times[1])
            counts["told"] += 1
        else:
            # a pruned trial keeps what an earlier close_study found (a time budget's cut)
            earlier = trial.user_attrs.get("stopped_by") if row["status"] == "pruned" else None
            row["stopped_by"] = earlier or stopped_by(row, True, scheduler)
            if trial.user_attrs.get("status") == "unfinished" and row["status"] != "unfinished":
                record_resumed(handle, trial, row, exp, objectives)
                counts["resumed"] += 1
    counts["not_started"] = fail_not_started(handle, latest.values())  # asked, never run
    return counts


def fail_not_started(handle: StudyHandle, trials: Iterable[Any]) -> int:
    """Close the trials still RUNNING (asked of the study, never started by Tune) as FAIL with
    `status: not started`; how many there were."""
    from optuna.trial import TrialState

    closed = 0
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            handle.set_attrs(trial.number, {"status": "not started"})
            handle.study.tell(trial.number, state=TrialState.FAIL)
            closed += 1
    return closed


def final_state(
    status: str, value: float, curve: dict[int, float], values: list[float] | None = None
) -> tuple[Any, Any]:
    """Optuna's state and values for a leaderboard status: completed -> COMPLETE with its best
    val_acc (FAIL without one), pruned -> PRUNED at its last epoch's value, others FAIL.
    `values`: a multi-objective trial's (val_acc first); its PRUNED state has none."""
    from optuna.trial import TrialState

    if status == "completed" and not math.isnan(value):
        return TrialState.COMPLETE, values or [value]
    if status == "pruned":
        return TrialState.PRUNED, [curve[max(curve)]] if curve and not values else None
    return TrialState.FAIL, None


def trial_attrs(row: Mapping[str, Any]) -> dict[str, Any]:
    attrs = {
        RAY_TRIAL_ID: str(row["trial_id"]),
        "status": row["status"],
        "epochs": int(row.get("epochs") or 0),
        "best_epoch": int(row.get("best_epoch") or 0),
    }
    if row.get("stopped_by"):
        attrs["stopped_by"] = row["stopped_by"]
    if row.get("error"):
        attrs["error"] = str(row["error"])[:300]
    return {**attrs, **cost_attrs(row)}


def cost_attrs(row: Mapping[str, Any]) -> dict[str, float]:
    """The model's measured costs (latency_ms, params, flops) a row has, as user attributes:
    a pruned trial of a multi-objective study keeps no values, so they are its only record in
    the study."""
    costs = {name: number_or_nan(row.get(name)) for name in COSTS}
    return {name: value for name, value in costs.items() if math.isfinite(value)}


def read_progress(exp: Path, row: Mapping[str, Any]) -> Any:
    """The trial's progress.csv (a DataFrame, one row per result), or None without one."""
    import pandas as pd

    path = exp / str(row.get("trial_dir") or "") / "progress.csv"
    if not row.get("trial_dir") or not path.is_file():
        return None
    return pd.read_csv(path)


def trial_times(exp: Path, row: Mapping[str, Any], frame: Any = None) -> tuple[float, float] | None:
    """(start, end) of a trial as Unix times, from its progress.csv (`frame`, when read
    already): the end is its last result's `timestamp`, the start that less its `time_total_s`;
    None without one."""
    frame = read_progress(exp, row) if frame is None else frame
    if frame is None or frame.empty or "timestamp" not in frame:
        return None
    end = float(frame["timestamp"].iloc[-1])
    spent = float(frame["time_total_s"].iloc[-1]) if "time_total_s" in frame else 0.0
    return end - spent, end


def finished_trial(
    exp: Path, row: Mapping[str, Any], objectives: Objectives, template: Any, attrs: dict
) -> Any:
    """A finished Optuna trial (to study.add_trial) for a row Optuna never saw finish: the
    parameters of `template` (an Optuna trial), the row's state and values, its per-epoch
    values (one objective), its constraints, `attrs` as user attributes, and the start and end
    its own results give (Optuna copies a template's times; create_trial stamps now)."""
    import datetime as dt

    import optuna

    frame = read_progress(exp, row)
    value, several = float(row["val_acc"]), len(objectives.names) > 1
    curve = {} if several else epoch_values(exp, row, frame)
    values = objectives.values(row, value) if several else None
    state, told = final_state(row["status"], value, curve, values)
    trial = optuna.trial.create_trial(
        params=dict(template.params),
        distributions=dict(template.distributions),
        values=told,
        state=state,
        intermediate_values=curve,
        user_attrs=attrs,
        system_attrs=dashboard_constraints(objectives.constraints_of(row)),
    )
    times = trial_times(exp, row, frame)
    if times is not None:
        trial.datetime_start = dt.datetime.fromtimestamp(times[0])
        trial.datetime_complete = dt.datetime.fromtimestamp(times[1])
    return trial


def tell(
    handle: StudyHandle, number: int, row: Mapping[str, Any], objectives: Objectives | None = None
) -> None:
    """Finish a RUNNING trial as its row says (PRUNED: Optuna takes its last intermediate
    value, which the searcher reported every epoch)."""
    value = float(row["val_acc"])
    several = objectives is not None and len(objectives.names) > 1
    values = objectives.values(row, value) if several and objectives else None
    state, told = final_state(row["status"], value, {}, values)
    handle.study.tell(number, told, state=state, skip_if_finished=True)


def record_resumed(
    handle: StudyHandle, old: Any, row: Mapping[str, Any], exp: Path, objectives: Objectives
) -> None:
    """A new finished trial for `old` (left FAIL/unfinished by an interrupted search) that a
    resumed search has now finished: same parameters, every epoch's value (one objective),
    the final state."""
    attrs = {**old.user_attrs, **trial_attrs(row), "resumed_from": old.number}
    handle.study.add_trial(finished_trial(exp, row, objectives, old, attrs))


def dashboard_constraints(constraints: Mapping[str, float]) -> dict[str, Any]:
    """The system attribute Optuna and optuna-dashboard read constraints from
    (tuning._optuna_compat)."""
    return {DASHBOARD_CONSTRAINTS: list(constraints.values())} if constraints else {}


def epoch_values(exp: Path, row: Mapping[str, Any], frame: Any = None) -> dict[int, float]:
    """epoch -> val_acc from the trial's progress.csv (`frame`, when read already; the last
    value of a repeated epoch)."""
    frame = read_progress(exp, row) if frame is None else frame
    if frame is None or "epoch" not in frame or "val_acc" not in frame:
        return {}
    frame = frame[frame["val_acc"].notna()]
    return {int(e): float(v) for e, v in zip(frame["epoch"], frame["val_acc"], strict=True)}


def record_outcome(
    exp: Path,
    rows: Sequence[MutableMapping[str, Any]],
    refit: dict[str, Any] | None,
    final: dict | None,
    objectives: Objectives | None = None,
) -> None:
    """The refits and the test results into the study, for the dashboard: each refit as a
    trial of its own (record_refits); the study's `refit` attribute lists each with the Optuna
    trial whose configuration it trained again and its val_acc; `final_*` are the final
    evaluation's figures of the model it chose."""
    handle = open_study(exp)
    if handle is None:
        return
    numbers = handle.numbers()
    record_refits(handle, exp, rows, refit, objectives or Objectives())
    by_id = {str(row["trial_id"]): row for row in rows}
    refits = []
    for member in (refit or {}).get("members", []):
        row = by_id.get(member["id"], {})
        refits.append(
            {"id": member["id"], "from_trial": str(member["from_trial"]),
             "from_number": numbers.get(str(member["from_trial"])),
             "epochs": int(row.get("epochs") or 0),
             "val_acc": json_number(row.get("val_acc"))}
        )  # fmt: skip
    if refits:
        handle.study.set_user_attr("refit", refits)
    best = (final or {}).get("best") or {}
    for key in FINAL_KEYS:
        if best.get(key) is not None:
            handle.study.set_user_attr(f"final_{key}", best[key])
    if best:
        handle.study.set_user_attr("final_model", str(best.get("trial_id")))
    for name in ("ensemble", "selected_ensemble"):
        part = (final or {}).get(name)
        if isinstance(part, dict) and part.get("test_acc") is not None:
            handle.study.set_user_attr(f"final_{name}_test_acc", part["test_acc"])


def record_refits(
    handle: StudyHandle,
    exp: Path,
    rows: Sequence[Mapping[str, Any]],
    refit: dict[str, Any] | None,
    objectives: Objectives,
) -> int:
    """Each refit as a finished Optuna trial of its own, so that the study's best trial is the
    model the search delivers: the parameters of the trial it trained again (`refit_of`: that
    trial's number), its val_acc (and costs) as values, its per-epoch values, its own start and
    end. Added after the search, it was never a sampler's suggestion; warm starts leave it out
    (tuning.warm_start). Once only: a refit already recorded is skipped. Returns how many."""
    trials = handle.trials()
    recorded = {str(t.user_attrs.get(RAY_TRIAL_ID)) for t in trials if REFIT_OF in t.user_attrs}
    sources = {
        str(t.user_attrs.get(RAY_TRIAL_ID)): t for t in trials if REFIT_OF not in t.user_attrs
    }
    by_id = {str(row["trial_id"]): row for row in rows}
    added = 0
    for member in (refit or {}).get("members", []):
        row, source = by_id.get(member["id"]), sources.get(str(member["from_trial"]))
        if row is None or source is None or member["id"] in recorded:
            continue
        attrs = {**trial_attrs(row), REFIT_OF: source.number}
        handle.study.add_trial(finished_trial(exp, row, objectives, source, attrs))
        added += 1
    return added


def json_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
