"""Which trials each figure draws, one sentence per figure (report.json's `figure_trials`,
under each figure in report.md): counted from the same rows the figures draw, so a reader can
tell the 9 searched trials of one figure from the 11 rows of another."""

from __future__ import annotations

from typing import Any

import pandas as pd

from fer_search.config import METRIC
from fer_search.report.figures_pareto import pareto_points
from fer_search.report.figures_search import searched_rows
from fer_search.report.pareto import FIGURE as PARETO_FIGURE
from fer_search.report.text import plural

__all__ = ["figure_captions"]


def figure_captions(
    results: dict[str, Any], table: pd.DataFrame, facts: dict[str, Any]
) -> dict[str, str]:
    """figure name -> which trials it draws (trials.trial_table's `table`; collect_facts')."""
    curves = results["curves"]
    with_curves = table[table["trial_id"].isin(list(curves))]
    searched = searched_rows(table, results["leaderboard"])
    refits = int(table["refit"].sum())
    has_metric = with_curves["trial_id"].map(lambda t: METRIC in curves[t]).astype(bool)
    scored_epochs = with_curves.loc[has_metric]
    left_out = (
        f"; the {plural(refits, 'refit')} left out: each retrains a searched configuration "
        "and is no sample of the search"
        if refits
        else ""
    )
    captions = {
        "learning_curves.png": f"Every trial with progress.csv rows: {split(with_curves)}.",
        "best_so_far.png": (
            f"Every epoch of {the(int((~scored_epochs['refit']).sum()), 'searched trial')}"
            f" with a {METRIC}; the best-so-far line is theirs alone"
            + (
                f"; the {plural(int(scored_epochs['refit'].sum()), 'refit')}' epochs drawn "
                "apart, in the shaded refit phase"
                if scored_epochs["refit"].any()
                else ""
            )
            + "."
        ),
        "timeline.png": f"Every trial with timestamps: {split(table[table['start'].notna()])}.",
        "parallel_coordinates.png": (
            the(len(searched), "searched trial", start=True)
            + (f" with their {', '.join(costs(facts))}" if costs(facts) else "")
            + f"{left_out}."
        ),
        "param_slices.png": (
            f"{the(int(searched[METRIC].notna().sum()), 'searched trial', start=True)} with a "
            f"{METRIC}{left_out}."
        ),
    }
    if facts.get("objectives"):
        captions[PARETO_FIGURE] = pareto_caption(table, results["leaderboard"], facts)
    best = facts.get("best_trial_id")
    if facts.get("final") and best:
        names = dict(zip(table["trial_id"], table["name"], strict=True))
        captions["confusion_test.png"] = (
            f"The best model ({names.get(best, best)}, final.json's) on PrivateTest, drawn by "
            "the final evaluation."
        )
    return captions


def the(count: int, noun: str, start: bool = False) -> str:
    """`the 9 searched trials`, `no searched trial`; `start`: The, No."""
    text = f"the {plural(count, noun)}" if count else f"no {noun}"
    return text[0].upper() + text[1:] if start else text


def split(rows: pd.DataFrame) -> str:
    refits = int(rows["refit"].sum())
    if not len(rows):
        return "none"
    searched = plural(len(rows) - refits, "searched trial")
    return f"{searched} and {plural(refits, 'refit')}" if refits else searched


def costs(facts: dict[str, Any]) -> list[str]:
    return [o["metric"] for o in (facts.get("objectives") or [])[1:]]


def pareto_caption(table: pd.DataFrame, board: pd.DataFrame, facts: dict[str, Any]) -> str:
    cost = costs(facts)[0]
    points = pareto_points(table, board, cost)
    infeasible = points["trial_id"].isin(facts.get("infeasible_trials") or ())
    over, cut = int(infeasible.sum()), int(((points["shown"] == "time budget") & ~infeasible).sum())
    what = the(len(points), "completed or pruned trial", start=True)
    parts = [f"{what} with a {METRIC} and a {cost}"]
    if cut:
        parts.append(f"{plural(cut, 'trial')} the time budget stopped drawn apart from the pruned")
    if over:
        parts.append(f"{over} over a constraint drawn as x")
    return "; ".join(parts) + "."
