"""The search's trial scheduler, Ray Tune's own: ASHA, HyperBand, the median stopping rule or
FIFO (config.SCHEDULERS), from the space's `experiment:` block.

HyperBand (synchronous) pauses a trial when it reaches its bracket's milestone and resumes it,
from its last checkpoint, once the bracket's other trials got there. A function trainable's
pause keeps the checkpoint it last reported, so a trial must report one at every milestone or
it would train again the epochs since: `checkpoint_epochs` names those epochs for the trainable.
Tune's `max_concurrent_trials` counts paused trials, and trials are added to a bracket only as
the searcher is asked for them, so with a limit below the bracket's size HyperBand never halves
(trials leave the bracket as they finish and new ones take their places, all run to max_t) and
leaves trials paused at the end: a HyperBand search has no such limit (the tuner passes None;
the resources per trial bound the trials running at once) and `max_concurrent` is refused.
`hyperband_milestones` follows ray/tune/schedulers/hyperband.py (checked on ray 2.60.0;
tests/test_search.py drives Ray's scheduler and fails when its pauses leave these epochs).

The median stopping rule would pause a trial too, to yield to pending ones while it lacks
samples; `min_time_slice=max_t` turns that off, so it only ever stops trials.

PBT (asynchronous PopulationBasedTraining) looks at a trial every `perturbation_interval`
epochs: one in the bottom quarter goes on from the checkpoint a top-quarter trial last
reported there, with that trial's configuration perturbed (space.mutations: lr, weight decay
and augmentation strengths, kept inside the space's ranges by `KeepInSpace`). So a trial
checkpoints at every multiple of the interval, and it may also be paused there so that
pending trials get their turn. It never stops a trial: every trial runs to max_t. It cannot
run with a searcher (Ray refuses any Searcher with PBT): the tuner hands Tune the initial
population, sampled from the Optuna study beforehand (tuning.pbt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fer_search.space.mutations import keep_in_space, mutable_params, perturbation_interval

if TYPE_CHECKING:
    from fer_search.space import SearchSpace

__all__ = [
    "STEP_ATTR",
    "KeepInSpace",
    "anneal_epochs",
    "asha_milestones",
    "checkpoint_epochs",
    "hyperband_milestones",
    "make_scheduler",
    "pbt_mutations",
]

STEP_ATTR = "epoch"


def make_scheduler(space: SearchSpace) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    ex = space.experiment
    if ex.scheduler == "asha":
        return ASHAScheduler(
            time_attr=STEP_ATTR,
            max_t=ex.epochs,
            grace_period=ex.grace_period,
            reduction_factor=ex.reduction_factor,
        )
    if ex.scheduler == "hyperband":
        return HyperBandScheduler(
            time_attr=STEP_ATTR, max_t=ex.epochs, reduction_factor=ex.reduction_factor
        )
    if ex.scheduler == "median":
        return MedianStoppingRule(
            time_attr=STEP_ATTR,
            grace_period=ex.grace_period,
            min_samples_required=ex.min_samples_required,
            min_time_slice=ex.epochs,  # never pause a trial to yield (see the docstring)
        )
    if ex.scheduler == "pbt":
        return PopulationBasedTraining(
            time_attr=STEP_ATTR,
            perturbation_interval=perturbation_interval(ex.epochs, ex.perturbation_interval),
            hyperparam_mutations=pbt_mutations(space),
            custom_explore_fn=KeepInSpace(space),
        )
    if ex.scheduler == "fifo":
        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {ex.scheduler!r}")  # the space checked it: a bug


def pbt_mutations(space: SearchSpace) -> dict[str, Any]:
    """PBT's hyperparam_mutations: each mutable setting's range as a Tune domain (log where the
    space samples it in log). A setting two parameters sample (`lr@sgd`, `lr@adamw`) resamples
    from the span of both; KeepInSpace then clips it to the range of the active one."""
    from ray import tune

    mutations = {}
    for setting, params in mutable_params(space).items():
        low = min(float(p.low or 0.0) for p in params)  # a range always has low and high
        high = max(float(p.high or 0.0) for p in params)
        log = all(p.kind == "loguniform" for p in params)
        mutations[setting] = tune.loguniform(low, high) if log else tune.uniform(low, high)
    return mutations


class KeepInSpace:
    """PBT's custom_explore_fn (picklable: Tune saves the scheduler with the experiment): the
    perturbed config back inside the space (space.mutations.keep_in_space)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return keep_in_space(self.space, config)


def asha_milestones(max_t: int, grace_period: int, eta: int) -> list[int]:
    """The epochs at which Ray's ASHAScheduler(max_t, grace_period, eta) (one bracket) judges a
    trial: grace_period * eta**k, as many as its _Bracket makes (ray/tune/schedulers/
    async_hyperband.py on ray 2.60.0; tests/test_schedulers.py checks against Ray's)."""
    rungs = int(np.log(max_t / grace_period) / np.log(eta) + 1)
    return [grace_period * eta**k for k in range(rungs)]


def anneal_epochs(space: SearchSpace) -> str:
    """A trial's TrainConfig.anneal_at: its ASHA rungs before the last epoch when the space asks
    for `rung_anneal`, else ""."""
    ex = space.experiment
    if not ex.rung_anneal or ex.scheduler != "asha":
        return ""
    rungs = asha_milestones(ex.epochs, ex.grace_period, ex.reduction_factor)
    return ",".join(str(epoch) for epoch in rungs if epoch < ex.epochs)


def hyperband_milestones(max_t: int, eta: int) -> list[int]:
    """The epochs at which Ray's HyperBandScheduler(max_t, reduction_factor=eta) pauses or
    stops a trial: each bracket's r0 = int(max_t * eta**-s), times eta until max_t."""
    s_max_1 = int(np.round(np.log(max_t) / np.log(eta))) + 1
    found: set[int] = set()
    for s in range(s_max_1):
        r = int(max_t * eta ** (-s))
        if r == 0:  # Ray skips a bracket too small to run
            continue
        found.add(r)
        for _ in range(s):
            r = int(min(r * eta, max_t))
            found.add(r)
    return sorted(found)


def checkpoint_epochs(space: SearchSpace) -> list[int]:
    """Epochs a trial must checkpoint at, besides its `checkpoint_every` policy: where the
    scheduler may pause it."""
    ex = space.experiment
    if ex.scheduler == "hyperband":
        return hyperband_milestones(ex.epochs, ex.reduction_factor)
    if ex.scheduler == "pbt":  # where it exploits, perturbs or pauses
        interval = perturbation_interval(ex.epochs, ex.perturbation_interval)
        return list(range(interval, ex.epochs + 1, interval))
    return []
