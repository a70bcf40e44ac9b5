"""Rebuild a search's report from its results directory: report.md, report.json and figures.

Reads only the files the search wrote (experiment.json, leaderboard.csv, space.yaml, each
trial's progress.csv and params.json, final.json, optuna.db) and never imports Ray, so a report
can be rebuilt on any machine that has a copy of the directory. Nothing here generates
timestamps, so rebuilding the same directory gives the same report.

Modules: load (reading the directory), facts (what the report states: report.json),
importance (Optuna's importances, the report's and optuna-dashboard's), pareto (a
multi-objective search's front, ranks and figure), trials (the figures' data), figures and
figures_search (matplotlib), captions (which trials each figure draws), markdown,
markdown_trials and markdown_final (report.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fer_search.errors import UserError
from fer_search.report.captions import figure_captions
from fer_search.report.facts import asha_rungs, collect_facts
from fer_search.report.figures import FIGURES, plot_best_so_far, plot_learning_curves
from fer_search.report.figures_pareto import plot_pareto
from fer_search.report.figures_search import (
    plot_parallel_coordinates,
    plot_param_slices,
    plot_timeline,
)
from fer_search.report.load import load_results, read_leaderboard
from fer_search.report.markdown import render_markdown
from fer_search.report.pareto import FIGURE
from fer_search.report.trials import cost_axes, param_axes, trial_table

__all__ = [
    "asha_rungs",
    "build_report",
    "collect_facts",
    "load_results",
    "read_leaderboard",
    "render_markdown",
]


LEADERBOARD_ROWS = 20  # report.md's and report.json's; leaderboard.csv holds every trial


def build_report(exp_dir: Path | str, top: int = LEADERBOARD_ROWS) -> Path:
    """Write report.md, report.json and the figures (FIGURES but confusion_test.png, which
    the final evaluation writes) into exp_dir; the leaderboard's `top` rows in both reports.

    Returns the path of report.md. Rebuilding overwrites only these files.
    """
    if top < 1:
        raise UserError(f"the leaderboard needs at least one row, got {top=}")
    exp_dir = Path(exp_dir)
    results = load_results(exp_dir)
    facts = collect_facts(exp_dir, results, top)
    path = exp_dir / "report.md"
    try:
        table = draw_figures(exp_dir, results, facts)
        facts["figures"] = [name for name in FIGURES if (exp_dir / name).is_file()]
        captions = figure_captions(results, table, facts)
        facts["figure_trials"] = {name: captions[name] for name in facts["figures"]
                                  if name in captions}  # fmt: skip
        text = json.dumps(facts, indent=2, allow_nan=False)
        (exp_dir / "report.json").write_text(text + "\n")
        path.write_text(render_markdown(facts))
    except OSError as exc:
        raise UserError(
            f"cannot write the report into {str(exp_dir)!r}: {exc.strerror or exc}"
        ) from None
    return path


def draw_figures(exp_dir: Path, results: dict, facts: dict) -> pd.DataFrame:
    """Every figure but the final evaluation's; returns the trial table they drew from."""
    board, experiment, best_id = (
        results["leaderboard"],
        results["experiment"],
        facts["best_trial_id"],
    )
    table = trial_table(results)
    axes = param_axes(results["space"], board, list(experiment.get("params") or []))
    costs = cost_axes(board, [o.metric for o in results["objectives"][1:]])
    plot_learning_curves(table, results["curves"], best_id, exp_dir / "learning_curves.png")
    plot_best_so_far(results, table, exp_dir / "best_so_far.png")
    plot_timeline(table, experiment, exp_dir / "timeline.png", best_id)
    plot_parallel_coordinates(table, board, axes, exp_dir / "parallel_coordinates.png", best_id,
                              costs)  # fmt: skip
    plot_param_slices(table, board, axes, exp_dir / "param_slices.png", best_id)
    if facts.get("objectives"):
        plot_pareto(table, board, facts, best_id, exp_dir / FIGURE)
    return table
