"""pareto_front.png: a multi-objective search's trade-off between val_acc and its first cost,
every trial drawn by how it stopped, as in the other figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fer_search.config import METRIC
from fer_search.objectives import COSTS
from fer_search.report.pareto import scored_rows
from fer_search.report.plotting import pyplot, save_figure
from fer_search.report.trials import OTHER_STATUS_COLOUR, STATUS_COLOURS

__all__ = ["pareto_points", "plot_pareto"]

# how each kind of trial is drawn in pareto_front.png: (marker, filled)
PARETO_STYLES = {"completed": ("o", True), "pruned": ("o", False), "time budget": ("s", False)}


def pareto_points(table: pd.DataFrame, board: pd.DataFrame, cost: str) -> pd.DataFrame:
    """The leaderboard rows pareto_front.png draws (scored, with `cost` measured), `shown`: how
    each stopped as every figure says it (trials.trial_table's status: `time budget` for a trial
    the time budget ended, not `pruned`)."""
    status = dict(zip(table["trial_id"], table["status"], strict=True))
    scored = board[scored_rows(board)]
    if cost not in scored:
        return scored.iloc[:0].assign(shown=pd.Series(dtype=str))
    scored = scored.assign(**{cost: pd.to_numeric(scored.get(cost), errors="coerce")})
    scored = scored[scored[cost].notna()]
    return scored.assign(shown=scored["trial_id"].map(status).fillna(scored["status"]))


def plot_pareto(table: pd.DataFrame, board: pd.DataFrame, facts: dict[str, Any],
                chosen: str | None, path: Path) -> None:  # fmt: skip
    """val_acc against the first cost objective: every scored trial coloured by how it stopped
    (trials.STATUS_COLOURS, as in the other figures: `time budget` apart from `pruned`; grey x:
    over a constraint), the front as a step line with its trials named (text.trial_name), the
    chosen trial starred, the limit on that cost dashed; the legend outside the axes, where it
    covers no point."""
    costs = [o["metric"] for o in facts.get("objectives", [])[1:]]
    if not costs:
        return
    cost = costs[0]
    plt = pyplot()
    names = dict(zip(table["trial_id"], table["name"], strict=True))
    scored = pareto_points(table, board, cost)
    infeasible = set(facts.get("infeasible_trials", []))
    front = facts.get("pareto_front", [])
    fig, ax = plt.subplots(figsize=(8.4, 4.6), layout="constrained")
    for shown, part in scored[~scored["trial_id"].isin(infeasible)].groupby("shown", sort=False):
        marker, filled = PARETO_STYLES.get(str(shown), ("o", False))
        colour = STATUS_COLOURS.get(str(shown), OTHER_STATUS_COLOUR)
        ax.scatter(part[cost], part[METRIC] * 100, marker=marker, s=36, linewidths=1.4,
                   facecolors=colour if filled else "none", edgecolors=colour,
                   label=f"{shown} ({len(part)})", zorder=2)  # fmt: skip
    bad = scored[scored["trial_id"].isin(infeasible)]
    if len(bad):
        ax.scatter(bad[cost], bad[METRIC] * 100, marker="x", color="0.45",
                   label=f"over a constraint ({len(bad)})", zorder=2)  # fmt: skip
    if front:
        points = sorted((float(r[cost]), float(r[METRIC]) * 100, str(r["trial_id"]))
                        for r in front)  # fmt: skip
        ax.step([p[0] for p in points], [p[1] for p in points], where="post", color="black",
                linewidth=1, label=f"Pareto front ({len(front)})", zorder=1)  # fmt: skip
        for x, y, trial_id in points:
            ax.annotate(names.get(trial_id, trial_id), (x, y), xytext=(4, 4),
                        textcoords="offset points", fontsize=7, color="0.25")  # fmt: skip
    picked = scored[scored["trial_id"] == chosen] if chosen else scored.iloc[:0]
    if len(picked):
        ax.scatter(picked[cost], picked[METRIC] * 100, marker="*", s=220, color="gold",
                   edgecolors="black", label=f"best/ ({names.get(str(chosen), chosen)})",
                   zorder=3)  # fmt: skip
    limit = (facts.get("constraints") or {}).get(f"max_{cost}")
    if limit is not None:
        ax.axvline(limit, linestyle="--", color="grey", label=f"max_{cost} {limit:g}")
    if cost in ("params", "flops") and len(scored) and float(scored[cost].min()) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost} ({COSTS[cost]})" if len(COSTS[cost]) < 40 else cost)
    ax.set_ylabel(f"{METRIC} (%)")
    ax.set_title(f"{METRIC} against {cost}: {len(scored)} scored trials")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    save_figure(fig, path)
