"""Bringing an experiment an earlier fer-search wrote up to date for monitoring (`report
--upgrade`): no trial left RUNNING in its Optuna study, TensorBoard runs rebuilt from the
trials' files."""

from __future__ import annotations

import json
from pathlib import Path

from fer_search.config import recorded_scheduler
from fer_search.errors import UserError
from fer_search.space import load_space
from fer_search.tuning.experiment_dir import RUN_FILE
from fer_search.tuning.refit import refit_run_names
from fer_search.tuning.results import read_leaderboard, write_leaderboard
from fer_search.tuning.study import Objectives, close_study, open_study, record_outcome
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
    `stopped_by`), the metric named, the refits and final figures as study attributes, and
    TensorBoard runs rebuilt from the trials' files."""

    exp = Path(path).expanduser().resolve()
    missing = [f for f in (RUN_FILE, "leaderboard.csv", "space.yaml") if not (exp / f).is_file()]
    if missing:
        raise UserError(f"{path}: not a finished fer-search experiment (no {', '.join(missing)})")
    rows = read_leaderboard(exp)
    space = load_space(str(exp / "space.yaml"))
    record = json.loads((exp / RUN_FILE).read_text())
    counts = close_study(
        exp, rows, space.experiment.metric, recorded_scheduler(record), Objectives.of(space)
    )
    write_leaderboard(rows, exp)
    record = json.loads((exp / RUN_FILE).read_text())
    final = exp / "final.json"
    record_outcome(
        exp, rows, record.get("refit"), json.loads(final.read_text()) if final.is_file() else None
    )
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
    write_experiment_config(root, space, refit=bool(refit))
    search = [row for row in rows if not is_refit_id(row["trial_id"])]
    refits = [row for row in rows if is_refit_id(row["trial_id"])]
    names = {"search": RunNames(space)}
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
                    write_scalars(writer, result)
                writer.close()
        finish_runs(root, group_rows, names[group])
    return len(search) + (len(refits) if "refit" in names else 0)
