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
- `TuneController.save_to_dir` writes the experiment state (every trial's latest checkpoint)
  and then asks each callback for its state (`Callback.get_state`): the moment at which
  tuning.checkpoint_keeper deletes the checkpoints that state no longer names. With
  `CheckpointConfig(num_to_keep=N)` Tune instead rewrites the whole state after every N
  checkpoints of a trial (`_ExperimentCheckpointManager.on_trial_checkpoint`).
- PopulationBasedTraining logs each exploit as one JSON line of `pbt_global.txt` in the
  experiment directory (ray/tune/schedulers/pbt.py, `_log_config_on_step`): [target trial's
  original experiment tag, donor's tag, target's training_iteration, donor's
  training_iteration, donor's config, the target's new config]. The tag is the one the trial
  was created with (Tune appends `@perturbed[...]` to a trial's experiment_tag when it is
  exploited). `pbt_exploits` reads it for the lineage (tuning.pbt). BasicVariantGenerator
  tags the trials it makes from `points_to_evaluate` with their index, in order ("0", "1",
  ...; then "_" and any sampled variables): `pbt_point_index`.
- At a perturbation PopulationBasedTraining asks a running trial of its top quantile for a
  checkpoint (`_checkpoint_or_exploit` schedules a `save`, marking the trial `is_saving`); then
  `TuneController._process_trial_result`, unless PBT said PAUSE, schedules another `save` when
  the result reported a checkpoint (`result[SHOULD_CHECKPOINT]`, read after the callbacks'
  `on_trial_result`, which may change the result in place). A function trainable's `save`
  returns its last reported result, so both register the same directory with the trial's
  `_CheckpointManager`, which never compares paths: when the first copy leaves
  `CheckpointConfig(num_to_keep)` it deletes the directory the second still names (often PBT's
  donor checkpoint: the trial exploiting it fails to restore), and deleting the second fails
  ("Error handling checkpoint ... Path not found"). `skip_second_save` keeps the first only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
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
    "pbt_exploits",
    "pbt_original_tag",
    "pbt_point_index",
    "restored_run_config",
    "skip_second_save",
]

CHECKED_ON = {"ray": "2.60.0", "optuna": "5.1.0"}
QUIET_LOGGERS = ("ray.train._internal.storage",)  # one INFO line per checkpoint
OPTUNA_SEARCH_ATTRS = ("_ot_trials", "_ot_study", "_completed_trials")
PBT_LOG = "pbt_global.txt"
PBT_PERTURBED = "@perturbed"  # what PBT appends to an exploited trial's experiment_tag


@dataclass(frozen=True)
class PBTExploit:
    """One exploit PBT logged: `target` took `donor`'s checkpoint and `new_config`."""

    target_tag: str
    donor_tag: str
    target_iteration: int
    donor_iteration: int
    donor_config: dict[str, Any]
    new_config: dict[str, Any]


def pbt_exploits(experiment_dir: Path | str) -> list[PBTExploit]:
    """Every exploit of a PBT search, in order, from its `pbt_global.txt` ([] when none); a line
    that is not the 6-item list Ray 2.60 writes raises ValueError naming it."""
    path = Path(experiment_dir) / PBT_LOG
    if not path.is_file():
        return []
    exploits = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if not (
            isinstance(item, list) and len(item) == 6 and all(isinstance(x, dict) for x in item[4:])
        ):
            raise ValueError(
                f"{path}:{number}: not Ray {CHECKED_ON['ray']}'s PBT log line "
                f"[target tag, donor tag, target iteration, donor iteration, donor config, "
                f"new config]: {line[:200]}"
            )
        target, donor, target_it, donor_it, donor_config, new_config = item
        exploits.append(
            PBTExploit(str(target), str(donor), int(target_it), int(donor_it), donor_config,
                       new_config)
        )  # fmt: skip
    return exploits


def pbt_point_index(experiment_tag: str) -> int | None:
    """The index in points_to_evaluate of the point a trial was made from (its tag's counter)."""
    head = pbt_original_tag(experiment_tag).partition("_")[0]
    return int(head) if head.isdigit() else None


def pbt_original_tag(experiment_tag: str) -> str:
    """A trial's experiment tag as it was created (the one PBT's log names it by)."""
    return experiment_tag.partition(PBT_PERTURBED)[0]


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


def skip_second_save(trial: Any, result: dict[str, Any]) -> bool:
    """From a callback's `on_trial_result`: when the scheduler already asked `trial` for the
    checkpoint `result` reported (the pending save will register it), tell Tune not to ask again
    (result[SHOULD_CHECKPOINT] = False); True when it did."""
    from ray.tune.result import SHOULD_CHECKPOINT

    if not (trial.is_saving and result.get(SHOULD_CHECKPOINT)):
        return False
    result[SHOULD_CHECKPOINT] = False
    return True


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
    from ray.tune.schedulers import pbt

    source = inspect.getsource(pbt.PopulationBasedTraining._log_config_on_step)
    if f'"{PBT_LOG}"' not in source or "trial_to_clone.config" not in source:
        problems.append(f"ray.tune.schedulers.pbt no longer logs exploits to {PBT_LOG}")
    if f'"{{}}{PBT_PERTURBED}[{{}}]"' not in inspect.getsource(pbt._make_experiment_tag):
        problems.append(f"ray's PBT no longer marks an exploited trial's tag with {PBT_PERTURBED}")
    from ray.tune.search.basic_variant import _TrialIterator

    if "experiment_tag = str(self.counter)" not in inspect.getsource(_TrialIterator.create_trial):
        problems.append("ray's BasicVariantGenerator no longer tags a trial with its counter")
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    source = inspect.getsource(TuneController._process_trial_result)
    told, read = source.find("self._callbacks.on_trial_result"), source.find("SHOULD_CHECKPOINT")
    if not 0 <= told < read:
        problems.append("Tune no longer reads a result's SHOULD_CHECKPOINT after its callbacks")
    if not isinstance(getattr(Trial, "is_saving", None), property):
        problems.append("ray.tune.experiment.Trial has no is_saving")
    services = importlib.import_module("ray._private.services")
    if not callable(getattr(services, "canonicalize_bootstrap_address", None)):
        problems.append("ray._private.services.canonicalize_bootstrap_address is gone")
    for name in QUIET_LOGGERS:  # loggers named after their module
        try:
            importlib.import_module(name)
        except ImportError:
            problems.append(f"module {name} is gone: its logger {name!r} has nothing to silence")
    return problems
