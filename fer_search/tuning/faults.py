"""Faults injected into chosen trials, for tests of what a search survives: `FaultyTrainer` is
an EngineTrainer that makes them raise, diverge to NaN or lose their worker process. It is
passed like any trainer (`fer_search.search(..., trainer=FaultyTrainer("raise:trial=1:epoch=2"))`)
and experiment.json records it, so a resumed search injects the same faults. The `fer-search`
command builds one from $FER_SEARCH_FAULT (tests run the command in a subprocess); nothing
else reads that variable.

A spec is a comma-separated list of `KIND[:trial=N][:epoch=E]`, N the Optuna trial number
(`trial_number` in the trial config; left out: every trial):

    raise:trial=1:epoch=2   raise RuntimeError once epoch 2 is trained, before it is reported
    kill:trial=1:epoch=2    after epoch 2 is reported and checkpointed, end the worker process
                            with os._exit(1); once only (a marker in the trial directory), so
                            Tune's retry continues from the epoch-2 checkpoint
    nan:trial=1             train with lr=1e8: the engine stops with status "nan" and the trial
                            ends with that reason (a deterministic failure: not retried)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_search.tuning.engine_trainer import EngineTrainer
from fer_search.tuning.trainable import run_trial

__all__ = ["FAULT_ENV", "FaultyTrainer", "parse_faults"]

FAULT_ENV = "FER_SEARCH_FAULT"  # the CLI's way to pass a spec (cli/commands.py)
FAULT_KINDS = ("raise", "kill", "nan")
KILLED_MARKER = ".fer-search-fault-killed"


def parse_faults(text: str) -> list[tuple[str, int | None, int]]:
    """A spec -> [(kind, Optuna trial number or None for every trial, epoch)]."""
    faults = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        kind, *fields = entry.split(":")
        values: dict[str, int] = {}
        for field in fields:
            key, _, number = field.partition("=")
            if key not in ("trial", "epoch") or not number.isdigit():
                raise ValueError(f"fault spec: bad field {field!r} in {entry!r}")
            values[key] = int(number)
        if kind not in FAULT_KINDS or (kind == "nan") == ("epoch" in values):
            raise ValueError(
                f"fault spec: {entry!r} is not raise|kill:[trial=N:]epoch=E or nan[:trial=N]"
            )
        faults.append((kind, values.get("trial"), values.get("epoch", 0)))
    return faults


@dataclass(frozen=True)
class FaultyTrainer(EngineTrainer):
    """Real training, with the faults of `spec` injected into the trials it names."""

    spec: str = ""

    def __post_init__(self) -> None:
        parse_faults(self.spec)  # a bad spec fails here, in the driver, not in every trial

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "faults": self.spec}

    def run_trial(self, config: dict[str, Any], data: Any) -> None:
        number = config.get("trial_number")
        faults = {(kind, epoch) for kind, trial, epoch in parse_faults(self.spec)
                  if trial is None or trial == number}  # fmt: skip
        if ("nan", 0) in faults:
            config = {**config, "lr": 1e8}  # diverges for real, through the engine's own check

        def at_epoch(epoch: int, reported: bool) -> None:
            if not reported and ("raise", epoch) in faults:
                raise RuntimeError(f"injected fault: raise at epoch {epoch} ({self.spec})")
            if reported and ("kill", epoch) in faults:
                kill_once(epoch)

        run_trial(config, data, at_epoch=at_epoch)


def kill_once(epoch: int) -> None:
    """End the worker process after `epoch`, once (a marker in the trial directory), so that
    Tune's retry continues from the checkpoint."""
    from ray import tune

    marker = Path(tune.get_context().get_trial_dir()) / KILLED_MARKER
    if not marker.exists():  # the retry must not die again
        marker.write_text(f"killed after epoch {epoch}\n")
        os._exit(1)
