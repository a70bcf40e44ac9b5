"""One checkpoint per trial on disk, without Tune's per-checkpoint experiment snapshot.

With `CheckpointConfig(num_to_keep=1)` Tune deletes a trial's older checkpoint as soon as it
has a new one, and so that its saved experiment state never names a deleted checkpoint it
rewrites that whole state (every trial, and the pickled searcher) after every trial checkpoint
(`_ExperimentCheckpointManager`, `sync_every_n_trial_checkpoints`). That snapshot grows with the
number of trials and runs once per checkpoint: at a thousand trials, 64 at a time, it is most of
the driver's time. `LatestCheckpoint` keeps the same promise the other way round: Tune keeps
every checkpoint (num_to_keep=None) and snapshots on its own period (at most 5 % of the time),
and right after each snapshot this callback deletes each trial's checkpoints older than the
one that snapshot names (its latest). Resume, retries and the final evaluation read only that
one. Between snapshots a running trial holds the checkpoints of its last few seconds.

Used for local storage and the schedulers that never go back to an older checkpoint (PBT's
donors are kept by Tune's own policy). When Tune takes the snapshot: see _ray_compat.

That policy counts on Tune registering each checkpoint once. Under PBT a top trial's
checkpoint at a perturbation is asked for twice (by PBT, and by Tune for the result that
reported it), and registered twice Tune deletes its directory while the trial still names it:
`OneSavePerCheckpoint` lets only the first ask (see _ray_compat).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ray.tune import Callback

from fer_search.tuning import _ray_compat as compat

__all__ = ["LatestCheckpoint", "OneSavePerCheckpoint"]

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_"  # Tune's checkpoint directories in a trial's directory


class LatestCheckpoint(Callback):
    """Delete each trial's superseded checkpoints once Tune's experiment state names a newer one."""

    def __init__(self) -> None:
        self._written: dict[str, list[str]] = {}  # trial id -> its checkpoint paths, oldest first

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self._written.setdefault(trial.trial_id, []).append(checkpoint.path)

    def get_state(self) -> dict[str, Any] | None:
        # Tune calls this right after writing its experiment state (_ray_compat): from now on
        # that state names each trial's latest checkpoint, so the older ones can go
        for trial_id, paths in self._written.items():
            if not paths:
                continue
            latest = Path(paths[-1])
            try:
                written = latest.stat().st_mtime_ns
            except FileNotFoundError:  # not ours to judge: leave the trial's directory as it is
                continue
            # its older ones, and those a resumed trial made before the search was interrupted
            # (Tune numbers them on from its last snapshot, so not older by number); never one
            # written after it, which the trial may have made and Tune not yet registered
            for older in latest.parent.glob(f"{CHECKPOINT_PREFIX}*"):
                if older != latest and older.is_dir() and older.stat().st_mtime_ns < written:
                    shutil.rmtree(older, ignore_errors=True)
            self._written[trial_id] = []
        return None  # nothing to restore: a resumed run finds the older ones on disk


class OneSavePerCheckpoint(Callback):
    """Tune saves a result's checkpoint only once when the scheduler (PBT) already asked for it."""

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        compat.skip_second_save(trial, result)
