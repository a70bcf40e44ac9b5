"""What a search's trials run: a `Trainer`. The search passes one to Tune as the trainable and
asks it again for the final evaluation's model inference.

This module is the interface only. `EngineTrainer` (tuning.engine_trainer, the default)
trains for real with fer_search.engine. `SimulatedTrainer` (tuning.simulated) keeps everything
but the training, for scale tests and benchmarks; it is passed as an argument
(`fer_search.search(..., trainer=SimulatedTrainer())`), never switched on by the environment.
experiment.json records which one ran (`trainer`; tuning.run.trainer_from_record rebuilds it),
so `--resume` and the report know a simulated search for what it is.

A trial directory's checkpoint holds the trainer's files, and beside the weights the best
epoch's val probabilities as a small file of their own (VAL_PROBS_FILE), so that the final
evaluation selects its ensemble from those files without loading any weights.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "VAL_PROBS_FILE",
    "LoadedModel",
    "Trainer",
    "read_val_probs",
    "write_val_probs",
]

VAL_PROBS_FILE = "val_probs.npy"  # float16 (N, C): the trial's best epoch on val


@dataclass
class LoadedModel:
    """A trial's model as the final evaluation holds it: `payload` is what best/best.pt gets
    (its `config` is the trial's), `model` what `Trainer.predict` takes, `bytes_read` how much
    was read to load it."""

    payload: dict[str, Any]
    model: Any
    stored_val_probs: np.ndarray | None = None
    bytes_read: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer(Protocol):
    """The trial side of a search. `run_trial` runs inside a Tune trial (reporting each epoch
    with tune.report); the rest is the final evaluation's, in the driver or on a GPU worker."""

    @property
    def kind(self) -> str:
        """ "engine" | "simulated": experiment.json's trainer.kind."""
        ...

    def run_trial(self, config: dict[str, Any], data: Any) -> None: ...

    def describe(self) -> dict[str, Any]:
        """experiment.json's `trainer`: its kind and the arguments that rebuild it."""
        ...

    def evaluation_device(self) -> str: ...

    def load(self, checkpoint: Any, device: str) -> LoadedModel: ...

    def predict(self, loaded: LoadedModel, split: Any, device: str, tta: str = "none") -> Any:
        """Probabilities (N, C) of `split` (its images; a simulated trainer reads its labels)."""
        ...

    def save_best(self, loaded: LoadedModel, directory: Path) -> str:
        """Write the best trial's model into `directory` (best/); the file's name."""
        ...


def write_val_probs(directory: Path, probs: np.ndarray | None) -> None:
    """The best epoch's val probabilities beside a checkpoint's weights (float16)."""
    if probs is not None:
        np.save(directory / VAL_PROBS_FILE, np.asarray(probs, dtype=np.float16))


def read_val_probs(checkpoint: Any) -> tuple[np.ndarray | None, int]:
    """A checkpoint's stored val probabilities, read alone (not the weights beside them, on any
    storage Ray reaches: a local path, s3://, gs://), and the bytes read; (None, 0) for a
    checkpoint written before they were kept beside the weights."""
    import pyarrow.fs

    path = f"{checkpoint.path.rstrip('/')}/{VAL_PROBS_FILE}"
    try:
        with checkpoint.filesystem.open_input_file(path) as handle:
            raw = handle.read()
    except (FileNotFoundError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower():
            return None, 0
        info = checkpoint.filesystem.get_file_info(path)
        if info.type == pyarrow.fs.FileType.NotFound:
            return None, 0
        raise
    return np.load(io.BytesIO(raw), allow_pickle=False), len(raw)
