"""What fer-search needs of Optuna's and optuna-dashboard's private formats, in one place.

Checked on Optuna 5.1 and optuna-dashboard 0.21 (tests/test_optuna_compat.py fails when these
change):

- Constraint values are written as the system attribute `constraints`, a list in the space's
  order (<= 0 feasible): the form Optuna 3 wrote, which optuna-dashboard 0.21 reads to mark a
  trial infeasible and Optuna 5 still reads (as constraints named "0", "1", ...). Optuna 5's
  Trial.set_constraint writes `constraints:<name>` instead, which the dashboard does not read;
  writing both would give Optuna's samplers every constraint twice.
- Optuna has no public way to give a trial the end time it really had: `study.tell` stamps
  the moment it is called. A trial closed after the fact (a time budget's cut, an interrupted
  search) gets its own end time through `set_trial_end`, an update of the RDB storage's
  `trials.datetime_complete` column.
- Nor can a finished trial take attributes: `report --upgrade` gives an older study's trials
  the cost attributes and the constraint list they lacked through `write_finished_attrs`, rows
  of the RDB storage's `trial_user_attributes` / `trial_system_attributes` (key, JSON value);
  a study attribute of an old name goes through `drop_study_attrs` (Optuna has no delete).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = [
    "DASHBOARD_CONSTRAINTS",
    "drop_study_attrs",
    "set_constraints",
    "set_dashboard_constraints",
    "set_trial_end",
    "write_finished_attrs",
]

DASHBOARD_CONSTRAINTS = "constraints"  # optuna-dashboard 0.21's system attribute


def set_dashboard_constraints(storage: Any, trial_id: int, values: list[float]) -> None:
    """Constraint values (in the space's order) where Optuna and optuna-dashboard read them."""
    if values:
        storage.set_trial_system_attr(trial_id, DASHBOARD_CONSTRAINTS, [float(v) for v in values])


def set_constraints(trial: Any, values: dict[str, float]) -> None:
    """A RUNNING optuna.trial.Trial's constraint values (its storage id is private)."""
    set_dashboard_constraints(trial.storage, trial._trial_id, list(values.values()))


def set_trial_end(storage: Any, trial_id: int, end: float) -> None:
    """Set a finished trial's `datetime_complete` (an RDBStorage: optuna.db) to `end`, a Unix
    time; the column holds naive UTC, as Optuna 5 writes it."""
    from sqlalchemy import text

    utc = dt.datetime.fromtimestamp(end, dt.UTC).replace(tzinfo=None)
    with storage.engine.begin() as connection:
        connection.execute(
            text("UPDATE trials SET datetime_complete = :end WHERE trial_id = :id"),
            {"end": utc, "id": trial_id},
        )


def write_finished_attrs(
    storage: Any,
    trial_id: int,
    user: dict[str, Any] | None = None,
    system: dict[str, Any] | None = None,
    drop_system: tuple[str, ...] = (),
) -> None:
    """User and system attributes on a finished trial (set or replaced), and system attributes
    dropped by key; Optuna's API refuses a finished trial (an RDBStorage: optuna.db)."""
    import json

    from sqlalchemy import text

    tables = (("trial_user_attributes", user or {}), ("trial_system_attributes", system or {}))
    with storage.engine.begin() as connection:
        drop = [("trial_system_attributes", key) for key in drop_system]
        for table, key in [*drop, *((t, k) for t, attrs in tables for k in attrs)]:
            connection.execute(
                text(f"DELETE FROM {table} WHERE trial_id = :id AND key = :key"),
                {"id": trial_id, "key": key},
            )
        for table, attrs in tables:
            for key, value in attrs.items():
                connection.execute(
                    text(f"INSERT INTO {table} (trial_id, key, value_json) VALUES (:id, :key, :v)"),
                    {"id": trial_id, "key": key, "v": json.dumps(value)},
                )


def drop_study_attrs(storage: Any, study_name: str, keys: tuple[str, ...]) -> None:
    """Remove the user attributes `keys` of a study in an RDBStorage (optuna.db)."""
    from sqlalchemy import text

    study_id = storage.get_study_id_from_name(study_name)
    with storage.engine.begin() as connection:
        for key in keys:
            connection.execute(
                text("DELETE FROM study_user_attributes WHERE study_id = :id AND key = :key"),
                {"id": study_id, "key": key},
            )
