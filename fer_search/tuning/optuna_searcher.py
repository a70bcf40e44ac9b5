"""Ray Tune's OptunaSearch, with honest bookkeeping for early-stopped and failed trials.

Ray's stock searcher tells Optuna that a trial the scheduler stopped is COMPLETE with its last
(early) value, and that a trial that raised after reporting is COMPLETE too. Both mislead TPE.
Here a trial that ran all its epochs is COMPLETE with its best value, one stopped early is
PRUNED (its per-epoch values reported as intermediate values; `stopped_by` names the
scheduler), and one that raised is FAIL.

A multi-objective search (a space's `objectives`) gets lists for `metric` and `mode`: a
completed trial is told its best val_acc and its model's costs; a stopped one is PRUNED
without values (Optuna takes no intermediate values in a multi-objective study). A space's
`constraints` go on every scored trial (cost - limit, <= 0 feasible) where Optuna's samplers
and optuna-dashboard both read them (tuning._optuna_compat); the model's costs are user
attributes too.
The private attributes of OptunaSearch this needs are reached through `_ray_compat`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from fer_search.config import TrainConfig
from fer_search.objectives import constraint_values, number_or_nan
from fer_search.space import train_values
from fer_search.tuning import _ray_compat as compat
from fer_search.tuning._optuna_compat import set_constraints
from fer_search.tuning.study import cost_attrs

if TYPE_CHECKING:
    from fer_search.space import SearchSpace

__all__ = ["SUGGEST_MS_ATTR", "PruningOptunaSearch", "SpaceSampler"]

log = logging.getLogger(__name__)

DISPLAY_DEFAULTS = ("model", "lr", "dropout")
SUGGEST_MS_ATTR = "suggest_ms"  # an Optuna trial's user attribute: its suggestion's latency


class SpaceSampler:
    """A picklable define-by-run function (Tune pickles the searcher into its checkpoints)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        from fer_search.space import define_by_run

        return define_by_run(self.space)(trial)


class PruningOptunaSearch(OptunaSearch):
    def __init__(
        self,
        *args: Any,
        max_t: int,
        step_attr: str = "epoch",
        scheduler: str = "asha",
        constraints: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.constraints = dict(constraints or {})  # space.constraints: limit name -> value
        self.max_t = max_t
        self.step_attr = step_attr
        self.scheduler = scheduler  # the one that stops trials early (config.SCHEDULERS)
        self._best: dict[str, float] = {}
        self._last_step: dict[str, int] = {}
        self._reported: dict[str, set[int]] = {}  # pickled with the searcher, so kept on resume

    def suggest(self, trial_id: str) -> dict | None:
        started = time.perf_counter()
        config = super().suggest(trial_id)
        trials = compat.optuna_search_trials(self)
        if trial_id in trials:
            trials[trial_id].set_user_attr("ray_trial_id", trial_id)
            # what the sampler took to suggest it (Optuna's ask and the space's define-by-run)
            suggest_ms = round(1000 * (time.perf_counter() - started), 2)
            trials[trial_id].set_user_attr(SUGGEST_MS_ATTR, suggest_ms)
        if not isinstance(config, dict):
            return config
        # Tune's config names settings as the engine does ('lr@sgd' -> 'lr'); the columns the
        # console view shows are always present (the default is what the trial uses).
        config = train_values(config)
        for name in DISPLAY_DEFAULTS:
            config.setdefault(name, getattr(TrainConfig, name))
        # bookkeeping, not a TrainConfig field: the stable handle of a trial (optuna.db's
        # trial number; FER_SEARCH_FAULT names trials by it)
        config["trial_number"] = trials[trial_id].number
        return config

    def objectives(self) -> list[str]:
        """The study's metrics: the search metric first (the scheduler's), then costs."""
        return list(self.metric) if isinstance(self.metric, (list, tuple)) else [self.metric]

    def _better(self, a: float, b: float) -> bool:
        mode = self.mode[0] if isinstance(self.mode, (list, tuple)) else self.mode
        return a > b if mode == "max" else a < b

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        primary = self.objectives()[0]
        if trial_id in compat.optuna_search_completed(self) or primary not in result:
            return
        if result.get("failure"):  # the trial's reason for failing (not retried): no value
            return
        value, step = float(result[primary]), int(result.get(self.step_attr, 0))
        if trial_id not in self._best or self._better(value, self._best[trial_id]):
            self._best[trial_id] = value
        self._last_step[trial_id] = step
        reported = self._reported.setdefault(trial_id, set())
        # a trial restored from a checkpoint repeats no step; a multi-objective study takes
        # no intermediate values
        if len(self.objectives()) == 1 and step not in reported:
            reported.add(step)
            try:
                compat.optuna_search_trials(self)[trial_id].report(value, step)
            except optuna.exceptions.UpdateFinishedTrialError:
                # an interrupted search's trial, closed as unfinished (tuning.study); the
                # resumed search records it again when it ends
                log.debug("trial %s was closed by an interrupted search", trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        completed, trials = compat.optuna_search_completed(self), compat.optuna_search_trials(self)
        if trial_id in completed or trial_id not in trials:
            return
        if result:
            self.on_trial_result(trial_id, result)
        step = self._last_step.get(trial_id, 0)
        failure = (result or {}).get("failure")
        attrs: dict[str, Any] = {"status": "pruned", "epochs": step}
        if error or failure:
            state, value = TrialState.FAIL, None
            attrs.update(status="failed", error=str(failure or "raised")[:300])
        elif trial_id not in self._best or step < self.max_t:
            # stopped by the scheduler (before its first epoch ended, or at a rung); Optuna
            # takes the last intermediate value
            state, value = TrialState.PRUNED, None
            attrs["stopped_by"] = getattr(self, "scheduler", "asha")  # older pickles: asha
        else:
            state, value = TrialState.COMPLETE, self._best[trial_id]
            attrs["status"] = "completed"
        values: Any = value
        if len(self.objectives()) > 1 and value is not None:
            # a cost that was never measured is NaN: Optuna fails the trial rather than guess
            values = [value, *(number_or_nan((result or {}).get(c)) for c in self.objectives()[1:])]
        limits = getattr(self, "constraints", {})  # older pickles: none
        scored = result is not None and state != TrialState.FAIL
        constraints = constraint_values(result or {}, limits) if scored else {}
        try:
            attrs.update(cost_attrs(result or {}))  # a pruned trial's only record of them
            for key, attr in attrs.items():  # before tell: a finished trial is read-only
                trials[trial_id].set_user_attr(key, attr)
            set_constraints(trials[trial_id], constraints)
            compat.optuna_search_study(self).tell(
                trials[trial_id], values, state=state, skip_if_finished=True
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            # an interrupted search closed it as unfinished; tuning.study records it again
            log.debug("trial %s was closed by an interrupted search", trial_id)
        except Exception as exc:  # e.g. a storage error: the search goes on without it
            log.warning("could not tell Optuna about trial %s: %s", trial_id, exc)
        completed.add(trial_id)
