"""From Tune's results to fer-search's leaderboard: one row per trial, its status, best epoch
and sampled settings, ranked by val_acc (PublicTest); and whether the search was interrupted.

Trial states come from Tune's public `ExperimentAnalysis` (the saved experiment state, which
knows interrupted trials as RUNNING/PENDING/PAUSED where the in-memory results say TERMINATED).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fer_search.objectives import COSTS
from fer_search.stats import percent, recorded_interval

if TYPE_CHECKING:
    from fer_search.space import SearchSpace

__all__ = [
    "FINAL_STATES",
    "LeaderboardRow",
    "choose",
    "rank_rows",
    "read_leaderboard",
    "saved_search_complete",
    "searched_settings",
    "selectable",
    "summary_line",
    "trial_rows",
    "trial_states",
    "was_interrupted",
    "write_leaderboard",
]

FINAL_STATES = ("TERMINATED", "ERROR")
Row = TypeVar("Row", bound=Mapping[str, Any])  # a LeaderboardRow, or a leaderboard.csv record


@dataclass(eq=False)
class LeaderboardRow(MutableMapping[str, Any]):
    """One trial on the leaderboard. Its columns are what leaderboard.csv writes, read and set
    as `row["val_acc"]` (the sampled settings and costs vary with the space); beside them, what
    the driver needs about the trial and never writes."""

    columns: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # its config as Tune ran it
    checkpoint: Any = None  # its latest Tune Checkpoint; None when it saved none
    epoch_s: float = math.nan  # median seconds per epoch (what a refit plans with)
    eligible: bool = True  # ranked first (objectives.mark_choice; tuning.results.choose)
    exploits: list[dict[str, Any]] = field(default_factory=list)  # PBT: its exploit events
    pbt_index: int | None = None  # PBT: its point in the population (tuning.pbt)

    def __getitem__(self, key: str) -> Any:
        return self.columns[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.columns[key] = value

    def __delitem__(self, key: str) -> None:
        del self.columns[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


def searched_settings(space: SearchSpace) -> list[str]:
    """The TrainConfig fields a space sets, once each (`lr@sgd` and `lr@adamw` are both `lr`)."""
    return list(dict.fromkeys(p.setting for p in space.params))


def saved_trials(location: Path | str) -> list[Any]:
    """Tune's saved trials of an experiment (a path or a URI); [] when there are none."""
    from ray.tune import ExperimentAnalysis

    try:
        return list(ExperimentAnalysis(str(location)).trials)
    except (ValueError, FileNotFoundError, OSError):
        return []


def trial_states(location: Path | str) -> dict[str, str]:
    """Tune's saved status per trial id: TERMINATED, ERROR, or RUNNING/PENDING/PAUSED when the
    search was interrupted."""
    return {trial.trial_id: trial.status for trial in saved_trials(location)}


def saved_search_complete(exp: Path, space: SearchSpace, started: str | None) -> float | None:
    """If Tune's saved state shows a search that had ended (every trial final, and all samples
    started or the time budget spent) though its leaderboard and final evaluation were never
    written (the driver died at the very end), its wall time; else None. `--resume` then only
    finalises it. `started` is experiment.json's start time."""
    trials = saved_trials(exp)
    if not trials or not started:
        return None
    states = {trial.trial_id: trial.status for trial in trials}
    stamps = [float((t.last_result or {}).get("timestamp", 0.0)) for t in trials]
    elapsed = max(0.0, max(stamps) - dt.datetime.fromisoformat(started).timestamp())
    budget = space.experiment.search_budget
    spent = bool(budget) and elapsed >= 0.95 * budget
    ended = len(states) >= space.experiment.num_samples or spent
    if ended and not was_interrupted(states, space, elapsed):
        return elapsed
    return None


def was_interrupted(states: dict[str, str], space: SearchSpace, wall: float) -> bool:
    if any(state not in FINAL_STATES for state in states.values()):
        return True
    budget = space.experiment.search_budget
    out_of_time = bool(budget) and wall >= 0.95 * budget
    return len(states) < space.experiment.num_samples and not out_of_time


def trial_status(result: Any, state: str, epochs: int, max_t: int, failure: str) -> str:
    """completed | pruned | failed | nan | unfinished (interrupted; --resume continues it)."""
    if state not in FINAL_STATES:
        return "unfinished"
    if failure:  # a deterministic failure the trial reported instead of raising (not retried)
        return "nan" if failure.startswith("non-finite") else "failed"
    if result.error is not None:
        return "nan" if "FloatingPointError" in repr(result.error) else "failed"
    if epochs >= max_t:
        return "completed"
    return "pruned"


def trial_row(
    result: Any, space: SearchSpace, exp: Path, states: dict[str, str], node_ips: dict[str, str]
) -> LeaderboardRow:
    from fer_search.space import train_values

    frame = result.metrics_dataframe
    metrics = result.metrics or {}
    if frame is not None and "val_acc" in frame:
        frame = frame[frame["val_acc"].notna()]
    has = frame is not None and len(frame) > 0 and "val_acc" in frame
    epochs = int(frame["epoch"].max()) if has else 0
    best_i = frame["val_acc"].idxmax() if has else None
    failure = str(metrics.get("failure") or "")
    error = failure or (
        "" if result.error is None else str(result.error).strip().splitlines()[-1][:300]
    )
    trial_id = metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_")
    node = metrics.get("node", "")
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "status": trial_status(
            result, states.get(trial_id, "TERMINATED"), epochs, space.experiment.epochs, failure
        ),
        "stopped_by": "",  # why a pruned trial stopped: its scheduler | time budget (tuning.study)
        "val_acc": float(frame.loc[best_i, "val_acc"]) if has else float("nan"),
        **best_interval(frame if has else None, best_i),
        "val_f1": float(frame.loc[best_i, "val_f1"]) if has else float("nan"),
        "best_epoch": int(frame.loc[best_i, "epoch"]) if has else 0,
        "epochs": epochs,
        "time_s": float(metrics.get("time_total_s", 0.0)),
        "node": node,
        "node_ip": node_ips.get(node, ""),
        "precision": metrics.get("precision", ""),
        "gpu_ids": metrics.get("gpu_ids", ""),
        # a URI's trial path has no leading '/': its small files are copied to exp/<name>
        "trial_dir": os.path.relpath(result.path, exp)
        if os.path.isabs(result.path)
        else Path(result.path).name,
        "error": error,
    }
    if space.measures_cost:  # the model's costs (engine.cost), the same in every result
        row.update({name: float(metrics.get(name, float("nan"))) for name in COSTS})
    values = train_values(result.config or {})
    row.update({name: values.get(name, "") for name in searched_settings(space)})
    epoch_s = frame["time_this_iter_s"].median() if has and "time_this_iter_s" in frame else None
    return LeaderboardRow(
        row,
        config=result.config or {},
        checkpoint=result.checkpoint,
        epoch_s=math.nan if epoch_s is None else float(epoch_s),
    )


def best_interval(frame: Any, best_i: Any) -> dict[str, float]:
    """The best epoch's val_acc interval as the trial reported it (the engine's per-epoch
    `val_acc_ci95_lo`/`_hi`); NaN for a trial from before they were reported."""
    names = ("val_acc_ci95_lo", "val_acc_ci95_hi")
    if frame is None or not all(name in frame for name in names):
        return dict.fromkeys(names, float("nan"))
    return {name: float(frame.loc[best_i, name]) for name in names}


def trial_rows(
    results: Any, space: SearchSpace, exp: Path, states: dict[str, str]
) -> list[LeaderboardRow]:
    from fer_search.tuning.cluster import node_ips

    ips = node_ips()
    rows = [trial_row(result, space, exp, states, ips) for result in results]
    return choose(rows, space)[0]


def choose(rows: list[LeaderboardRow], space: SearchSpace) -> tuple[list[LeaderboardRow], str]:
    """The rows ranked for selection, with what the space asks besides val_acc marked
    (objectives.mark_choice: feasible, pareto, and the eligible trials first); and a note when
    the space's `pick` matched no Pareto-optimal trial."""
    from fer_search.objectives import mark_choice, parse_pick

    pick = parse_pick(space.experiment.pick, "pick", space.pick_metrics())
    eligible, note = mark_choice(rows, selectable(rows), space.objectives, space.constraints, pick)
    for row, first in zip(rows, eligible, strict=True):
        row.eligible = first
    return rank_rows(rows), note


def rank_rows(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    """Candidates first (the eligible ones first: objectives.mark_choice; best val_acc first),
    then unfinished and failed trials."""
    return sorted(
        rows,
        key=lambda r: (
            r["status"] not in ("completed", "pruned"),
            not r.eligible,
            -(r["val_acc"] if not math.isnan(r["val_acc"]) else -1.0),
            r["trial_id"],
        ),
    )


def write_leaderboard(rows: list[LeaderboardRow], exp: Path) -> Path:
    import pandas as pd

    frame = pd.DataFrame([row.columns for row in rows])
    path = exp / "leaderboard.csv"
    frame.to_csv(path, index=False)
    return path


def read_leaderboard(exp: Path) -> list[LeaderboardRow]:
    """leaderboard.csv's rows as written (an empty text cell is ""), with nothing beside them:
    what `report --upgrade` starts from."""
    import pandas as pd

    board = pd.read_csv(exp / "leaderboard.csv", dtype={"trial_id": str})
    for column in ("error", "stopped_by", "node", "trial_dir", "trial_id"):
        if column in board:
            board[column] = board[column].fillna("")
    return [LeaderboardRow({str(k): v for k, v in r.items()}) for r in board.to_dict("records")]


def selectable(rows: Sequence[Row]) -> list[Row]:
    """Trials a model may be selected from: finished or stopped by the scheduler, with a val score.
    A trial that failed after a good epoch is not a candidate, however good that epoch was."""
    return [
        r
        for r in rows
        if r["status"] in ("completed", "pruned") and not math.isnan(float(r["val_acc"]))
    ]


def summary_line(rows: Sequence[Mapping[str, Any]], exp: Path, wall: float) -> str:
    counts = {
        s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed", "nan")
    }
    parts = [f"{len(rows)} trials: {counts['completed']} completed, {counts['pruned']} pruned"]
    if counts["failed"] or counts["nan"]:
        parts.append(f"{counts['failed'] + counts['nan']} failed")
    done = ", ".join(parts)
    ranked = selectable(rows)
    if not ranked:
        return f"{done} in {wall:.0f} s; no trial finished an epoch; results in {exp}"
    best = ranked[0]
    interval = recorded_interval(best)  # None for trials from before they reported one
    val_acc = percent(best["val_acc"], interval) + (" (95 % interval)" if interval else "")
    return (
        f"{done} in {wall:.0f} s; best {best['trial_id']} at epoch {best['best_epoch']}: "
        f"val_acc {val_acc}; results in {exp}"
    )
