"""`--warm-start DIR ...`: a new search's Optuna study begins with earlier experiments' trials.

Before the Tuner starts, the new experiment's study (optuna.db, named as the experiment, the
direction its mode gives) is created here with a copy of every COMPLETE and PRUNED trial of
the earlier studies; Ray's OptunaSearch then loads it (`load_if_exists`) and TPE samples from
that history instead of its random start-up draws. The copies are history only: Tune counts
the trials it runs, so they take nothing from `num_samples`, and they carry no
`ray_trial_id` (kept as `warm_start_ray_trial_id`), so the study's bookkeeping
(`tuning.study`) never takes one for a trial of this search. Each copy says where it came
from in `warm_start_from` ("<experiment>#<trial number>"); the report's importances leave them
out.

A trial is copied only if it fits the new space: the parameters the new space would sample
for its values are exactly the ones it has, each inside the new distribution; it is copied
with the new space's distributions, so TPE sees one parameter. The others are skipped and
counted by reason. An experiment that selected on another metric or mode, or classified other
classes, is refused (its values are not comparable); one on other data or with other epochs
is used, with a note.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fer_search.config import WARM_START_ATTR as FROM_ATTR
from fer_search.errors import UserError

if TYPE_CHECKING:
    from fer_search.space import SearchSpace
    from fer_search.tuning.experiment_dir import ExperimentRecord

__all__ = [
    "FROM_ATTR",
    "Source",
    "check_dirs",
    "check_sources",
    "same_source",
    "seed_study",
    "summary_line",
]

RECORD = "experiment.json"
DB = "optuna.db"


@dataclass
class Source:
    """An earlier experiment to warm-start from: its folder (as given) and its record."""

    path: str
    record: ExperimentRecord  # its experiment.json
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.record.get("name") or Path(self.path).name)


def check_dirs(dirs: list[str]) -> None:
    """Each DIR is an experiment folder with optuna.db and experiment.json (no optuna import)."""
    for path in dirs:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise UserError(f"--warm-start {path!r} does not exist")
        missing = [name for name in (DB, RECORD) if not (folder / name).is_file()]
        if missing:
            raise UserError(
                f"--warm-start {path!r} is not a fer-search experiment (no {' or '.join(missing)})"
            )


def check_sources(dirs: list[str], space: SearchSpace, data: Any) -> list[Source]:
    """The experiments in `dirs`, refused with one line when their values do not compare
    with this search's (another metric, mode or class set)."""
    check_dirs(dirs)
    if space.objectives:
        raise UserError(
            f"--warm-start seeds a single-objective study; {space.source} has `objectives:` "
            f"(earlier trials have no measured costs to carry over)"
        )
    ex, sources = space.experiment, []
    for path in dirs:
        try:
            record = json.loads((Path(path).expanduser() / RECORD).read_text())
        except (OSError, ValueError):
            raise UserError(f"--warm-start {path!r}: {RECORD} is not readable JSON") from None
        source = Source(path, cast("ExperimentRecord", record if isinstance(record, dict) else {}))
        theirs = (source.record.get("metric"), source.record.get("mode"))
        if theirs != (ex.metric, ex.mode):
            raise UserError(
                f"--warm-start {path!r} selected on {theirs[0]} ({theirs[1]}), this search on "
                f"{ex.metric} ({ex.mode}); its trials' values do not compare"
            )
        classes = list(source.record.get("class_names") or [])
        if classes != list(data.class_names):
            raise UserError(
                f"--warm-start {path!r} classified {len(classes)} classes ({', '.join(classes)}), "
                f"this search {len(data.class_names)}; its trials' values do not compare"
            )
        if not same_source(source.record.get("data"), data.source):
            source.notes.append(f"{source.name} searched other data ({source.record.get('data')})")
        if source.record.get("max_t") != ex.epochs:
            source.notes.append(f"{source.name} trained {source.record.get('max_t')} epochs")
        sources.append(source)
    return sources


def same_source(before: Any, now: Any) -> bool:
    """Whether two data sources name the same data: equal, or one file or folder reached by two
    paths (`../shared/x.csv.gz` from one folder, `/work/shared/x.csv.gz` from another)."""
    if before == now:
        return True
    if not isinstance(before, str) or not isinstance(now, str):
        return False
    first, second = Path(before).expanduser(), Path(now).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


def seed_study(exp: Path, space: SearchSpace, sources: list[Source]) -> dict[str, Any]:
    """Create the study of experiment `exp` with the fitting finished trials of `sources`;
    what experiment.json records as `warm_start`."""
    import optuna

    from fer_search.tuning.study import open_study, sqlite_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=exp.name,
        storage=sqlite_storage(exp / DB, searching=True),
        direction="maximize" if space.experiment.mode == "max" else "minimize",
        load_if_exists=True,
    )
    copies: list[Any] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    for source in sources:
        handle = open_study(Path(source.path).expanduser())
        if handle is None:
            raise UserError(
                f"--warm-start {source.path!r}: its {DB} has no study named {source.name!r}"
            )
        for trial in handle.trials():
            origin = str(trial.user_attrs.get(FROM_ATTR) or f"{source.name}#{trial.number}")
            if origin in seen:  # an earlier warm start's copy of a trial given again
                continue
            copy, reason = copy_trial(trial, space, origin)
            if copy is None:
                skipped[reason] += 1
                continue
            seen.add(origin)
            copies.append(copy)
    study.add_trials(copies)
    return {
        "from": [source.path for source in sources],
        "experiments": [source.name for source in sources],
        "trials": len(copies),
        "skipped": dict(skipped.most_common()),
        "notes": [note for source in sources for note in source.notes],
    }


def copy_trial(trial: Any, space: SearchSpace, origin: str) -> tuple[Any, str]:
    """The new study's copy of a finished trial, or None and why it is skipped."""
    import optuna
    from optuna.trial import TrialState

    from fer_search.tuning.study import REFIT_OF

    if trial.state == TrialState.FAIL:
        return None, "failed"
    if REFIT_OF in trial.user_attrs:  # a sampled configuration trained again: not a sample
        return None, "refit"
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        return None, "not finished"
    if trial.value is None or not math.isfinite(trial.value):
        return None, "no value"
    distributions, reason = fit(trial.params, space)
    if distributions is None:
        return None, reason
    attrs = dict(trial.user_attrs)
    if "ray_trial_id" in attrs:
        attrs["warm_start_ray_trial_id"] = attrs.pop("ray_trial_id")
    attrs[FROM_ATTR] = origin
    try:
        copy = optuna.trial.create_trial(
            params=dict(trial.params),
            distributions=distributions,
            value=trial.value,
            state=trial.state,
            intermediate_values=dict(trial.intermediate_values),
            user_attrs=attrs,
        )
    except ValueError:  # Optuna's own check, should ours (outside_of) have let one through
        return None, "parameters outside the new space"
    return copy, ""


def fit(params: dict[str, Any], space: SearchSpace) -> tuple[dict[str, Any] | None, str]:
    """The new space's distributions for a trial's `params`, or None and why they do not fit:
    a parameter the new space would sample for these values is missing or outside its range,
    or one it has is not sampled there."""
    from fer_search.space import define_by_run

    recorder = Recorder(params)
    try:
        define_by_run(space)(recorder)  # type: ignore[arg-type]
    except KeyError as exc:
        return None, f"no {exc.args[0]}"
    for name in params:
        if name not in recorder.distributions:
            return None, f"{name} not in the new space"
    for name, dist in recorder.distributions.items():
        outside = outside_of(params[name], dist)
        if outside:
            return None, f"{name} {outside}"
    return recorder.distributions, ""


class Recorder:
    """Stands for an Optuna trial in the space's define-by-run: answers with a trial's values
    and records the distribution asked for each (Optuna's FixedTrial would warn, not say)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.distributions: dict[str, Any] = {}

    def _answer(self, name: str, dist: Any) -> Any:
        self.distributions[name] = dist
        return self.params[name]  # KeyError: the trial has no such parameter

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        from optuna.distributions import CategoricalDistribution

        return self._answer(name, CategoricalDistribution(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> Any:
        from optuna.distributions import IntDistribution

        return self._answer(name, IntDistribution(low, high, log=log, step=step))

    def suggest_float(
        self, name: str, low: float, high: float, step: float | None = None, log: bool = False
    ) -> Any:
        from optuna.distributions import FloatDistribution

        return self._answer(name, FloatDistribution(low, high, log=log, step=step))


def outside_of(value: Any, dist: Any) -> str:
    """'outside [low, high]' or 'not in [choices]' when `value` does not fit `dist`, else ''."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return "" if value in dist.choices else f"not in {list(dist.choices)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"not a number ({value!r})"
    if not dist.low <= value <= dist.high:
        return f"outside [{dist.low:g}, {dist.high:g}]"
    if dist.step is not None:
        steps = (value - dist.low) / dist.step
        if abs(steps - round(steps)) > 1e-8:
            return f"not on the step {dist.step:g} from {dist.low:g}"
    if type(dist).__name__ == "IntDistribution" and value != int(value):
        return f"not an integer ({value!r})"
    return ""


def summary_line(summary: dict[str, Any]) -> str:
    """'warm start: 12 trials from 2 experiments; 3 skipped (2 lr@sgd outside [...], 1 failed)'."""
    count = len(summary["from"])
    line = f"warm start: {summary['trials']} trials from {count} experiment{'s' * (count != 1)}"
    skipped = summary.get("skipped") or {}
    if skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
        line += f"; {sum(skipped.values())} skipped ({reasons})"
    if summary.get("notes"):
        line += f"; note: {'; '.join(summary['notes'])}"
    return line
