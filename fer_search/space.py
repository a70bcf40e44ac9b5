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
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fer_search.config import MODEL_NAMES, TRAIN_FIELDS, TrainConfig, coerce
from fer_search.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import optuna

__all__ = [
    "KINDS",
    "METRICS",
    "Experiment",
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

METRICS: dict[str, str] = {"val_acc": "max", "val_f1": "max", "val_loss": "min"}
KINDS: tuple[str, ...] = ("loguniform", "uniform", "int", "categorical", "fixed")
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "loguniform": ("low", "high"),
    "uniform": ("low", "high", "step"),
    "int": ("low", "high", "step", "log"),
    "categorical": ("choices",),
    "fixed": ("value",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "loguniform": ("low", "high"),
    "uniform": ("low", "high"),
    "int": ("low", "high"),
    "categorical": ("choices",),
    "fixed": ("value",),
}
_TOP_KEYS = ("name", "description", "experiment", "params", "points_to_evaluate")
_EXPERIMENT_ONLY = ("epochs", "seed")  # TrainConfig fields the experiment owns
# Field types are strings ("int", "float", "str", "bool"): config.py uses postponed annotations.
_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(TrainConfig)}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TAG_RE = re.compile(r"[A-Za-z0-9_]+")
_PATH_SETTINGS = ("weights_path",)  # TrainConfig fields that name a file


@dataclass(frozen=True)
class Param:
    """One entry of `params`: a TrainConfig setting, fixed or sampled, maybe conditional."""

    name: str
    kind: str  # loguniform | uniform | int | categorical | fixed
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()
    value: Any = None
    when: tuple[tuple[str, tuple], ...] = ()  # ((param, allowed values), ...)

    @property
    def setting(self) -> str:
        """The TrainConfig field this parameter sets ('lr' for 'lr@sgd')."""
        return self.name.partition("@")[0]

    def to_spec(self) -> Any:
        """The YAML form of this parameter (a mapping; load_space_dict reads it back)."""
        spec: dict[str, Any] = {"type": self.kind}
        if self.kind == "fixed":
            spec["value"] = self.value
        elif self.kind == "categorical":
            spec["choices"] = list(self.choices)
        else:
            spec["low"], spec["high"] = self.low, self.high
            if self.step is not None:
                spec["step"] = self.step
            if self.log and self.kind == "int":
                spec["log"] = True
        if self.when:
            spec["when"] = {ref: list(allowed) for ref, allowed in self.when}
        return spec


@dataclass
class Experiment:
    """How the search runs: ASHA, trial count, resources. CLI flags override these."""

    epochs: int = 10  # each trial's epochs = ASHA max_t
    grace_period: int = 1  # epochs before ASHA may stop a trial
    reduction_factor: int = 3
    num_samples: int = 10
    seed: int = 0
    metric: str = "val_acc"
    max_concurrent: int = 0  # 0 = as many as resources allow
    time_budget: float = 0.0  # seconds; 0 = none
    gpus_per_trial: float | None = None  # None = the search decides (1 with CUDA, else 0)
    cpus_per_trial: float = 1.0
    top_k: int = 3  # ensemble size for the final evaluation
    # seconds of time_budget kept to train the best configuration again for as many epochs as
    # fit (a refit); without a time_budget, the refit gets this long after the search
    refit_budget: float = 0.0
    # how many of the best configurations the refit trains again, at the same time, sharing what
    # the search's trials used (an ensemble of equals for the final evaluation)
    refit_top_k: int = 1

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    @property
    def search_budget(self) -> float:
        """Seconds the search's trials may take (the time budget less the refit's share)."""
        return self.time_budget - self.refit_budget if self.time_budget else 0.0


@dataclass
class SearchSpace:
    name: str
    description: str
    params: tuple[Param, ...]
    experiment: Experiment
    source: str
    # trials to run first (Optuna's enqueue_trial), e.g. a known-good hand-tuned configuration
    points: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The resolved space as plain data; load_space_dict(space.to_dict()) gives it back."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "experiment": dataclasses.asdict(self.experiment),
            "params": {p.name: p.to_spec() for p in self.params},
        }
        if self.points:
            out["points_to_evaluate"] = [dict(point) for point in self.points]
        return out

    def architectures(self) -> tuple[str, ...]:
        """Model names this space can produce, in the order the space lists them."""
        names: list[str] = []
        default_possible = True
        for p in self.params:
            if p.setting != "model":
                continue
            names.extend(p.choices if p.kind == "categorical" else (p.value,))
            if not p.when:
                default_possible = False
        if default_possible:
            names.append(TrainConfig().model)
        return tuple(dict.fromkeys(names))


# --- locating files -----------------------------------------------------------------------------


def shipped_dir() -> Path:
    """The shipped spaces: <checkout>/search_spaces, or the copy packaged as fer_search/_spaces."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "search_spaces").is_dir():
        return root / "search_spaces"
    return Path(__file__).resolve().parent / "_spaces"


def shipped_spaces() -> list[str]:
    directory = shipped_dir()
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def resolve_space_path(path_or_name: str) -> Path:
    """An existing file is itself; else a shipped space by name ('densenet', 'densenet.yaml')."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(f"search space {str(path_or_name)!r} is a directory, not a YAML file")
    stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    shipped = shipped_spaces()
    if path.parent == Path(".") and stem in shipped:
        return shipped_dir() / f"{stem}.yaml"
    raise UserError(
        f"search space {str(path_or_name)!r} is neither a file nor a shipped space "
        f"(shipped: {', '.join(shipped) or 'none'}){did_you_mean(stem, shipped)}"
    )


# --- loading ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: a second `lr:` would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def load_space(path_or_name: str) -> SearchSpace:
    """Read, parse and validate a space file (or a shipped space by name)."""
    path = resolve_space_path(path_or_name)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read search space: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise UserError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        raise UserError(f"{source}: search space file is empty; it needs at least `params:`")
    return load_space_dict(data, source=source)


def load_space_dict(d: dict, source: str = "<dict>") -> SearchSpace:
    """Validate a parsed space (from YAML or SearchSpace.to_dict)."""
    if not isinstance(d, Mapping):
        raise UserError(
            f"{source}: a search space must be a mapping with `params:`, got {type(d).__name__}"
        )
    for key in d:
        if key not in _TOP_KEYS:
            raise UserError(
                f"{source}: unknown top-level key {key!r} (expected one of "
                f"{', '.join(_TOP_KEYS)}){did_you_mean(key, _TOP_KEYS)}"
            )
    default_name = Path(source).stem if not source.startswith("<") else "space"
    name = d.get("name", default_name)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UserError(
            f"{source}: name={name!r} must be letters, digits, '.', '_' or '-' (it names files)"
        )
    description = d.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise UserError(f"{source}: description must be text, got {description!r}")
    raw_experiment = d.get("experiment")
    if raw_experiment is None:
        raw_experiment = {}
    if not isinstance(raw_experiment, Mapping):
        raise UserError(f"{source}: experiment must be a mapping, got {raw_experiment!r}")
    experiment = _build_experiment(
        {**dataclasses.asdict(Experiment()), **raw_experiment},
        lambda key: f"{source}: experiment.{key}",
        given=raw_experiment.keys(),
    )
    if "params" not in d:
        raise UserError(f"{source}: missing `params:` (the parameters to search)")
    params = _parse_params(d["params"], source)
    points = _parse_points(d.get("points_to_evaluate"), params, source)
    return SearchSpace(name, description.strip(), params, experiment, source, points)


def _parse_points(raw: Any, params: tuple[Param, ...], source: str) -> tuple[dict[str, Any], ...]:
    """`points_to_evaluate`: a list of {param: value} the searcher tries first. Each name must be
    a sampled parameter and each value inside its range or choices; a parameter left out is
    sampled as usual."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(point, Mapping) for point in raw):
        raise UserError(f"{source}: points_to_evaluate must be a list of mappings {{param: value}}")
    sampled = {p.name: p for p in params if p.kind != "fixed"}
    points = []
    for i, point in enumerate(raw):
        checked: dict[str, Any] = {}
        for name, value in point.items():
            label = f"{source}: points_to_evaluate[{i}].{name}"
            if name not in sampled:
                raise UserError(
                    f"{label}: not a sampled parameter of this space"
                    f"{did_you_mean(str(name), sampled)}"
                )
            p = sampled[name]
            if p.kind == "categorical":
                if value not in p.choices:
                    choices = ", ".join(map(str, p.choices))
                    raise UserError(f"{label}={value!r} is not one of {choices}")
            else:
                value = _number(value, "int" if p.kind == "int" else "float", label)
                assert p.low is not None and p.high is not None
                if not p.low <= value <= p.high:
                    raise UserError(f"{label}={value!r} is outside [{p.low}, {p.high}]")
            checked[str(name)] = value
        points.append(checked)
    return tuple(points)


# --- experiment settings ------------------------------------------------------------------------

_EXPERIMENT_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(Experiment)}


def _build_experiment(
    values: Mapping[str, Any], label: Callable[[str], str], *, given: Any = ()
) -> Experiment:
    """Coerce and check experiment settings; `label(key)` says where a bad value came from."""
    for key in given:
        if key not in _EXPERIMENT_TYPES:
            raise UserError(
                f"{label(str(key))}: unknown experiment setting {key!r}"
                f"{did_you_mean(key, _EXPERIMENT_TYPES)}"
            )
    kw: dict[str, Any] = {}
    for key, type_name in _EXPERIMENT_TYPES.items():
        value = values[key]
        if key == "metric":
            if value not in METRICS:
                raise UserError(
                    f"{label(key)}={value!r} is not one of {', '.join(METRICS)}"
                    f"{did_you_mean(value, METRICS)}"
                )
        elif key == "gpus_per_trial":
            value = None if value is None else _number(value, "float", label(key))
        else:
            value = _number(value, "int" if type_name == "int" else "float", label(key))
        kw[key] = value
    exp = Experiment(**kw)
    at_least = {
        "epochs": 1,
        "grace_period": 1,
        "reduction_factor": 2,
        "num_samples": 1,
        "top_k": 1,
        "max_concurrent": 0,
        "time_budget": 0,
        "refit_budget": 0,
        "refit_top_k": 1,
    }
    for key, low in at_least.items():
        if getattr(exp, key) < low:
            raise UserError(f"{label(key)} must be >= {low}, got {getattr(exp, key)!r}")
    if exp.grace_period > exp.epochs:
        raise UserError(
            f"{label('grace_period')}={exp.grace_period} must be <= epochs={exp.epochs}"
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
    return exp


def apply_overrides(space: SearchSpace, **overrides: Any) -> SearchSpace:
    """Experiment settings from CLI flags; None keeps the file's value.

    Lowering `epochs` below the file's grace_period (a quick `--epochs 1` run) lowers the
    grace period with it unless --grace-period is given too.
    """
    unknown = [key for key in overrides if key not in _EXPERIMENT_TYPES]
    if unknown:
        raise TypeError(f"apply_overrides: unknown experiment setting(s) {unknown}")
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return space
    values = {**dataclasses.asdict(space.experiment), **given}
    if "epochs" in given and "grace_period" not in given:
        epochs = _number(given["epochs"], "int", "--epochs")
        values["grace_period"] = min(space.experiment.grace_period, max(epochs, 1))

    def label(key: str) -> str:
        if key in given:
            return "--" + key.replace("_", "-")
        return f"{space.source}: experiment.{key}"

    return dataclasses.replace(space, experiment=_build_experiment(values, label))


# --- parameters ---------------------------------------------------------------------------------


def _number(value: Any, type_name: str, label: str) -> Any:
    """Parse an int or float, accepting strings such as '1e-4' (YAML reads those as text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{label}={value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{label}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{label}={value!r} must be a finite number")
    if type_name == "int":
        if number != int(number):
            raise UserError(f"{label}={value!r} is not a whole number")
        return int(number)
    return number


def _resolve_path(setting: str, value: Any) -> Any:
    """A file a space names is made absolute now: trials run in their own directories, and the
    saved space.yaml must mean the same file on --resume. `_check_value` checks it exists."""
    if setting not in _PATH_SETTINGS or value == "":
        return value
    return str(Path(value).expanduser().resolve())


def _check_value(setting: str, value: Any, label: str) -> None:
    """The value must be one TrainConfig accepts for `setting` (ranges, choices, model names,
    existing files)."""
    if setting in _PATH_SETTINGS and value != "" and not Path(value).is_file():
        raise UserError(f"{label}: {setting} {value!r} is not a file")
    if setting == "model" and value not in MODEL_NAMES:
        raise UserError(
            f"{label}: unknown model {value!r} (known: {', '.join(MODEL_NAMES)})"
            f"{did_you_mean(value, MODEL_NAMES)}"
        )
    config = TrainConfig()
    setattr(config, setting, value)
    config.validate(source=label)


def _parse_params(raw: Any, source: str) -> tuple[Param, ...]:
    if not isinstance(raw, Mapping):
        raise UserError(
            f"{source}: params must be a mapping of setting -> spec, got {type(raw).__name__}"
        )
    if not raw:
        raise UserError(f"{source}: params is empty; name at least one setting to search")
    names = [str(name) for name in raw]
    params: dict[str, Param] = {}
    for name, spec in raw.items():
        if not isinstance(name, str):
            raise UserError(f"{source}: parameter name {name!r} must be text")
        params[name] = _parse_param(name, spec, params, names, f"{source}: params.{name}")
    _check_exclusive(tuple(params.values()), source)
    return tuple(params.values())


def _parse_param(
    name: str, spec: Any, earlier: Mapping[str, Param], names: list[str], label: str
) -> Param:
    setting, at, tag = name.partition("@")
    if setting in _EXPERIMENT_ONLY:
        raise UserError(
            f"{label}: {setting!r} is an experiment setting; set experiment.{setting} instead"
        )
    if setting not in TRAIN_FIELDS:
        allowed = sorted(TRAIN_FIELDS - set(_EXPERIMENT_ONLY))
        raise UserError(
            f"{label}: unknown parameter {setting!r} (not a TrainConfig setting)"
            f"{did_you_mean(setting, allowed)}"
        )
    if at and not _TAG_RE.fullmatch(tag):
        raise UserError(f"{label}: the tag after '@' must be letters, digits or '_', got {tag!r}")
    field_type = _FIELD_TYPES[setting]
    if isinstance(spec, (list, tuple)):
        raise UserError(
            f"{label}: a bare list {spec!r} is not a parameter; "
            f"write {{type: categorical, choices: [...]}}"
        )
    if not isinstance(spec, Mapping):
        spec = {"type": "fixed", "value": spec}
    kind = spec.get("type")
    if kind is None:
        raise UserError(f"{label}: missing 'type' (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise UserError(
            f"{label}: unknown type {kind!r} (one of {', '.join(KINDS)}){did_you_mean(kind, KINDS)}"
        )
    allowed_keys = ("type", "when", *_KIND_KEYS[kind])
    for key in spec:
        if key not in allowed_keys:
            raise UserError(
                f"{label}: unknown key {key!r} for type {kind} (allowed: "
                f"{', '.join(allowed_keys)}){did_you_mean(key, allowed_keys)}"
            )
    for key in _REQUIRED[kind]:
        if key not in spec:
            raise UserError(f"{label}: type {kind} needs {key!r}")
    when = _parse_when(spec.get("when"), name, earlier, names, label)

    if kind == "fixed":
        value = _resolve_path(setting, coerce(setting, spec["value"], field_type, source=label))
        _check_value(setting, value, label)
        return Param(name, kind, value=value, when=when)
    if kind == "categorical":
        raw_choices = spec["choices"]
        if not isinstance(raw_choices, (list, tuple)):
            raise UserError(f"{label}: choices must be a list, got {raw_choices!r}")
        if not raw_choices:
            raise UserError(f"{label}: choices is empty")
        choices: list[Any] = []
        for choice in raw_choices:
            value = _resolve_path(setting, coerce(setting, choice, field_type, source=label))
            if value in choices:
                raise UserError(f"{label}: duplicate choice {choice!r}")
            _check_value(setting, value, label)
            choices.append(value)
        return Param(name, kind, choices=tuple(choices), when=when)
    return _parse_range(name, setting, kind, field_type, spec, when, label)


def _parse_range(
    name: str,
    setting: str,
    kind: str,
    field_type: str,
    spec: Mapping[str, Any],
    when: tuple[tuple[str, tuple], ...],
    label: str,
) -> Param:
    """loguniform, uniform and int: bounds, step and log checked the way Optuna needs them."""
    if kind in ("loguniform", "uniform") and field_type != "float":
        raise UserError(
            f"{label}: type {kind} needs a float setting; {setting} is {field_type} "
            f"(use type: int or categorical)"
        )
    if kind == "int" and field_type not in ("int", "float"):
        raise UserError(f"{label}: type int needs a numeric setting; {setting} is {field_type}")
    number_type = "int" if kind == "int" else "float"
    low = _number(spec["low"], number_type, f"{label}.low")
    high = _number(spec["high"], number_type, f"{label}.high")
    if not low < high:
        raise UserError(
            f"{label}: low={low!r} must be < high={high!r} (use type: fixed for a constant)"
        )
    log = kind == "loguniform"
    if kind == "int" and "log" in spec:
        log = coerce("log", spec["log"], "bool", source=label)
    if log and low <= 0:
        raise UserError(f"{label}: a log range needs low > 0, got low={low!r}")
    if log and kind == "int" and low < 1:
        raise UserError(f"{label}: an int log range needs low >= 1, got low={low!r}")
    step = None
    if spec.get("step") is not None:
        step = _number(spec["step"], number_type, f"{label}.step")
        if log and step != 1:
            raise UserError(f"{label}: step={step!r} cannot be combined with log: true")
        if not step > 0:
            raise UserError(f"{label}.step must be > 0, got {step!r}")
        # in decimal, as written: 0.15 - 0.1 is 0.0499... in binary floating point
        span, exact_step = Decimal(str(high)) - Decimal(str(low)), Decimal(str(step))
        if exact_step > span:
            raise UserError(f"{label}.step={step!r} is larger than high - low = {span}")
        # Optuna silently lowers `high` to the last point of the grid; say so instead.
        if span % exact_step != 0:
            raise UserError(
                f"{label}: step={step!r} does not divide high - low ({low!r}..{high!r}); "
                f"change high or step"
            )
    _check_value(setting, low, f"{label}.low")
    _check_value(setting, high, f"{label}.high")
    return Param(name, kind, low=low, high=high, step=step, log=log and kind == "int", when=when)


def _parse_when(
    raw: Any, name: str, earlier: Mapping[str, Param], names: list[str], label: str
) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{label}.when must be a mapping {{param: value or [values]}}, got {raw!r}")
    conditions: list[tuple[str, tuple]] = []
    for ref, allowed in raw.items():
        if ref not in earlier:
            if ref == name:
                raise UserError(f"{label}.when: a parameter cannot depend on itself")
            if ref in names:
                raise UserError(
                    f"{label}.when: {ref!r} is defined after {name!r}; move {ref!r} above it"
                )
            raise UserError(
                f"{label}.when: unknown parameter {ref!r}{did_you_mean(ref, list(earlier))}"
            )
        target = earlier[ref]
        values = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        if not values:
            raise UserError(f"{label}.when: {ref} has an empty list of values")
        coerced = []
        for value in values:
            value = coerce(ref, value, _FIELD_TYPES[target.setting], source=f"{label}.when")
            if not _can_take(target, value):
                raise UserError(
                    f"{label}.when: {ref}={value!r} can never hold ({ref} takes "
                    f"{_describe(target)}){did_you_mean(value, map(str, target.choices))}"
                )
            coerced.append(value)
        conditions.append((ref, tuple(coerced)))
    return tuple(conditions)


def _can_take(param: Param, value: Any) -> bool:
    if param.kind == "fixed":
        return bool(value == param.value)
    if param.kind == "categorical":
        return value in param.choices
    assert param.low is not None and param.high is not None
    if not param.low <= value <= param.high:
        return False
    if param.step is None:
        return param.kind != "int" or value == int(value)
    return (Decimal(str(value)) - Decimal(str(param.low))) % Decimal(str(param.step)) == 0


def _describe(param: Param) -> str:
    if param.kind == "fixed":
        return f"only {param.value!r}"
    if param.kind == "categorical":
        return ", ".join(repr(c) for c in param.choices)
    return f"values in [{param.low!r}, {param.high!r}]"


def _check_exclusive(params: tuple[Param, ...], source: str) -> None:
    """Two parameters that set the same setting must never both be active in one trial."""
    for i, a in enumerate(params):
        for b in params[i + 1 :]:
            if a.setting != b.setting:
                continue
            a_when, b_when = dict(a.when), dict(b.when)
            if any(ref in b_when and not set(a_when[ref]) & set(b_when[ref]) for ref in a_when):
                continue
            raise UserError(
                f"{source}: params.{a.name} and params.{b.name} both set {a.setting} and can be "
                f"active together; give both a `when` on the same parameter with different values"
            )


# --- sampling -----------------------------------------------------------------------------------


def _active(param: Param, values: Mapping[str, Any]) -> bool:
    return all(ref in values and values[ref] in allowed for ref, allowed in param.when)


def _walk(space: SearchSpace, trial: optuna.trial.Trial) -> tuple[dict[str, Any], dict[str, Any]]:
    """Suggest every active parameter in order; return (all active values, fixed ones)."""
    values: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    for p in space.params:
        if not _active(p, values):
            continue
        if p.kind == "fixed":
            value = constants[p.name] = p.value
        elif p.kind == "categorical":
            value = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            assert p.low is not None and p.high is not None
            value = trial.suggest_int(
                p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            assert p.low is not None and p.high is not None
            value = trial.suggest_float(
                p.name, p.low, p.high, step=p.step, log=p.kind == "loguniform"
            )
        values[p.name] = value
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
