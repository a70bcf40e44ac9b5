"""What a search optimises besides accuracy: objectives, constraints, the Pareto front, `pick`.

A space may name `objectives` (the search metric first, then any of the model's costs to
minimise), `constraints` (upper limits on those costs) and `experiment.pick` (which
Pareto-optimal trial becomes best/). The costs are measured once per trial on its own model
(engine.cost): `params` (trainable and not), `flops` (one image's forward pass, as
torch.utils.flop_counter counts them) and `latency_ms` (batch 1 on the CPU, one thread).

Everything here works on leaderboard rows (dicts), so the search, the report and the tests
share one definition of "feasible", "dominates" and "picked".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from fer_search.errors import UserError, did_you_mean

__all__ = [
    "COSTS",
    "Condition",
    "Objective",
    "constraint_values",
    "feasible",
    "mark_choice",
    "number_or_nan",
    "pareto_front",
    "parse_constraints",
    "parse_objectives",
    "parse_pick",
]

# The model's costs a trial measures (all minimised), and what each is.
COSTS: dict[str, str] = {
    "latency_ms": "milliseconds per image at batch 1 on the CPU, one thread",
    "params": "parameters",
    "flops": "floating-point operations of one image's forward pass",
}
# constraint key -> the cost it limits
LIMITS: dict[str, str] = {f"max_{cost}": cost for cost in COSTS}
# the accuracy metrics a trial reports and their direction (a space's `metric`: one of these;
# space.schema.METRICS is this dict)
SCORES: dict[str, str] = {"val_acc": "max", "val_f1": "max", "val_loss": "min"}
_CONDITION_RE = re.compile(r"\s*([A-Za-z_]+)\s*(<=|>=|<|>)\s*([^,]+?)\s*")


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # max | min

    def to_dict(self) -> dict[str, str]:
        return {"metric": self.metric, "mode": self.mode}


def parse_objectives(raw: Any, metric: str, source: str) -> tuple[Objective, ...]:
    """`objectives:` of a space: [{metric, mode}, ...]. The first is the search's `metric` (the
    one the scheduler stops trials on); the others are costs, each once. `mode` may be left out
    (each metric has one direction); a wrong one is an error, not a silent flip."""
    if raw is None or raw == []:
        return ()
    label = f"{source}: objectives"
    if not isinstance(raw, list):
        raise UserError(f"{label} must be a list of {{metric, mode}}, got {raw!r}")
    objectives: list[Objective] = []
    for i, entry in enumerate(raw):
        where = f"{label}[{i}]"
        if isinstance(entry, str):
            entry = {"metric": entry}
        if not isinstance(entry, Mapping) or "metric" not in entry:
            raise UserError(f"{where} must be a mapping with `metric` (and `mode`), got {entry!r}")
        extra = [key for key in entry if key not in ("metric", "mode")]
        if extra:
            raise UserError(f"{where}: unknown key {extra[0]!r} (expected metric, mode)")
        name = entry["metric"]
        known = {metric: SCORES[metric], **dict.fromkeys(COSTS, "min")}
        if name not in known:
            raise UserError(
                f"{where}.metric={name!r} is not one of {', '.join(known)}"
                f"{did_you_mean(str(name), known)}"
            )
        mode = entry.get("mode", known[name])
        if mode != known[name]:
            raise UserError(f"{where}: {name} takes mode: {known[name]}, got mode={mode!r}")
        objectives.append(Objective(name, mode))
    names = [o.metric for o in objectives]
    if names[0] != metric:
        raise UserError(
            f"{label}[0] must be the search metric {metric!r} (the scheduler stops trials on "
            f"it), got {names[0]!r}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"{label} names a metric twice: {names}")
    if len(names) < 2:
        raise UserError(f"{label} needs a cost besides {metric} ({', '.join(COSTS)})")
    return tuple(objectives)


def parse_constraints(raw: Any, source: str) -> dict[str, float]:
    """`constraints:` of a space: {max_params, max_latency_ms, max_flops} -> positive limits."""
    if raw is None or raw == {}:
        return {}
    label = f"{source}: constraints"
    if not isinstance(raw, Mapping):
        raise UserError(f"{label} must be a mapping such as {{max_latency_ms: 2}}, got {raw!r}")
    limits: dict[str, float] = {}
    for key, value in raw.items():
        if key not in LIMITS:
            raise UserError(
                f"{label}: unknown constraint {key!r} (expected {', '.join(LIMITS)})"
                f"{did_you_mean(str(key), LIMITS)}"
            )
        limits[key] = positive(value, f"{label}.{key}")
    return limits


def positive(value: Any, label: str) -> float:
    try:
        number = float(value)  # YAML reads 1e6 as text
    except (TypeError, ValueError):
        raise UserError(f"{label}={value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise UserError(f"{label}={value!r} must be a positive number")
    return number


@dataclass(frozen=True)
class Condition:
    """One term of `pick`, e.g. latency_ms <= 2."""

    metric: str
    op: str
    value: float

    def holds(self, row: Mapping[str, Any]) -> bool:
        x = number_or_nan(row.get(self.metric))
        if math.isnan(x):
            return False
        return {
            "<=": x <= self.value,
            ">=": x >= self.value,
            "<": x < self.value,
            ">": x > self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_pick(text: str, label: str, metrics: Iterable[str]) -> tuple[Condition, ...]:
    """`pick`: comma-separated conditions on the given metrics, e.g. 'latency_ms<=2,params<1e6'.
    Empty text: no conditions."""
    if not text or not text.strip():
        return ()
    known = list(metrics)
    conditions = []
    for part in text.split(","):
        match = _CONDITION_RE.fullmatch(part)
        if not match:
            raise UserError(
                f"{label}={text!r}: {part.strip()!r} is not METRIC<=VALUE (or <, >=, >), e.g. "
                f"latency_ms<=2"
            )
        name, op, value = match.groups()
        if name not in known:
            raise UserError(
                f"{label}={text!r}: {name!r} is not one of {', '.join(known)}"
                f"{did_you_mean(name, known)}"
            )
        try:
            bound = float(value)
        except ValueError:
            raise UserError(f"{label}={text!r}: {value!r} is not a number") from None
        conditions.append(Condition(name, op, bound))
    return tuple(conditions)


def number_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def constraint_values(row: Mapping[str, Any], limits: Mapping[str, float]) -> dict[str, float]:
    """Optuna's constraint values for a trial (Trial.set_constraint): limit name -> cost - limit
    (<= 0 is feasible); an unmeasured cost counts as infeasible."""
    values = {}
    for key, limit in limits.items():
        cost = number_or_nan(row.get(LIMITS[key]))
        values[key] = 1.0 if math.isnan(cost) else cost - limit
    return values


def feasible(row: Mapping[str, Any], limits: Mapping[str, float]) -> bool:
    return all(value <= 0 for value in constraint_values(row, limits).values())


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Sequence[Objective]) -> bool:
    """a is at least as good as b in every objective and better in one."""
    better = False
    for o in objectives:
        x, y = number_or_nan(a.get(o.metric)), number_or_nan(b.get(o.metric))
        if o.mode == "min":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the rows no other row dominates (rows with an unmeasured objective are never
    on it), in the rows' order."""
    scored = [
        i
        for i, row in enumerate(rows)
        if all(not math.isnan(number_or_nan(row.get(o.metric))) for o in objectives)
    ]
    return [
        i
        for i in scored
        if not any(dominates(rows[j], rows[i], objectives) for j in scored if j != i)
    ]


def mark_choice(
    rows: Sequence[MutableMapping[str, Any]],
    candidates: Sequence[Mapping[str, Any]],
    objectives: Sequence[Objective],
    limits: Mapping[str, float],
    pick: Sequence[Condition],
) -> tuple[list[bool], str]:
    """Mark each row `feasible` (within `limits`) and `pareto` (on the front of the feasible
    candidates, for a multi-objective search); say which rows are eligible (what the ranking
    puts first: the feasible candidates, or with `pick` the Pareto-optimal ones that satisfy
    it), one per row, also written as the column `eligible` when there are limits or a pick.
    With it, a note when `pick` matches no Pareto-optimal trial (the feasible ones are eligible
    then)."""
    pool = [row for row in candidates if feasible(row, limits)]
    front = {id(pool[i]) for i in pareto_front(pool, objectives)} if objectives else set()
    chosen = [row for row in pool if id(row) in front and all(c.holds(row) for c in pick)]
    note = ""
    if pick and not chosen:
        terms = ",".join(str(c) for c in pick)
        note = f"no Pareto-optimal trial satisfies pick {terms}: best/ is the best feasible trial"
        chosen = pool
    eligible = {id(row) for row in (chosen if pick else pool)}
    for row in rows:
        if limits:
            row["feasible"] = feasible(row, limits)
        if objectives:
            row["pareto"] = id(row) in front
        if limits or pick:  # the leaderboard's column, which its readers rank by first
            row["eligible"] = id(row) in eligible
    return [id(row) in eligible for row in rows], note
