"""YAML search space -> validated objects -> Optuna define-by-run.

A space file has `name`, `description`, `experiment` (the search's settings, which CLI flags
override) and `params`, an ordered mapping of TrainConfig settings to sample:

    params:
      model: densenet169                                 # a bare scalar is fixed
      optimizer: {type: categorical, choices: [sgd, adamw]}
      lr@sgd: {type: loguniform, low: 0.01, high: 0.2, when: {optimizer: sgd}}
      lr@adamw: {type: loguniform, low: 1e-4, high: 3e-3, when: {optimizer: adamw}}

`when: {param: value-or-list}` makes a parameter conditional on an earlier one: it is active
only if every named parameter is active and took one of the listed values; an inactive
parameter leaves the TrainConfig default in place. `setting@tag` is another way to set
`setting` (Optuna sees a distinct parameter, so each keeps one distribution, as Optuna wants);
parameters that set the same setting must exclude each other through their `when`.
Ray's OptunaSearch puts the Optuna names into the trial config; `train_values` folds
`lr@sgd` back into `lr`.

Everything a user can get wrong raises a one-line UserError that names the file, the key and
the bad value. No torch, no ray here: optuna is needed only to sample.

Modules: schema (the dataclasses), files (shipped spaces, paths, safe YAML), parse (params,
`when`, points_to_evaluate), experiment (the `experiment:` block and CLI overrides), values
(numbers, paths, TrainConfig checks), sample (Optuna define-by-run). docs/space.md is the
file format's reference.
"""

from fer_search.space.files import load_space, resolve_space_path, shipped_dir, shipped_spaces
from fer_search.space.parse import load_space_dict
from fer_search.space.sample import define_by_run, sample_config, train_values
from fer_search.space.schema import KINDS, METRICS, ExperimentSettings, Param, SearchSpace
from fer_search.space.settings import apply_overrides

__all__ = [
    "KINDS",
    "METRICS",
    "ExperimentSettings",
    "Param",
    "SearchSpace",
    "apply_overrides",
    "define_by_run",
    "load_space",
    "load_space_dict",
    "resolve_space_path",
    "sample_config",
    "shipped_dir",
    "shipped_spaces",
    "train_values",
]
