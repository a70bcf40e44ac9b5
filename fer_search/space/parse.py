"""A parsed space (YAML data or SearchSpace.to_dict) -> a validated SearchSpace.

Checks the top-level keys, each parameter's type, range or choices, the `when` conditions
and `points_to_evaluate`; the `experiment:` block is experiment.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from fer_search.config import TRAIN_FIELDS, TrainConfig, coerce
from fer_search.errors import UserError, did_you_mean
from fer_search.objectives import parse_constraints, parse_objectives
from fer_search.space.mutations import check_pbt
from fer_search.space.schema import KINDS, Param, SearchSpace
from fer_search.space.settings import check_pick, experiment_from_file
from fer_search.space.values import check_value, number, resolve_path

__all__ = ["load_space_dict"]

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
_TOP_KEYS = (
    "name",
    "description",
    "experiment",
    "params",
    "points_to_evaluate",
    "objectives",
    "constraints",
)
_EXPERIMENT_ONLY = ("epochs", "seed")  # TrainConfig fields the experiment owns
# Field types are strings ("int", "float", "str", "bool"): config.py uses postponed annotations.
_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(TrainConfig)}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TAG_RE = re.compile(r"[A-Za-z0-9_]+")
When = tuple[tuple[str, tuple], ...]


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
    experiment = experiment_from_file(d.get("experiment"), source)
    if "params" not in d:
        raise UserError(f"{source}: missing `params:` (the parameters to search)")
    params = _parse_params(d["params"], source)
    points = _parse_points(d.get("points_to_evaluate"), params, source)
    space = SearchSpace(
        name,
        description.strip(),
        params,
        experiment,
        source,
        points,
        objectives=parse_objectives(d.get("objectives"), experiment.metric, source),
        constraints=parse_constraints(d.get("constraints"), source),
    )
    check_pick(space, f"{source}: experiment.pick")
    check_pbt(space, f"{source}: experiment.scheduler")
    return space


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
            checked[str(name)] = _point_value(sampled[name], value, label)
        points.append(checked)
    return tuple(points)


def _point_value(p: Param, value: Any, label: str) -> Any:
    """One value of a point: one of the choices, or a number inside the range."""
    if p.kind == "categorical":
        if value not in p.choices:
            choices = ", ".join(map(str, p.choices))
            raise UserError(f"{label}={value!r} is not one of {choices}")
        return value
    value = number(value, "int" if p.kind == "int" else "float", label)
    assert p.low is not None and p.high is not None
    if not p.low <= value <= p.high:
        raise UserError(f"{label}={value!r} is outside [{p.low}, {p.high}]")
    return value


# --- parameters ---------------------------------------------------------------------------------


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
    setting = _check_name(name, label)
    field_type = _FIELD_TYPES[setting]
    if isinstance(spec, (list, tuple)):
        raise UserError(
            f"{label}: a bare list {spec!r} is not a parameter; "
            f"write {{type: categorical, choices: [...]}}"
        )
    if not isinstance(spec, Mapping):
        spec = {"type": "fixed", "value": spec}
    kind = _check_keys(spec, label)
    when = _parse_when(spec.get("when"), name, earlier, names, label)
    if kind == "fixed":
        value = resolve_path(setting, coerce(setting, spec["value"], field_type, source=label))
        check_value(setting, value, label)
        return Param(name, kind, value=value, when=when)
    if kind == "categorical":
        choices = _parse_choices(setting, field_type, spec["choices"], label)
        return Param(name, kind, choices=choices, when=when)
    return _parse_range(name, setting, kind, field_type, spec, when, label)


def _check_name(name: str, label: str) -> str:
    """`setting` or `setting@tag`, where setting is a TrainConfig field; returns the setting."""
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
    return setting


def _check_keys(spec: Mapping[str, Any], label: str) -> str:
    """The spec's `type` is known and its keys fit that type; returns the type."""
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
    return str(kind)


def _parse_choices(setting: str, field_type: str, raw: Any, label: str) -> tuple:
    if not isinstance(raw, (list, tuple)):
        raise UserError(f"{label}: choices must be a list, got {raw!r}")
    if not raw:
        raise UserError(f"{label}: choices is empty")
    choices: list[Any] = []
    for choice in raw:
        value = resolve_path(setting, coerce(setting, choice, field_type, source=label))
        if value in choices:
            raise UserError(f"{label}: duplicate choice {choice!r}")
        check_value(setting, value, label)
        choices.append(value)
    return tuple(choices)


def _parse_range(
    name: str,
    setting: str,
    kind: str,
    field_type: str,
    spec: Mapping[str, Any],
    when: When,
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
    low = number(spec["low"], number_type, f"{label}.low")
    high = number(spec["high"], number_type, f"{label}.high")
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
        step = _parse_step(spec["step"], number_type, low, high, log, label)
    check_value(setting, low, f"{label}.low")
    check_value(setting, high, f"{label}.high")
    return Param(name, kind, low=low, high=high, step=step, log=log and kind == "int", when=when)


def _parse_step(raw: Any, number_type: str, low: Any, high: Any, log: bool, label: str) -> Any:
    step = number(raw, number_type, f"{label}.step")
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
    return step


# --- conditions ---------------------------------------------------------------------------------


def _parse_when(
    raw: Any, name: str, earlier: Mapping[str, Param], names: list[str], label: str
) -> When:
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
        conditions.append((ref, _condition_values(ref, earlier[ref], allowed, label)))
    return tuple(conditions)


def _condition_values(ref: str, target: Param, allowed: Any, label: str) -> tuple:
    """The values `when: {ref: allowed}` lists, coerced, each one `target` can take."""
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
    return tuple(coerced)


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
