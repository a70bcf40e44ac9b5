"""The Ray Tune function trainable: config -> engine.train -> tune.report once per epoch.

The dataset arrives as object-store references (one shared copy per node); `ray.get` of a
numpy array is a read-only zero-copy view, and the engine never writes to it.

Test hook: the environment variable FER_SEARCH_FAULT injects faults into chosen trials (Ray
workers on a local cluster inherit the driver's environment). It is a comma-separated list of
`KIND[:trial=N][:epoch=E]`, where N is the Optuna trial number (`trial_number` in the trial
config; leave it out for every trial):

    raise:trial=1:epoch=2   raise RuntimeError in epoch 2's callback, before it is reported
    kill:trial=1:epoch=2    after epoch 2 is reported and checkpointed, end the worker process
                            with os._exit(1); once only (a marker in the trial directory), so
                            Tune's retry continues from the epoch-2 checkpoint
    nan:trial=1             train with lr=1e8: the engine stops with status "nan" and the trial
                            raises FloatingPointError
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from fer_search.config import TRAIN_FIELDS, TrainConfig

__all__ = ["CHECKPOINT_FILE", "REFIT_MEMBER", "DatasetRefs", "run_refit_trial", "run_trial"]

CHECKPOINT_FILE = "checkpoint.pt"
REFIT_MEMBER = "refit_member"  # a refit trial's config: which of the refit's configurations
FAULT_ENV = "FER_SEARCH_FAULT"
FAULT_KINDS = ("raise", "kill", "nan")
KILLED_MARKER = ".fer-search-fault-killed"


class DatasetRefs:
    """Object-store references to each split's arrays, put once by the driver."""

    def __init__(self, splits: dict[str, Any], class_names: tuple[str, ...]) -> None:
        import ray

        self.class_names = tuple(class_names)
        self.refs: dict[str, dict[str, Any]] = {
            name: {
                "images": ray.put(split.images),
                "labels": ray.put(split.labels),
                "soft": None if split.soft_labels is None else ray.put(split.soft_labels),
            }
            for name, split in splits.items()
            if name in ("train", "val")  # trials never see the test split
        }

    def get(self, name: str):
        import ray

        from fer_search.data import FERSplit

        refs = self.refs[name]
        return FERSplit(
            name=name,
            images=ray.get(refs["images"]),
            labels=ray.get(refs["labels"]),
            class_names=self.class_names,
            soft_labels=None if refs["soft"] is None else ray.get(refs["soft"]),
        )


def trial_config(config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig part of a Tune config (the rest is bookkeeping). Tagged parameters such
    as `lr@sgd` set their field (`lr`)."""
    from fer_search.space import train_values

    values = train_values(config)
    return TrainConfig.from_dict({k: v for k, v in values.items() if k in TRAIN_FIELDS})


def parse_faults(text: str) -> list[tuple[str, int | None, int]]:
    """FER_SEARCH_FAULT -> [(kind, Optuna trial number or None for every trial, epoch)]."""
    faults = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        kind, *fields = entry.split(":")
        values: dict[str, int] = {}
        for field in fields:
            key, _, number = field.partition("=")
            if key not in ("trial", "epoch") or not number.isdigit():
                raise ValueError(f"{FAULT_ENV}: bad field {field!r} in {entry!r}")
            values[key] = int(number)
        if kind not in FAULT_KINDS or (kind == "nan") == ("epoch" in values):
            raise ValueError(
                f"{FAULT_ENV}: {entry!r} is not raise|kill:[trial=N:]epoch=E or nan[:trial=N]"
            )
        faults.append((kind, values.get("trial"), values.get("epoch", 0)))
    return faults


def run_trial(config: dict[str, Any], data: DatasetRefs) -> None:
    import ray
    from ray import tune

    from fer_search import engine

    # one line per epoch checkpoint is noise in the driver's console
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cfg = trial_config(config)
    number = config.get("trial_number")
    faults = [
        (kind, epoch)
        for kind, trial, epoch in parse_faults(os.environ.get(FAULT_ENV, ""))
        if trial is None or trial == number
    ]
    if ("nan", 0) in faults:
        cfg.lr = 1e8  # diverges for real, through the engine's own non-finite check
    train_split, val_split = data.get("train"), data.get("val")
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    node = ray.get_runtime_context().get_node_id()
    best = {"val_acc": float(resume["best_val_acc"]) if resume else -1.0}

    def on_epoch(stats, save) -> bool:
        if ("raise", stats.epoch) in faults:
            raise RuntimeError(f"injected fault: raise at epoch {stats.epoch} ({FAULT_ENV})")
        best["val_acc"] = max(best["val_acc"], stats.val_acc)
        metrics = dict(stats.__dict__)
        metrics.pop("extra", None)
        metrics.update(best_val_acc=best["val_acc"], max_epochs=cfg.epochs, node=node)
        with tempfile.TemporaryDirectory() as directory:
            save(Path(directory) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        if ("kill", stats.epoch) in faults:
            marker = Path(tune.get_context().get_trial_dir()) / KILLED_MARKER
            if not marker.exists():  # the retry must not die again
                marker.write_text(f"killed after epoch {stats.epoch}\n")
                os._exit(1)
        return False

    result = engine.train(cfg, train_split, val_split, on_epoch=on_epoch, resume=resume)
    if result.status == "nan":
        raise FloatingPointError(result.message)


def run_refit_trial(config: dict[str, Any], data: DatasetRefs, members: list[dict[str, Any]]):
    """One of the refit's trials: config[REFIT_MEMBER] picks its whole trial config from
    `members` (Tune grid-searches the index, so k different configurations run as k trials)."""
    index = config.get(REFIT_MEMBER)
    run_trial(config if index is None else members[int(index)], data)
