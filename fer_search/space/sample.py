"""The Optuna side: suggest a space's active parameters, fold `setting@tag` names back.

Optuna is imported only for type checking: the caller hands in the trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fer_search.config import TRAIN_FIELDS
from fer_search.space.schema import Param, SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["define_by_run", "sample_config", "train_values"]


def _active(param: Param, values: Mapping[str, Any]) -> bool:
    return all(ref in values and values[ref] in allowed for ref, allowed in param.when)


def _suggest(p: Param, trial: optuna.trial.Trial) -> Any:
    if p.kind == "categorical":
        return trial.suggest_categorical(p.name, list(p.choices))
    assert p.low is not None and p.high is not None
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.kind == "loguniform")


def _walk(space: SearchSpace, trial: optuna.trial.Trial) -> tuple[dict[str, Any], dict[str, Any]]:
    """Suggest every active parameter in order; return (all active values, fixed ones)."""
    values: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    for p in space.params:
        if not _active(p, values):
            continue
        if p.kind == "fixed":
            values[p.name] = constants[p.name] = p.value
        else:
            values[p.name] = _suggest(p, trial)
    return values, constants


def define_by_run(space: SearchSpace) -> Callable[[optuna.trial.Trial], dict[str, Any]]:
    """An Optuna define-by-run function for Ray's OptunaSearch(space=...).

    It suggests the active parameters and returns the fixed ones, which OptunaSearch merges
    into the trial config. Keys are parameter names; pass the config through `train_values`.
    """

    def suggest(trial: optuna.trial.Trial) -> dict[str, Any]:
        return _walk(space, trial)[1]

    return suggest


def sample_config(space: SearchSpace, trial: optuna.trial.Trial) -> dict[str, Any]:
    """All active values of one trial (sampled and fixed), keyed by TrainConfig setting."""
    return train_values(_walk(space, trial)[0])


def train_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config as Ray/Optuna name it -> TrainConfig values ('lr@sgd' becomes 'lr').

    Keys that are not `setting@tag` pass through unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        setting, at, _ = key.partition("@") if isinstance(key, str) else (key, "", "")
        out[setting if at and setting in TRAIN_FIELDS else key] = value
    return out
