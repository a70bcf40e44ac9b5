"""Bringing an experiment an earlier fer-search wrote up to date for monitoring (`report
--upgrade`): no trial left RUNNING in its Optuna study, TensorBoard runs rebuilt from the
trials' files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fer_search.config import RENAMED_FINAL_KEYS, current_final, recorded_scheduler
from fer_search.errors import UserError
from fer_search.space import load_space
from fer_search.tuning._optuna_compat import (
    DASHBOARD_CONSTRAINTS,
    drop_study_attrs,
    set_trial_end,
    write_finished_attrs,
)
from fer_search.tuning.experiment_dir import RUN_FILE, write_json
from fer_search.tuning.refit import refit_run_names
from fer_search.tuning.results import read_leaderboard, write_leaderboard
from fer_search.tuning.study import (
    Objectives,
    close_study,
    cost_attrs,
    open_study,
    record_outcome,
    trial_times,
)
from fer_search.tuning.tensorboard import (
    LOG_DIR,
    RunNames,
    finish_runs,
    write_experiment_config,
    write_scalars,
)

__all__ = ["rebuild_runs", "upgrade_experiment"]


def upgrade_experiment(path: str | Path) -> dict[str, int]:
    """Bring an experiment an earlier fer-search wrote up to date for monitoring: no trial
    left RUNNING in optuna.db (closed as the leaderboard says; leaderboard.csv gains
    `stopped_by`), each trial ending when its results did, the metric named, costs and the
    constraint list on every trial, the refits as trials and the final figures as study
    attributes (final.json's under today's names), and TensorBoard runs rebuilt from the
    trials' files."""
    exp = Path(path).expanduser().resolve()
    missing = [f for f in (RUN_FILE, "leaderboard.csv", "space.yaml") if not (exp / f).is_file()]
    if missing:
        raise UserError(f"{path}: not a finished fer-search experiment (no {', '.join(missing)})")
    rows = read_leaderboard(exp)
    space = load_space(str(exp / "space.yaml"))
    record = json.loads((exp / RUN_FILE).read_text())
    objectives = Objectives.of(space)
    counts = close_study(exp, rows, space.experiment.metric, recorded_scheduler(record), objectives)
    counts["end_times"] = true_end_times(exp, rows)
    counts["attrs"] = upgrade_trial_attrs(exp, rows, objectives)
    write_leaderboard(rows, exp)
    record = json.loads((exp / RUN_FILE).read_text())
    final = exp / "final.json"
    outcome = json.loads(final.read_text()) if final.is_file() else None
    if outcome is not None and current_final(outcome) != outcome:  # today's key names
        outcome = current_final(outcome)
        write_json(final, outcome)
    record_outcome(exp, rows, record.get("refit"), outcome, objectives)
    handle = open_study(exp)
    if handle is not None:  # the study's copies of final.json's figures under their old names
        old = tuple(f"final_{key}" for key in RENAMED_FINAL_KEYS)
        drop_study_attrs(handle.storage, handle.study.study_name, old)
    counts["tensorboard_runs"] = rebuild_runs(exp)
    return counts


def rebuild_runs(exp: Path) -> int:
    """TensorBoard runs for a finished experiment from its files (progress.csv, params.json,
    leaderboard.csv, space.yaml), for experiments written before fer-search logged its own
    or whose event files were not kept. Existing runs are replaced. Returns the run count."""
    import shutil

    import pandas as pd
    from torch.utils.tensorboard import SummaryWriter

    from fer_search.config import is_refit_id

    space = load_space(str(exp / "space.yaml"))
    record = json.loads((exp / "experiment.json").read_text())
    rows = read_leaderboard(exp)
    handle = open_study(exp)
    numbers = handle.numbers() if handle else {}
    for row in rows:
        params = exp / str(row["trial_dir"]) / "params.json"
        row["trial_id"] = str(row["trial_id"])
        row.config = json.loads(params.read_text()) if params.is_file() else {}
        row.config.setdefault("trial_number", numbers.get(row["trial_id"]))
    root = exp / LOG_DIR
    shutil.rmtree(root, ignore_errors=True)
    refit = record.get("refit") or None
    search = [row for row in rows if not is_refit_id(row["trial_id"])]
    refits = [row for row in rows if is_refit_id(row["trial_id"])]
    names = {"search": RunNames(space, refit=bool(refit and refits))}
    if refit and refits:
        names["refit"] = refit_run_names(space, refit, search)
    for group, group_rows in (("search", search), ("refit", refits)):
        if group not in names:
            continue
        for row in group_rows:
            name, _ = names[group](row["trial_id"], row.config)
            progress = exp / str(row["trial_dir"]) / "progress.csv"
            if progress.is_file():
                writer = SummaryWriter(log_dir=str(root / name))
                frame = pd.read_csv(progress)
                for result in frame[frame["val_acc"].notna()].to_dict("records"):
                    write_scalars(writer, result, dict(space.constraints))
                writer.close()
        finish_runs(root, group_rows, names[group])
    retrained = [m["run"] for m in names["refit"].members or []] if "refit" in names else None
    write_experiment_config(root, space, refit_runs=retrained)
    return len(search) + (len(refits) if "refit" in names else 0)


def true_end_times(exp: Path, rows: Sequence[Mapping[str, Any]], slack_s: float = 60.0) -> int:
    """Give each finished trial that ended over `slack_s` before its study says (closed after
    the fact by an earlier fer-search) the end its own results give; how many changed."""
    handle = open_study(exp)
    if handle is None:
        return 0
    latest = handle.latest()
    fixed = 0
    for row in rows:
        trial, times = latest.get(str(row["trial_id"])), trial_times(exp, row)
        if trial is None or times is None or trial.datetime_complete is None:
            continue
        if trial.datetime_complete.timestamp() - times[1] > slack_s:
            set_trial_end(handle.storage, handle.storage_id(trial.number), times[1])
            fixed += 1
    return fixed


def upgrade_trial_attrs(
    exp: Path, rows: Sequence[Mapping[str, Any]], objectives: Objectives
) -> int:
    """An older study's finished trials get what a search writes today: the model's costs as
    user attributes, and the constraint values as the list optuna-dashboard reads in place of
    Optuna 5's `constraints:<name>` keys. Returns how many trials changed."""
    handle = open_study(exp)
    if handle is None:
        return 0
    latest, names = handle.latest(), [name for name, _ in objectives.constraints]
    changed = 0
    for row in rows:
        trial = latest.get(str(row["trial_id"]))
        if trial is None or trial.state.name == "RUNNING":
            continue
        user = {k: v for k, v in cost_attrs(row).items() if k not in trial.user_attrs}
        named = [f"{DASHBOARD_CONSTRAINTS}:{name}" for name in names]
        system: dict[str, Any] = {}
        if names and all(key in trial.system_attrs for key in named):
            system = {DASHBOARD_CONSTRAINTS: [trial.system_attrs[key] for key in named]}
        if user or system:
            storage_id = handle.storage_id(trial.number)
            write_finished_attrs(
                handle.storage, storage_id, user, system, tuple(named) if system else ()
            )
            changed += 1
    return changed
