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
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["STEP_ATTR", "checkpoint_epochs", "hyperband_milestones", "make_scheduler"]

STEP_ATTR = "epoch"


def make_scheduler(space: Any) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
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
    if ex.scheduler == "fifo":
        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {ex.scheduler!r}")  # the space checked it: a bug


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


def checkpoint_epochs(space: Any) -> list[int]:
    """Epochs a trial must checkpoint at, besides its `checkpoint_every` policy: where the
    scheduler may pause it."""
    ex = space.experiment
    if ex.scheduler == "hyperband":
        return hyperband_milestones(ex.epochs, ex.reduction_factor)
    return []
