"""Parameter importances from optuna.db, one per objective, over trials the report names:

- the report's: fANOVA (seeded) over the searched trials, COMPLETE and PRUNED (a pruned trial
  at the value Optuna keeps for it, or, in a multi-objective study where Optuna keeps none, at
  the one its leaderboard row records); the trials `--warm-start` copied and the refits (user
  attribute `refit_of`) are left out: they are not samples of this search;
- optuna-dashboard's: PED-ANOVA over the study's COMPLETE trials, whatever they are, as its
  "Hyperparameter Importance" computes it (optuna_dashboard._importance, checked on
  optuna-dashboard 0.21.0 and Optuna 5.1), so a reader can tell why the two differ.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pandas as pd

from fer_search.config import METRIC, WARM_START_ATTR, is_refit_id
from fer_search.report.text import plural

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

__all__ = [
    "MIN_IMPORTANCE_TRIALS",
    "REFIT_OF_ATTR",
    "Importance",
    "ImportanceFacts",
    "importance_facts",
    "optuna_importances",
]

logger = logging.getLogger(__name__)

MIN_IMPORTANCE_TRIALS = 8  # below this, either estimate fits noise
# the user attribute of a refit recorded as an Optuna trial: the number of the trial it retrains
REFIT_OF_ATTR = "refit_of"
DASHBOARD_MIN_TRIALS = 2  # optuna-dashboard shows no importance below 2 COMPLETE trials


class Importance(TypedDict):
    """One objective's importances (values: parameter -> share, largest first; None and `note`
    when there are none) and the trials they rest on, by Optuna number and how they ended."""

    objective: str
    method: str  # "fANOVA" (the report's) or "PED-ANOVA" (optuna-dashboard's)
    values: dict[str, float] | None
    note: str | None  # why there are no values, or why they say little
    trial_numbers: list[int]
    completed: int
    pruned: int
    time_budget: int  # of the pruned ones, those the search's time budget stopped
    refits: int  # fANOVA: refits left out; PED-ANOVA: refits among the COMPLETE trials
    warm_start: int  # likewise, the trials --warm-start copied


class ImportanceFacts(TypedDict):
    """report.json's importances: the report's per objective and optuna-dashboard's; `note`
    when optuna.db could not be read at all (then both lists are empty)."""

    search: list[Importance]
    dashboard: list[Importance]
    note: str | None


def importance_facts(
    db: Path,
    study_name: str,
    board: pd.DataFrame,
    objectives: list[str],
    time_budget_ids: set[str],
) -> ImportanceFacts:
    """The importances of `objectives` (space.yaml's names, METRIC first; [] for the study's
    own) from optuna.db; `board` (leaderboard.csv) gives a pruned trial's values where Optuna
    kept none; `time_budget_ids`: the Tune ids of the trials the time budget stopped."""
    if not db.is_file():
        return {"search": [], "dashboard": [], "note": "no optuna.db in the results directory"}
    try:
        study = load_study(db, study_name)
    except Exception as exc:  # a broken or foreign database: the rest of the report matters
        logger.warning("cannot read %s: %r", db, exc)
        return {"search": [], "dashboard": [],
                "note": f"optuna.db could not be read ({type(exc).__name__})"}  # fmt: skip
    names = objective_names(study, objectives)
    search = [
        search_importance(study, i, name, board, time_budget_ids) for i, name in enumerate(names)
    ]
    dashboard = [dashboard_importance(study, i, name) for i, name in enumerate(names)]
    return {"search": search, "dashboard": dashboard, "note": None}


def load_study(db: Path, study_name: str) -> Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db.resolve()}"
    names = optuna.get_all_study_names(storage)
    if study_name not in names and len(names) == 1:
        study_name = names[0]  # renamed experiment directory: the only study is the one
    return optuna.load_study(study_name=study_name, storage=storage)


def objective_names(study: Study, objectives: list[str]) -> list[str]:
    if len(objectives) == len(study.directions):
        return objectives
    named = study.metric_names
    if named and len(named) == len(study.directions):
        return list(named)
    return [METRIC] if len(study.directions) == 1 else [f"objective {i}" for i in
                                                        range(len(study.directions))]  # fmt: skip


def is_refit(trial: FrozenTrial) -> bool:
    return REFIT_OF_ATTR in trial.user_attrs or is_refit_id(trial.user_attrs.get("ray_trial_id"))


def is_copied(trial: FrozenTrial) -> bool:
    return WARM_START_ATTR in trial.user_attrs


def search_importance(
    study: Study, index: int, name: str, board: pd.DataFrame, time_budget_ids: set[str]
) -> Importance:
    """fANOVA of objective `index` over the searched COMPLETE and PRUNED trials with a value."""
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    searched = [t for t in finished if not is_refit(t) and not is_copied(t)]
    recorded = board.set_index("trial_id")[name] if name in board else pd.Series(dtype=float)
    scored = []
    for trial in searched:
        value = trial_value(trial, index, recorded)
        if value is not None:
            scored.append((trial, value))
    pruned = [t for t, _ in scored if t.state == TrialState.PRUNED]
    result = Importance(
        objective=name,
        method="fANOVA",
        values=None,
        note=None,
        trial_numbers=[t.number for t, _ in scored],
        completed=len(scored) - len(pruned),
        pruned=len(pruned),
        time_budget=sum(t.user_attrs.get("ray_trial_id") in time_budget_ids for t in pruned),
        refits=sum(is_refit(t) for t in finished),
        warm_start=sum(is_copied(t) for t in finished),
    )
    if len(scored) < MIN_IMPORTANCE_TRIALS:
        result["note"] = (
            f"not computed: {plural(len(scored), 'searched trial has', 'searched trials have')} "
            f"a {name}, fewer than the {MIN_IMPORTANCE_TRIALS} an estimate needs to say more "
            "than noise"
        )
        return result
    try:
        result["values"] = fanova(scored)
    except Exception as exc:  # optuna raises many kinds; the rest of the report still matters
        logger.warning("fANOVA of %s failed: %r", name, exc)
        result["note"] = f"Optuna's fANOVA failed on these trials ({type(exc).__name__})"
    return result


def trial_value(trial: FrozenTrial, index: int, recorded: pd.Series) -> float | None:
    """Objective `index` of a trial: Optuna's value, else (a pruned trial of a multi-objective
    study, which Optuna keeps without values) its leaderboard row's; None without either."""
    values = trial.values
    if values is not None and index < len(values) and math.isfinite(values[index]):
        return float(values[index])
    found = recorded.get(trial.user_attrs.get("ray_trial_id"))
    if isinstance(found, pd.Series):  # a trial id twice: the first row
        found = found.iloc[0]
    try:
        number = float(found)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fanova(scored: list[tuple[FrozenTrial, float]]) -> dict[str, float]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import create_trial

    pool = optuna.create_study(direction="maximize")  # fANOVA decomposes variance: no direction
    pool.add_trials(
        [create_trial(params=t.params, distributions=t.distributions, value=v)
         for t, v in scored]
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A fixed seed keeps the forest, and so the numbers, the same on every rebuild.
        values = get_param_importances(pool, evaluator=FanovaImportanceEvaluator(seed=0))
    return ranked(values)


def dashboard_importance(study: Study, index: int, name: str) -> Importance:
    """PED-ANOVA of objective `index` over every COMPLETE trial, as optuna-dashboard computes
    it: the refits and copied trials in the study count like any other."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    result = Importance(
        objective=name,
        method="PED-ANOVA",
        values=None,
        note=None,
        trial_numbers=[t.number for t in complete],
        completed=len(complete),
        pruned=0,
        time_budget=0,
        refits=sum(is_refit(t) for t in complete),
        warm_start=sum(is_copied(t) for t in complete),
    )
    if len(complete) < DASHBOARD_MIN_TRIALS:
        result["note"] = (
            f"optuna-dashboard shows none: it needs {DASHBOARD_MIN_TRIALS} COMPLETE trials"
        )
        return result
    sign = -1.0 if study.directions[index] == StudyDirection.MAXIMIZE else 1.0

    def target(trial: FrozenTrial) -> float:
        return sign * trial.values[index]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = get_param_importances(
                study, target=target, evaluator=PedAnovaImportanceEvaluator()
            )
    except Exception as exc:
        logger.warning("PED-ANOVA of %s failed: %r", name, exc)
        result["note"] = f"could not be recomputed here ({type(exc).__name__})"
        return result
    result["values"] = ranked(values)
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        result["note"] = "too few to say more than noise"
    return result


def ranked(values: dict[str, Any]) -> dict[str, float]:
    pairs = sorted(((k, float(v)) for k, v in values.items()), key=lambda kv: (-kv[1], kv[0]))
    return dict(pairs)


def optuna_importances(db: Path, study_name: str) -> tuple[dict[str, float], int]:
    """The report's fANOVA of the study's (first) objective and how many trials it rests on;
    {} below MIN_IMPORTANCE_TRIALS."""
    study = load_study(db, study_name)
    board = pd.DataFrame({"trial_id": pd.Series(dtype=str)})
    found = search_importance(study, 0, METRIC, board, set())
    return found["values"] or {}, len(found["trial_numbers"])
