"""The private parts of Ray and Optuna that fer-search still needs, in one place.

Checked on ray 2.60.0 and optuna 5.1.0. tests/test_ray_compat.py fails with a message naming
the attribute when a release removes or renames one of them; fix it here, nowhere else.

- Ray Tune's `OptunaSearch` keeps its Optuna study and the Optuna trial of each Tune trial in
  private attributes; fer-search's searcher subclasses it to tell Optuna the truth about pruned
  and failed trials, and needs both.
- `ray._private.services.canonicalize_bootstrap_address` is what `ray.init(address="auto")`
  resolves `auto` with; the authentication probe asks the same GCS before `ray.init` does.
- Ray Train logs one line per checkpoint from a private module's logger; trials silence it.
- `Tuner.restore` takes no RunConfig: it unpickles the one the run started with (tuner.pkl).
  A resumed search's callbacks (the console view) and verbosity are its own, so they replace
  that one's through the Tuner's private `_local_tuner` (a TunerInternal).
- Tune's saved experiment state can keep a trial that was ever PAUSED (HyperBand pauses) as
  PAUSED after it ended, when `CheckpointConfig(num_to_keep)` is set (it only re-serialises
  trials marked for it); the ResultGrid `fit()` returns holds the live trials, in the private
  `_experiment_analysis`, with their true final status (run.saved_or_live_states).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CHECKED_ON",
    "QUIET_LOGGERS",
    "bootstrap_address",
    "live_trial_states",
    "missing_internals",
    "optuna_search_completed",
    "optuna_search_study",
    "optuna_search_trials",
    "restored_run_config",
]

CHECKED_ON = {"ray": "2.60.0", "optuna": "5.1.0"}
QUIET_LOGGERS = ("ray.train._internal.storage",)  # one INFO line per checkpoint
OPTUNA_SEARCH_ATTRS = ("_ot_trials", "_ot_study", "_completed_trials")


def optuna_search_trials(searcher: Any) -> dict[str, Any]:
    """Tune trial id -> its optuna.Trial (OptunaSearch._ot_trials)."""
    return searcher._ot_trials


def optuna_search_study(searcher: Any) -> Any:
    """The searcher's optuna.Study (OptunaSearch._ot_study)."""
    return searcher._ot_study


def optuna_search_completed(searcher: Any) -> set[str]:
    """Tune trial ids whose Optuna trial was told (OptunaSearch._completed_trials)."""
    return searcher._completed_trials


def restored_run_config(tuner: Any) -> Any:
    """The RunConfig a restored Tuner will run with (Tuner._local_tuner.get_run_config()); None
    through ray:// (the Tuner then lives on the head node)."""
    local = getattr(tuner, "_local_tuner", None)
    return None if local is None else local.get_run_config()


def live_trial_states(results: Any) -> dict[str, str]:
    """Trial id -> status of the trials a finished `Tuner.fit()` ran, as Tune last knew them
    (ResultGrid._experiment_analysis.trials); {} when the ResultGrid does not hold them."""
    analysis = getattr(results, "_experiment_analysis", None)
    return {trial.trial_id: trial.status for trial in getattr(analysis, "trials", None) or []}


def bootstrap_address(address: str) -> str:
    """What `ray.init(address=address)` would connect to (`auto`: the local cluster's GCS)."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(address) or ""


def missing_internals() -> list[str]:
    """What of the above this Ray and Optuna no longer have, in words; [] when all is there."""
    import importlib

    problems = []
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric="x", mode="max")
    for name in OPTUNA_SEARCH_ATTRS:
        if not hasattr(searcher, name):
            problems.append(f"ray.tune.search.optuna.OptunaSearch has no attribute {name!r}")
    import inspect

    from ray.tune import Tuner
    from ray.tune.impl.tuner_internal import TunerInternal

    if "self._local_tuner" not in inspect.getsource(Tuner.__init__):
        problems.append("ray.tune.Tuner no longer keeps its TunerInternal in _local_tuner")
    if not callable(getattr(TunerInternal, "get_run_config", None)):
        problems.append("ray.tune.impl.tuner_internal.TunerInternal has no get_run_config")
    from ray.tune import ResultGrid

    if "self._experiment_analysis" not in inspect.getsource(ResultGrid.__init__):
        problems.append("ray.tune.ResultGrid no longer keeps its trials in _experiment_analysis")
    services = importlib.import_module("ray._private.services")
    if not callable(getattr(services, "canonicalize_bootstrap_address", None)):
        problems.append("ray._private.services.canonicalize_bootstrap_address is gone")
    for name in QUIET_LOGGERS:  # loggers named after their module
        try:
            importlib.import_module(name)
        except ImportError:
            problems.append(f"module {name} is gone: its logger {name!r} has nothing to silence")
    return problems
