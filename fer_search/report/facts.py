"""What the report states, as JSON-ready facts: trial counts, the trials the time budget cut,
the scheduler's epoch savings, the best trial, the wall time and what it leaves out, the
parameter importances (report.importance)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_search.config import METRIC, is_refit_id, recorded_scheduler
from fer_search.report.importance import importance_facts, optuna_importances
from fer_search.report.load import fixed_settings, sampled_settings
from fer_search.report.pareto import pareto_facts
from fer_search.stats import recorded_interval

__all__ = [
    "asha_rungs",
    "collect_facts",
    "cut_by_time",
    "json_safe",
    "optuna_importances",
    "wall_time",
]

STATUSES = ("completed", "pruned", "failed", "nan", "running")


def asha_rungs(experiment: dict[str, Any]) -> set[int]:
    """The epochs at which Ray's ASHA (one bracket) may stop a trial: grace_period *
    reduction_factor**k below max_t."""
    grace, factor = experiment.get("grace_period"), experiment.get("reduction_factor")
    max_t = experiment.get("max_t")
    if not all(isinstance(v, int | float) and v > 0 for v in (grace, factor, max_t)):
        return set()
    rungs, epoch = set(), float(grace)  # type: ignore[arg-type]
    while epoch < max_t and factor > 1:  # type: ignore[operator]
        rungs.add(int(epoch))
        epoch *= factor  # type: ignore[operator]
    return rungs


def cut_by_time(board: pd.DataFrame, experiment: dict[str, Any]) -> pd.Series:
    """Stopped trials the search's time budget ended: the leaderboard's `stopped_by` says so
    where the search recorded it. Older leaderboards (all from ASHA or FIFO searches) are read
    by the rungs: a trial that stopped between ASHA's rungs (or before its first epoch) cannot
    have been stopped by ASHA. An empty experiment record names no rungs to tell them apart, nor
    do other schedulers' records (HyperBand's brackets differ), so those mark none."""
    if "stopped_by" in board and board["stopped_by"].notna().any():  # told by the study
        return (board["status"] == "pruned") & (board["stopped_by"] == "time budget")
    scheduler = recorded_scheduler(experiment)
    if not experiment or scheduler not in ("asha", "fifo"):
        return pd.Series(False, index=board.index)
    if scheduler == "fifo":
        return board["status"] == "pruned"
    rungs = asha_rungs(experiment)
    epochs = board["epochs"].fillna(0).astype(int)
    return (board["status"] == "pruned") & ~epochs.isin(rungs)


def count_trials(board: pd.DataFrame, cut: pd.Series) -> dict[str, int]:
    """Trials by status; `cut` marks the "pruned" ones the time budget ended (cut_by_time)."""
    counts = {"trials": len(board)}
    counts.update({status: int((board["status"] == status).sum()) for status in STATUSES})
    counts["other"] = len(board) - sum(counts[status] for status in STATUSES)
    timed_out = int(cut.sum())
    counts["pruned"] -= timed_out
    counts["time_budget"] = timed_out
    return counts


def epoch_budget(
    board: pd.DataFrame,
    experiment: dict[str, Any],
    curves: dict[str, pd.DataFrame],
    cut: pd.Series,
) -> dict[str, Any]:
    """Epochs trained in all, against every trial running to max_t (what the scheduler saved).
    Trials the time budget cut short (`cut`, as for count_trials) are left out of both: the
    scheduler made no decision about them."""
    from_progress = board["trial_id"].map(lambda t: len(curves[t]) if t in curves else np.nan)
    epochs = board["epochs"].fillna(from_progress).fillna(0)
    decided = ~cut
    consumed, consumed_decided = int(epochs.sum()), int(epochs[decided].sum())
    max_t = experiment.get("max_t")
    budget = (
        int(decided.sum()) * int(max_t) if isinstance(max_t, int | float) and max_t > 0 else None
    )
    saved = 1 - consumed_decided / budget if budget else None
    return {
        "epochs_consumed": consumed,
        "epochs_consumed_decided": consumed_decided,
        "epochs_budget": budget,
        "epochs_saved_fraction": saved,
        "trials_decided": int(decided.sum()),
    }


def best_trial_id(
    board: pd.DataFrame, final: dict[str, Any] | None, experiment: dict[str, Any] | None = None
) -> str | None:
    """The final evaluation's best trial, else the one the search chose among its objectives
    (experiment.json's `choice`), else the leaderboard's top scored trial."""
    best = (final or {}).get("best")
    if isinstance(best, dict) and best.get("trial_id") not in (None, ""):
        return str(best["trial_id"])
    chosen = ((experiment or {}).get("choice") or {}).get("trial_id")
    if chosen not in (None, "") and str(chosen) in set(board["trial_id"]):
        return str(chosen)
    scored = board[board[METRIC].notna()]
    return str(scored["trial_id"].iloc[0]) if len(scored) else None


def collect_facts(exp_dir: Path, results: dict[str, Any], top: int) -> dict[str, Any]:
    """Everything the report states, JSON-ready: report.json is this, report.md renders it."""
    experiment, board, final = results["experiment"], results["leaderboard"], results["final"]
    numbers = results.get("numbers") or {}
    objectives = results.get("objectives") or ()
    # the counts and the scheduler's epoch figures are the search's; a refit is stated apart
    is_refit = board["trial_id"].map(is_refit_id).astype(bool)
    searched = board[~is_refit]
    cut = cut_by_time(searched, experiment)
    counts = count_trials(searched, cut)
    time_budget = searched.loc[cut, "trial_id"].tolist()
    importances = importance_facts(
        exp_dir / "optuna.db", str(experiment.get("name", "")), board,
        [o.metric for o in objectives], set(time_budget),
    )  # fmt: skip
    first = importances["search"][0] if importances["search"] else None
    params = list(experiment.get("params") or [])
    sampled = sampled_settings(results.get("space"), board, params)
    return json_safe(
        {
            "experiment": experiment,
            "counts": counts,
            "wall_time": wall_time(experiment),
            **epoch_budget(searched, experiment, results["curves"], cut),
            "refit_epochs": int(board.loc[is_refit, "epochs"].fillna(0).sum())
            if is_refit.any()
            else None,
            "refits": int(is_refit.sum()),
            "leaderboard_rows": len(board),
            "best_trial_id": best_trial_id(board, final, experiment),
            "leaderboard_top": top,
            "leaderboard": leaderboard_records(board.head(top), numbers),
            "trial_numbers": {str(t): numbers.get(t) for t in board["trial_id"]},
            "sampled_params": sampled,
            "fixed_params": fixed_settings(board, params, sampled),
            # "pruned" trials the scheduler never judged (the time budget ended them)
            "time_budget_trials": time_budget,
            "lineage": pbt_lineage(searched),
            "final": final,
            # the first objective's (report.json's keys from before multi-objective importances)
            "importances": first["values"] if first else None,
            "importances_note": importances["note"] or (first["note"] if first else None),
            "importances_trials": len(first["trial_numbers"]) if first else 0,
            "importances_by_objective": importances["search"],
            "dashboard_importances": importances["dashboard"],
            "notes": results["notes"],
            **pareto_facts(
                board, objectives, results.get("constraints") or {}, experiment, numbers
            ),  # fmt: skip
        }
    )


def wall_time(experiment: dict[str, Any]) -> dict[str, Any]:
    """What experiment.json's times say, and how they add up: `span_s` from `started` to
    `finished` (both the driver's local time); `wall_time_s` (the search: from the Tuner's start
    to the refit's end, summed over --resume runs), `outside_s` the rest of the span (set-up
    before the Tuner, the final evaluation after the refit, and any pause before a --resume);
    `phases`, each step's wall seconds where the record has them (Phases)."""
    from datetime import datetime

    searched = experiment.get("wall_time_s")
    try:
        started = datetime.fromisoformat(str(experiment.get("started")))
        finished = datetime.fromisoformat(str(experiment.get("finished")))
        span: float | None = (finished - started).total_seconds()
    except (TypeError, ValueError):
        span = None
    outside = span - searched if span is not None and isinstance(searched, int | float) else None
    recorded = experiment.get("phases")
    phases: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    return {
        "span_s": span,
        "wall_time_s": searched,
        "outside_s": outside,
        "phases": {str(k): v.get("wall_s") for k, v in phases.items() if isinstance(v, dict)},
    }


def leaderboard_records(
    board: pd.DataFrame, numbers: dict[str, int | None] | None = None
) -> list[dict[str, Any]]:
    """The leaderboard's rows, each trial's val_acc interval in final.json's form: the CSV's
    two columns `val_acc_ci95_lo`/`_hi` become `val_acc_ci95` [lo, hi] after val_acc (None
    where a trial reported none; absent for a leaderboard from before intervals); with
    `numbers` (load_results'), each trial's Optuna `trial_number` after its trial_id, as the
    figures name it (`#118`)."""
    records = []
    for row in board.to_dict("records"):
        if numbers is not None:
            row = {"trial_id": row["trial_id"], "trial_number": numbers.get(row["trial_id"]),
                   **row}  # fmt: skip
        if f"{METRIC}_ci95_lo" not in row:
            records.append(row)
            continue
        interval = recorded_interval(row)
        record = {}
        for key, value in row.items():
            if not key.startswith(f"{METRIC}_ci95_"):
                record[key] = value
            if key == METRIC:
                record[f"{METRIC}_ci95"] = interval
        records.append(record)
    return records


def pbt_lineage(board: pd.DataFrame) -> list[dict[str, Any]]:
    """A PBT search's exploits, one entry per trial PBT changed (its `lineage` column)."""
    if "lineage" not in board:
        return []
    changed = board[board["lineage"].fillna("").astype(str) != ""]
    return [{"trial_id": t, "lineage": text, "val_acc": v}
            for t, text, v in zip(changed["trial_id"], changed["lineage"], changed["val_acc"],
                                  strict=True)]  # fmt: skip


def json_safe(value: Any) -> Any:
    """Plain Python values for json.dumps(allow_nan=False): NaN and inf become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value
