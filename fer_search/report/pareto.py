"""A multi-objective search in the report: its Pareto front (report.json's `pareto_front`),
the trade-off figure and what the choice of best/ was.

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
    feasible,
    pareto_front,
    parse_constraints,
    parse_objectives,
)

__all__ = ["FIGURE", "pareto_facts", "plot_pareto", "read_objectives"]

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


def candidates(board: pd.DataFrame, limits: dict[str, float]) -> list[dict[str, Any]]:
    rows = board[board["status"].isin(["completed", "pruned"]) & board[METRIC].notna()]
    return [row for row in rows.to_dict("records") if feasible(row, limits)]


def pareto_facts(exp_dir: Path, board: pd.DataFrame, experiment: dict) -> dict[str, Any]:
    """report.json's multi-objective part ({} for a single-objective, unconstrained search):
    objectives, constraints, pareto_front (best val_acc first), infeasible trials, the pick."""
    objectives, limits = read_objectives(exp_dir)
    if not objectives and not limits:
        return {}
    pool = candidates(board, limits)
    front = [pool[i] for i in pareto_front(pool, objectives)] if objectives else []
    scored = board[board["status"].isin(["completed", "pruned"]) & board[METRIC].notna()]
    choice = experiment.get("choice") or {}
    return {
        "objectives": [o.to_dict() for o in objectives],
        "constraints": limits,
        "pareto_front": [
            {key: row.get(key) for key in FRONT_COLUMNS}
            for row in sorted(front, key=lambda r: -float(r[METRIC]))
        ],
        "infeasible_trials": sorted(
            set(scored["trial_id"]) - {str(row["trial_id"]) for row in pool}
        ),
        "pick": choice.get("pick", ""),
        "picked_trial_id": choice.get("trial_id"),
        "pick_note": choice.get("note", ""),
    }


def plot_pareto(board: pd.DataFrame, facts: dict[str, Any], chosen: str | None, path: Path) -> None:
    """val_acc against the first cost objective: every scored trial (hollow: pruned; grey x:
    over a constraint), the front as a step line, the chosen trial starred, the limit on that
    cost dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_search.report.plotting import save_figure

    costs = [o["metric"] for o in facts.get("objectives", [])[1:]]
    if not costs:
        return
    cost = costs[0]
    scored = board[board["status"].isin(["completed", "pruned"]) & board[METRIC].notna()]
    scored = scored[pd.to_numeric(scored.get(cost), errors="coerce").notna()]
    infeasible = set(facts.get("infeasible_trials", []))
    front = facts.get("pareto_front", [])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for status, face in (("completed", "tab:blue"), ("pruned", "none")):
        part = scored[(scored["status"] == status) & ~scored["trial_id"].isin(infeasible)]
        ax.scatter(part[cost], part[METRIC] * 100, facecolors=face, edgecolors="tab:blue",
                   label=f"{status} ({len(part)})", zorder=2)  # fmt: skip
    bad = scored[scored["trial_id"].isin(infeasible)]
    if len(bad):
        ax.scatter(bad[cost], bad[METRIC] * 100, marker="x", color="grey",
                   label=f"over a constraint ({len(bad)})", zorder=2)  # fmt: skip
    if front:
        points = sorted((float(r[cost]), float(r[METRIC]) * 100) for r in front)
        ax.step([p[0] for p in points], [p[1] for p in points], where="post", color="tab:red",
                label=f"Pareto front ({len(front)})", zorder=1)  # fmt: skip
    picked = scored[scored["trial_id"] == chosen] if chosen else scored.iloc[:0]
    if len(picked):
        ax.scatter(picked[cost], picked[METRIC] * 100, marker="*", s=220, color="gold",
                   edgecolors="black", label=f"best/ ({chosen})", zorder=3)  # fmt: skip
    limit = (facts.get("constraints") or {}).get(f"max_{cost}")
    if limit is not None:
        ax.axvline(limit, linestyle="--", color="grey", label=f"max_{cost} {limit:g}")
    if cost in ("params", "flops") and len(scored) and float(scored[cost].min()) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost} ({COSTS[cost]})" if len(COSTS[cost]) < 40 else cost)
    ax.set_ylabel(f"{METRIC} (%)")
    ax.set_title(f"{METRIC} against {cost}: {len(scored)} scored trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


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
