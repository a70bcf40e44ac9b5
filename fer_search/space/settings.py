"""The `experiment:` block of a space and the CLI flags that override it, checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any

from fer_search.config import SCHEDULERS, coerce
from fer_search.errors import UserError, did_you_mean
from fer_search.objectives import parse_pick
from fer_search.space.mutations import check_pbt, perturbation_interval
from fer_search.space.schema import METRICS, ExperimentSettings, SearchSpace
from fer_search.space.values import number

__all__ = ["apply_overrides", "build_settings", "check_pick"]

# Field types are strings ("int", "float", ...): schema.py uses postponed annotations.
EXPERIMENT_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(ExperimentSettings)}
# The smallest value each numeric setting takes.
AT_LEAST: dict[str, int] = {
    "epochs": 1,
    "grace_period": 1,
    "reduction_factor": 2,
    "num_samples": 1,
    "top_k": 1,
    "max_concurrent": 0,
    "time_budget": 0,
    "refit_budget": 0,
    "refit_top_k": 1,
    "checkpoint_every": 1,
    "max_failures": 0,
    "min_samples_required": 1,
    "perturbation_interval": 0,
}
# Choices: setting -> what it may be.
CHOICES: dict[str, Any] = {"metric": METRICS, "scheduler": SCHEDULERS}
Label = Callable[[str], str]


def build_settings(
    values: Mapping[str, Any], label: Label, *, given: Iterable[Any] = ()
) -> ExperimentSettings:
    """Coerce and check experiment settings; `label(key)` says where a bad value came from.

    `values` holds every setting; `given` names those the user wrote (checked for typos)."""
    for key in given:
        if key not in EXPERIMENT_TYPES:
            raise UserError(
                f"{label(str(key))}: unknown experiment setting {key!r}"
                f"{did_you_mean(key, EXPERIMENT_TYPES)}"
            )
    exp = ExperimentSettings(**{key: _coerce(key, values[key], label) for key in EXPERIMENT_TYPES})
    _check(exp, label)
    return exp


def _coerce(key: str, value: Any, label: Label) -> Any:
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise UserError(
                f"{label(key)}={value!r} is not one of {', '.join(CHOICES[key])}"
                f"{did_you_mean(str(value), CHOICES[key])}"
            )
        return value
    if key == "pick":
        if not isinstance(value, str):
            raise UserError(f"{label(key)}={value!r} must be text such as 'latency_ms<=2'")
        return value.strip()
    if EXPERIMENT_TYPES[key] == "bool":
        try:
            return coerce(key, value, "bool")
        except UserError:
            raise UserError(f"{label(key)}={value!r} is not true or false") from None
    if key == "gpus_per_trial":
        return None if value is None else number(value, "float", label(key))
    return number(value, "int" if EXPERIMENT_TYPES[key] == "int" else "float", label(key))


def _check(exp: ExperimentSettings, label: Label) -> None:
    """Ranges, and the settings that constrain each other."""
    for key, low in AT_LEAST.items():
        if getattr(exp, key) < low:
            raise UserError(f"{label(key)} must be >= {low}, got {getattr(exp, key)!r}")
    if exp.grace_period > exp.epochs:
        raise UserError(
            f"{label('grace_period')}={exp.grace_period} must be <= epochs={exp.epochs}"
        )
    if exp.scheduler in ("hyperband", "pbt") and exp.max_concurrent:
        what = "a bracket never fills" if exp.scheduler == "hyperband" else "PBT's population"
        raise UserError(
            f"{label('max_concurrent')}={exp.max_concurrent} cannot limit {exp.scheduler} (Tune "
            f"would count its paused trials and {what} never fills); leave it 0: the resources "
            f"per trial bound the trials at once"
        )
    if exp.scheduler == "pbt":
        _check_pbt(exp, label)
    if exp.rung_anneal and exp.scheduler != "asha":
        raise UserError(
            f"{label('rung_anneal')}=true anneals each trial's learning rate at ASHA's rungs; "
            f"scheduler {exp.scheduler!r} has none (use asha)"
        )
    if exp.time_budget and exp.refit_budget >= exp.time_budget:
        raise UserError(
            f"{label('refit_budget')}={exp.refit_budget:g} must be less than "
            f"time_budget={exp.time_budget:g} (it is the part of it kept for the refit)"
        )
    if not exp.cpus_per_trial > 0:
        raise UserError(f"{label('cpus_per_trial')} must be > 0, got {exp.cpus_per_trial!r}")
    gpus = exp.gpus_per_trial
    if gpus is not None and not 0 < gpus <= 1:
        raise UserError(
            f"{label('gpus_per_trial')} must be in (0, 1] (a trial trains on one GPU), "
            f"got {gpus!r} (leave it out to let the search decide)"
        )


def _check_pbt(exp: ExperimentSettings, label: Label) -> None:
    """PBT perturbs a trial between epochs: it needs a point before the last epoch."""
    interval = perturbation_interval(exp.epochs, exp.perturbation_interval)
    if exp.epochs < 2:
        raise UserError(
            f"{label('epochs')}={exp.epochs} leaves PBT no epoch to perturb at; use >= 2"
        )
    if interval >= exp.epochs:
        raise UserError(
            f"{label('perturbation_interval')}={interval} must be < epochs={exp.epochs} (PBT "
            f"perturbs a trial every this many epochs, before its last)"
        )


def experiment_from_file(raw: Any, source: str) -> ExperimentSettings:
    """A space file's `experiment:` mapping (absent or null: all defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise UserError(f"{source}: experiment must be a mapping, got {raw!r}")
    return build_settings(
        {**dataclasses.asdict(ExperimentSettings()), **raw},
        lambda key: f"{source}: experiment.{key}",
        given=raw.keys(),
    )


def apply_overrides(space: SearchSpace, **overrides: Any) -> SearchSpace:
    """ExperimentSettings settings from CLI flags; None keeps the file's value.

    Lowering `epochs` below the file's grace_period (a quick `--epochs 1` run) lowers the
    grace period with it unless --grace-period is given too.
    """
    unknown = [key for key in overrides if key not in EXPERIMENT_TYPES]
    if unknown:
        raise TypeError(f"apply_overrides: unknown experiment setting(s) {unknown}")
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return space
    values = {**dataclasses.asdict(space.experiment), **given}
    if "epochs" in given and "grace_period" not in given:
        epochs = number(given["epochs"], "int", "--epochs")
        values["grace_period"] = min(space.experiment.grace_period, max(epochs, 1))

    def label(key: str) -> str:
        if key in given:
            return "--" + key.replace("_", "-")
        return f"{space.source}: experiment.{key}"

    space = dataclasses.replace(space, experiment=build_settings(values, label))
    check_pick(space, label("pick"))
    check_pbt(space, label("scheduler"))
    return space


def check_pick(space: SearchSpace, label: str) -> None:
    """`pick` names objectives of a multi-objective search (it chooses among its Pareto
    front), whose first objective is the search metric."""
    metric = space.experiment.metric
    if space.objectives and space.objectives[0].metric != metric:
        raise UserError(
            f"metric={metric!r} must be the first of {space.source}'s objectives "
            f"({space.objectives[0].metric!r}): the scheduler stops trials on it"
        )
    pick = space.experiment.pick
    if pick and not space.objectives:
        raise UserError(
            f"{label}={pick!r} chooses among the Pareto-optimal trials of a multi-objective "
            f"search; {space.source} has no `objectives:`"
        )
    parse_pick(pick, label, space.pick_metrics())
