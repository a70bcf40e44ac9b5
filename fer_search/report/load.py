"""Reading a results directory: experiment.json, leaderboard.csv, final.json, space.yaml, each
trial's progress.csv and params.json; a missing or unreadable file is a one-line UserError or a
note in the report."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_search.config import METRIC, MODE, current_final
from fer_search.errors import UserError

__all__ = [
    "fixed_settings",
    "load_results",
    "read_leaderboard",
    "read_progress",
    "read_space_params",
    "sampled_settings",
]

REQUIRED_FILES = ("experiment.json", "leaderboard.csv")
TEXT_COLUMNS = ("trial_id", "status", "node", "trial_dir", "error")
# also text where present: a status "nan" or a GPU id "0" is not a number
OPTIONAL_TEXT_COLUMNS = ("precision", "gpu_ids")
NUMBER_COLUMNS = (METRIC, "val_f1", "best_epoch", "epochs", "time_s")
CURVE_COLUMNS = (
    "epoch",
    METRIC,
    "val_loss",
    "train_acc",
    "train_loss",
    "timestamp",
    "time_total_s",
)


def load_results(exp_dir: Path | str) -> dict[str, Any]:
    """Read a results directory.

    Returns experiment (dict), leaderboard (DataFrame, best first: for a multi-objective
    search by Pareto rank, then METRIC, its `pareto_rank` column added; pareto.rank_board),
    final (dict or None), curves (trial_id -> progress DataFrame, leaderboard order, only
    trials with rows), numbers (trial_id -> Optuna trial number, None where params.json has
    none), space (the space's Params, or None without a readable space.yaml), objectives and
    constraints (space.yaml's; () and {} for a single-objective, unconstrained search) and
    notes (what could not be read, one sentence each).
    """
    from fer_search.report.pareto import rank_board, read_objectives

    exp_dir = Path(exp_dir)
    check_results_dir(exp_dir)
    experiment = read_json(exp_dir / "experiment.json")
    if not isinstance(experiment, dict):
        raise UserError(f"{exp_dir / 'experiment.json'} must hold a JSON object")
    mode = experiment.get("mode", MODE)
    objectives, limits = read_objectives(exp_dir)
    leaderboard = rank_board(read_leaderboard(exp_dir / "leaderboard.csv", mode), objectives,
                             limits, mode)  # fmt: skip
    final, notes = read_final(exp_dir / "final.json")
    curves, curve_notes = read_curves(exp_dir, leaderboard)
    space, space_notes = read_space_params(exp_dir / "space.yaml")
    return {
        "experiment": experiment,
        "leaderboard": leaderboard,
        "final": final,
        "curves": curves,
        "numbers": read_trial_numbers(exp_dir, leaderboard),
        "space": space,
        "objectives": objectives,
        "constraints": limits,
        "notes": notes + curve_notes + space_notes,
    }


def check_results_dir(exp_dir: Path) -> None:
    if not exp_dir.is_dir():
        raise UserError(f"results directory {str(exp_dir)!r} does not exist")
    missing = [name for name in REQUIRED_FILES if not (exp_dir / name).is_file()]
    if not missing:
        return
    inside = sorted(p.parent.name for p in exp_dir.glob("*/experiment.json"))
    hint = f"; it holds experiments: {', '.join(inside)}" if inside else ""
    raise UserError(
        f"{str(exp_dir)!r} is not a fer-search results directory: missing "
        f"{' and '.join(missing)}{hint}"
    )


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None


def read_final(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """final.json, or None when it is missing or unreadable (an interrupted search)."""
    if not path.is_file():
        return None, []
    try:
        final = read_json(path)
    except UserError as exc:
        return None, [f"final evaluation omitted: {exc}"]
    if not isinstance(final, dict):
        return None, [f"final evaluation omitted: {path} does not hold a JSON object"]
    return current_final(final), []


def read_leaderboard(path: Path, mode: str = MODE) -> pd.DataFrame:
    """leaderboard.csv with its standard columns present and typed, best first."""
    text = (*TEXT_COLUMNS, *OPTIONAL_TEXT_COLUMNS)
    try:
        header = pd.read_csv(path, nrows=0).columns
        missing = {name: ["", "nan", "NaN"] for name in header if name not in text}
        board = pd.read_csv(
            path, dtype={name: str for name in text}, keep_default_na=False, na_values=missing
        )
    except pd.errors.EmptyDataError:
        board = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable CSV ({first})") from None
    if len(board.columns) and "trial_id" not in board.columns:
        raise UserError(f"{path} has no trial_id column (has {', '.join(map(str, board.columns))})")
    for name in TEXT_COLUMNS:
        board[name] = board[name].fillna("").astype(str) if name in board else ""
    for name in NUMBER_COLUMNS:
        board[name] = pd.to_numeric(board[name], errors="coerce") if name in board else np.nan
    board["status"] = board["status"].str.strip().str.lower()
    # Stable, so ties keep the order the search wrote them in.
    board = board.sort_values(METRIC, ascending=mode == "min", na_position="last", kind="stable")
    if "eligible" in board:  # a constrained or picked search: what the choice allows first
        board["eligible"] = board["eligible"].astype(str).str.lower() == "true"
        board = board.sort_values("eligible", ascending=False, kind="stable")
    return board.reset_index(drop=True)


def read_curves(exp_dir: Path, board: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[str]]:
    curves: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    for trial_id, trial_dir in zip(board["trial_id"], board["trial_dir"], strict=True):
        curve = read_progress(exp_dir / trial_dir) if trial_dir.strip() else None
        if curve is None:
            missing.append(trial_id)
        else:
            curves[trial_id] = curve
    if not missing:
        return curves, []
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return curves, [f"{len(missing)} of {len(board)} trials have no progress.csv rows: {shown}"]


def read_progress(trial_dir: Path) -> pd.DataFrame | None:
    """A trial's progress.csv with an `epoch` column and numeric metrics; None when empty."""
    path = trial_dir / "progress.csv"
    if not path.is_file():
        return None
    try:
        curve = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if "failure" in curve:  # a trial's failure reported as its last result: not an epoch
        curve = curve[curve["failure"].isna()]
    if curve.empty:
        return None
    if "epoch" not in curve:
        fallback = curve.get("training_iteration")
        curve["epoch"] = fallback if fallback is not None else np.arange(1, len(curve) + 1)
    for name in CURVE_COLUMNS:
        if name in curve:
            curve[name] = pd.to_numeric(curve[name], errors="coerce")
    # a trial retried from a checkpoint older than its last epoch reports those epochs again
    return curve.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def read_trial_numbers(exp_dir: Path, board: pd.DataFrame) -> dict[str, int | None]:
    """Each trial's Optuna trial number, from `trial_number` in its params.json (the trial
    config); None for a refit, or a run from before the number was recorded."""
    numbers: dict[str, int | None] = {}
    for trial_id, trial_dir in zip(board["trial_id"], board["trial_dir"], strict=True):
        path = exp_dir / trial_dir / "params.json"
        number = None
        if trial_dir.strip() and path.is_file():
            with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                number = json.loads(path.read_text()).get("trial_number")
        numbers[trial_id] = number if isinstance(number, int) else None
    return numbers


def read_space_params(path: Path) -> tuple[tuple[Any, ...] | None, list[str]]:
    """The Params of the space the search ran (its saved space.yaml), or None and why not: the
    figures then take the sampled settings from the leaderboard's columns."""
    from fer_search.space import load_space

    if not path.is_file():
        return None, []
    try:
        return load_space(str(path)).params, []
    except UserError as exc:
        return None, [f"parameter figures use the leaderboard's columns: {exc}"]


def sampled_settings(
    space: tuple[Any, ...] | None, board: pd.DataFrame, params: list[str]
) -> list[str]:
    """The settings the search sampled that have a leaderboard column, in the space's order
    (`lr@sgd` and `lr@adamw` are one setting, `lr`); without a readable space, the columns
    `params` (experiment.json's) names that took more than one value."""
    if space is not None:
        names = (p.setting for p in space if p.kind != "fixed" and p.setting in board)
        return list(dict.fromkeys(names))
    return [n for n in params if n in board and board[n].dropna().astype(str).nunique() > 1]


def fixed_settings(board: pd.DataFrame, params: list[str], sampled: list[str]) -> dict[str, Any]:
    """The settings of `params` (experiment.json's) the search did not sample and every trial
    shared, with that value (the leaderboard's); one that varied anyway is left out."""
    fixed: dict[str, Any] = {}
    for name in params:
        if name in sampled or name not in board:
            continue
        values = board[name].dropna()
        if len(values) and values.astype(str).nunique() == 1:
            fixed[name] = values.iloc[0]
    return fixed
