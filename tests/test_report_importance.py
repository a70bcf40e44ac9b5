"""The report's parameter importances against optuna.db (no Ray): which trials they rest on,
what optuna-dashboard shows beside them, one per objective, and a sentence where there are
too few trials."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from fer_search.config import WARM_START_ATTR
from fer_search.report.importance import REFIT_OF_ATTR, importance_facts

NAME = "imp"
SPACE = {
    "lr": FloatDistribution(1e-3, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "width": CategoricalDistribution([16, 32]),
}
NO_BOARD = pd.DataFrame({"trial_id": pd.Series(dtype=str)})


def sample(i: int) -> dict:
    return {"lr": 10 ** (-3 + (i % 5) / 2.5), "dropout": (i % 3) / 6, "width": (16, 32)[i % 2]}


def accuracy(params: dict) -> float:
    return 0.7 - 0.08 * abs(math.log10(params["lr"]) + 2) - 0.1 * params["dropout"]


def study_of(exp: Path, directions: list[str]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exp.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        storage=f"sqlite:///{exp / 'optuna.db'}", study_name=NAME, directions=directions
    )


def add(study: optuna.Study, i: int, state: TrialState, values=None, **attrs) -> None:
    trial = study.ask(SPACE)
    for key, value in {"ray_trial_id": f"t{i}", **attrs}.items():
        trial.set_user_attr(key, value)
    if state == TrialState.PRUNED and values is not None:
        trial.report(values, 1)  # Optuna keeps a pruned trial's last reported value
        values = None
    study.tell(trial, values, state=state)


def searched_study(exp: Path, complete: int, pruned: int) -> optuna.Study:
    study = study_of(exp, ["maximize"])
    for i in range(complete + pruned):
        state = TrialState.COMPLETE if i < complete else TrialState.PRUNED
        study.enqueue_trial(sample(i))
        add(study, i, state, accuracy(sample(i)) - (0.1 if state == TrialState.PRUNED else 0))
    return study


def test_refits_and_copied_trials_are_no_search_samples_but_count_in_the_dashboards_view(
    tmp_path,
):
    study = searched_study(tmp_path, complete=2, pruned=7)
    study.enqueue_trial(sample(0))
    add(study, 9, TrialState.COMPLETE, 0.69, **{REFIT_OF_ATTR: 0, "ray_trial_id": "refit"})
    study.enqueue_trial(sample(1))
    add(study, 10, TrialState.COMPLETE, 0.66, **{REFIT_OF_ATTR: 1, "ray_trial_id": "refit2"})
    study.enqueue_trial(sample(4))
    add(study, 11, TrialState.COMPLETE, 0.5, **{WARM_START_ATTR: "old#3"})
    found = importance_facts(tmp_path / "optuna.db", NAME, NO_BOARD, [], {"t8"})
    (search,) = found["search"]
    assert search["trial_numbers"] == list(range(9))  # neither refit nor copy
    assert (search["completed"], search["pruned"], search["time_budget"]) == (2, 7, 1)
    assert (search["refits"], search["warm_start"]) == (2, 1)  # left out, and said so
    assert set(search["values"]) == {"lr", "dropout", "width"}
    (dashboard,) = found["dashboard"]  # every COMPLETE trial, as optuna-dashboard reads them
    assert dashboard["trial_numbers"] == [0, 1, 9, 10, 11]
    assert (dashboard["refits"], dashboard["warm_start"]) == (2, 1)
    assert dashboard["values"] and "too few" in dashboard["note"]


def test_the_dashboards_figure_is_what_optuna_dashboard_shows(tmp_path):
    # optuna-dashboard's own importance function (checked on optuna-dashboard 0.21.0): when it
    # moves or changes, report/importance.py's dashboard_importance must follow it
    private = pytest.importorskip("optuna_dashboard._importance")
    from optuna_dashboard._inmemory_cache import InMemoryCache

    study = searched_study(tmp_path, complete=9, pruned=2)
    (dashboard,) = importance_facts(tmp_path / "optuna.db", NAME, NO_BOARD, [], set())["dashboard"]
    shown = private.get_param_importance_from_trials_cache(
        InMemoryCache(), study._storage, study._study_id, 0, study.trials
    )
    assert dashboard["values"] == pytest.approx({i["name"]: i["importance"] for i in shown})
    assert dashboard["note"] is None  # 9 COMPLETE trials: enough to read


def multi_objective_study(exp: Path) -> pd.DataFrame:
    """10 searched trials, the last two PRUNED (without values, as Optuna keeps them in a
    multi-objective study); returns their leaderboard rows."""
    study = study_of(exp, ["maximize", "minimize"])
    rows = []
    for i in range(10):
        params = sample(i)
        acc, latency = accuracy(params), 0.4 + params["width"] / 16
        pruned = i >= 8
        study.enqueue_trial(params)
        add(study, i, TrialState.PRUNED if pruned else TrialState.COMPLETE,
            None if pruned else [acc, latency])  # fmt: skip
        rows.append({"trial_id": f"t{i}", "val_acc": acc, "latency_ms": latency})
    return pd.DataFrame(rows)


def test_a_multi_objective_study_gets_one_importance_per_objective(tmp_path):
    board = multi_objective_study(tmp_path)
    found = importance_facts(tmp_path / "optuna.db", NAME, board, ["val_acc", "latency_ms"], set())
    acc, latency = found["search"]
    assert (acc["objective"], latency["objective"]) == ("val_acc", "latency_ms")
    for importance in (acc, latency):  # the pruned ones from their leaderboard rows
        assert (importance["completed"], importance["pruned"]) == (8, 2)
        assert importance["values"] and importance["note"] is None
    # latency follows the width alone, and fANOVA says so
    assert max(latency["values"], key=latency["values"].get) == "width"
    assert [d["objective"] for d in found["dashboard"]] == ["val_acc", "latency_ms"]
    assert all(len(d["trial_numbers"]) == 8 and d["values"] for d in found["dashboard"])


def test_no_or_a_broken_optuna_db_is_a_sentence(tmp_path):
    missing = importance_facts(tmp_path / "optuna.db", NAME, NO_BOARD, [], set())
    assert missing == {"search": [], "dashboard": [], "note": "no optuna.db in the results "
                       "directory"}  # fmt: skip
    (tmp_path / "optuna.db").write_text("not a database")
    broken = importance_facts(tmp_path / "optuna.db", NAME, NO_BOARD, [], set())
    assert broken["search"] == [] and broken["note"].startswith("optuna.db could not be read (")
