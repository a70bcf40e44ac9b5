"""The Ray Tune function trainable: config -> engine.train -> tune.report once per epoch.

The dataset arrives as object-store references (one shared copy per node); `ray.get` of a
numpy array is a read-only zero-copy view, and the engine never writes to it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from fer_search.config import TRAIN_FIELDS, TrainConfig

__all__ = ["CHECKPOINT_FILE", "DatasetRefs", "run_trial"]

CHECKPOINT_FILE = "checkpoint.pt"


class DatasetRefs:
    """Object-store references to each split's arrays, put once by the driver."""

    def __init__(self, splits: dict[str, Any], class_names: tuple[str, ...]) -> None:
        import ray

        self.class_names = tuple(class_names)
        self.refs = {
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


def run_trial(config: dict[str, Any], data: DatasetRefs) -> None:
    import ray
    from ray import tune

    from fer_search import engine

    # one line per epoch checkpoint is noise in the driver's console
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cfg = trial_config(config)
    fail_at = config.get("_fail_at_epoch", 0)  # fault injection for tests only
    train_split, val_split = data.get("train"), data.get("val")
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    node = ray.get_runtime_context().get_node_id()
    best = {"val_acc": float(resume["best_val_acc"]) if resume else -1.0}

    def on_epoch(stats, save) -> bool:
        if fail_at and stats.epoch >= fail_at:
            raise RuntimeError(f"injected failure at epoch {stats.epoch}")
        best["val_acc"] = max(best["val_acc"], stats.val_acc)
        metrics = dict(stats.__dict__)
        metrics.pop("extra", None)
        metrics.update(best_val_acc=best["val_acc"], max_epochs=cfg.epochs, node=node)
        with tempfile.TemporaryDirectory() as directory:
            save(Path(directory) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        return False

    result = engine.train(cfg, train_split, val_split, on_epoch=on_epoch, resume=resume)
    if result.status == "nan":
        raise FloatingPointError(result.message)
