"""A multi-objective search in the report: its Pareto front (report.json's `pareto_front`),
each trial's Pareto rank and what the choice of best/ was (figures_pareto draws the front).

The front is worked out again from leaderboard.csv with fer_search.objectives (the definition
the search used): the completed and pruned trials within the constraints, none dominated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from fer_search.config import METRIC
from fer_search.objectives import (
    COSTS,
    Objective,
    dominates,
    feasible,
    number_or_nan,
    pareto_front,
    parse_constraints,
    parse_objectives,
)

__all__ = [
    "FIGURE",
    "pareto_facts",
    "pareto_ranks",
    "rank_board",
    "read_objectives",
]

FIGURE = "pareto_front.png"
FRONT_COLUMNS = ("trial_id", "status", METRIC, *COSTS)


def read_objectives(exp_dir: Path) -> tuple[tuple[Objective, ...], dict[str, float]]:
    """The objectives and constraints of the space.yaml a search saved; () and {} for a
    single-objective search or an unreadable file (the report notes that elsewhere)."""
    import yaml

    try:
        raw = yaml.safe_load((exp_dir / "space.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return (), {}
    if not isinstance(raw, dict):
        return (), {}
    metric = (raw.get("experiment") or {}).get("metric", METRIC)
    source = str(exp_dir / "space.yaml")
    return parse_objectives(raw.get("objectives"), metric, source), parse_constraints(
        raw.get("constraints"), source
    )


def scored_rows(board: pd.DataFrame) -> pd.Series:
    """The trials with a METRIC that ran their course or were stopped (completed, pruned)."""
    return board["status"].isin(["completed", "pruned"]) & board[METRIC].notna()


def candidates(board: pd.DataFrame, limits: dict[str, float]) -> list[dict[str, Any]]:
    return [row for row in board[scored_rows(board)].to_dict("records") if feasible(row, limits)]


def pareto_ranks(
    board: pd.DataFrame, objectives: tuple[Objective, ...], limits: dict[str, float]
) -> pd.Series:
    """Each trial's Pareto rank among the feasible scored trials with every objective measured
    (1: the front, as pareto_front finds it; 2: the front once rank 1 is set aside; ...); NA
    for the others (over a constraint, failed, unmeasured) and for a single-objective search."""
    ranks = pd.Series(pd.NA, index=board.index, dtype="Int64")
    if not objectives:
        return ranks
    rows = {i: row for i, row in board[scored_rows(board)].to_dict("index").items()
            if feasible(row, limits)}  # fmt: skip
    left = {i for i, row in rows.items() if measured(row, objectives)}
    # who dominates whom, once: peeling the fronts then costs no further comparisons
    above = {i: {j for j in left if j != i and dominates(rows[j], rows[i], objectives)}
             for i in left}  # fmt: skip
    rank = 1
    while left:
        front = {i for i in left if not above[i] & left}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def measured(row: dict[str, Any], objectives: tuple[Objective, ...]) -> bool:
    return all(not math.isnan(number_or_nan(row.get(o.metric))) for o in objectives)


def rank_board(
    board: pd.DataFrame,
    objectives: tuple[Objective, ...],
    limits: dict[str, float],
    mode: str = "max",
) -> pd.DataFrame:
    """A multi-objective search's leaderboard in the report's order: the feasible scored trials
    by Pareto rank (its `pareto_rank` column), then METRIC; then the trials over a constraint
    by METRIC; then the rest. Any other leaderboard is returned as it is."""
    if not objectives:
        return board
    ranks = pareto_ranks(board, objectives, limits)
    scored = scored_rows(board)
    group = pd.Series(2, index=board.index).where(~scored, 1).where(ranks.isna(), 0)
    ranked = board.assign(pareto_rank=ranks, _group=group, _rank=ranks.fillna(0))
    ranked = ranked.sort_values(
        ["_group", "_rank", METRIC], ascending=[True, True, mode == "min"],
        na_position="last", kind="stable",
    )  # fmt: skip
    return ranked.drop(columns=["_group", "_rank"]).reset_index(drop=True)


def pareto_facts(
    board: pd.DataFrame,
    objectives: tuple[Objective, ...],
    limits: dict[str, float],
    experiment: dict,
    numbers: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """report.json's multi-objective part ({} for a single-objective, unconstrained search):
    objectives, constraints, pareto_front (best val_acc first, each with its Optuna
    trial_number), infeasible trials, the pick."""
    if not objectives and not limits:
        return {}
    pool = candidates(board, limits)
    front = [pool[i] for i in pareto_front(pool, objectives)] if objectives else []
    scored = board[scored_rows(board)]
    choice = experiment.get("choice") or {}
    numbers = numbers or {}
    return {
        "objectives": [o.to_dict() for o in objectives],
        "constraints": limits,
        "pareto_front": [
            {
                "trial_id": row["trial_id"],
                "trial_number": numbers.get(str(row["trial_id"])),
                **{key: row.get(key) for key in FRONT_COLUMNS[1:]},
            }
            for row in sorted(front, key=lambda r: -float(r[METRIC]))
        ],  # fmt: skip
        "infeasible_trials": sorted(
            set(scored["trial_id"]) - {str(row["trial_id"]) for row in pool}
        ),
        "pick": choice.get("pick", ""),
        "picked_trial_id": choice.get("trial_id"),
        "pick_note": choice.get("note", ""),
    }


def fmt_cost(name: str, value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    if math.isnan(number):
        return "-"
    if name == "latency_ms":
        return f"{number:.2f}"
    if name == "params":
        return f"{number / 1e6:.2f} M"
    return f"{number / 1e9:.3f} G"
