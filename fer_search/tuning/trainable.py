"""The Ray Tune function trainable: config -> engine.train -> tune.report once per epoch.

The dataset arrives as object-store references (one shared copy per node); `ray.get` of a
numpy array is a read-only zero-copy view, and the engine never writes to it.

Faults for tests are injected by tuning.faults.FaultyTrainer through `at_epoch`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from fer_search.config import TRAIN_FIELDS, TrainConfig
from fer_search.errors import DeterministicError, UserError
from fer_search.tuning._ray_compat import QUIET_LOGGERS
from fer_search.tuning.trainers import write_val_probs

__all__ = [
    "CHECKPOINT_FILE",
    "MEASURE_COST",
    "REFIT_MEMBER",
    "DatasetRefs",
    "run_refit_trial",
    "run_trial",
    "trainer_trial",
    "trial_config",
]

CHECKPOINT_FILE = "checkpoint.pt"
MEASURE_COST = "measure_cost"  # a trial config's switch: report the model's costs each epoch
REFIT_MEMBER = "refit_member"  # a refit trial's config: which of the refit's configurations


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

    def labels(self, name: str) -> Any:
        """A split's labels alone (the images stay in the object store)."""
        import ray

        return ray.get(self.refs[name]["labels"])

    def get(self, name: str) -> Any:
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


def trial_device(cfg: TrainConfig) -> str:
    """The device this trial trains on. A trial Ray gave a GPU trains on CUDA; with
    FER_SEARCH_SIMULATE_GPU=1 (a testing switch) on the CPU instead. A GPU that torch cannot
    see (no driver, a CPU-only torch) is a deterministic failure naming the node."""
    import ray
    import torch

    from fer_search.tuning.devices import device_for_gpu_work, no_cuda_message

    if not cfg.device.startswith("cuda"):
        return cfg.device
    device = device_for_gpu_work()
    if device == "cuda" and not torch.cuda.is_available():
        node = ray.get_runtime_context().get_node_id()[:12]
        raise DeterministicError(no_cuda_message(node, torch.__version__, torch.version.cuda))
    return cfg.device if device == "cuda" else "cpu"


def should_checkpoint(
    epoch: int, every: int, last: int, new_best: bool, at: Collection[int] = ()
) -> bool:
    """A resumable checkpoint every `every` epochs, at the last and at the epochs `at` (where
    the scheduler may pause the trial: it resumes from the checkpoint it last reported); and
    whenever val_acc improves, so that the best epoch's weights are kept whatever `every` is."""
    return new_best or epoch == last or epoch in at or epoch % max(1, every) == 0


def run_trial(
    config: dict[str, Any],
    data: DatasetRefs,
    at_epoch: Callable[[int, bool], None] | None = None,
) -> None:
    """One trial: train `config` on `data`, reporting each epoch (and a checkpoint when
    should_checkpoint says so) to Tune. `at_epoch(epoch, reported)` is called once an epoch is
    trained (reported False) and once it is reported (True): tests inject faults there
    (tuning.faults)."""
    import ray
    from ray import tune

    from fer_search import engine

    quiet_ray_loggers()
    node = ray.get_runtime_context().get_node_id()
    every = int(config.get("checkpoint_every", 1))
    pause_at = {int(epoch) for epoch in config.get("checkpoint_at") or ()}
    try:
        cfg = trial_config(config)
        cfg.device = trial_device(cfg)
    except (UserError, DeterministicError) as exc:
        report_failure(str(exc), None, node)
        return
    train_split, val_split = data.get("train"), data.get("val")
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    best = {"val_acc": float(resume["best_val_acc"]) if resume else -1.0}
    cost: dict[str, float] = {}  # a multi-objective search's model costs (engine.cost)
    if config.get(MEASURE_COST):
        cost = engine.measure_cost(cfg, len(data.class_names), int(val_split.images.shape[-1]))
    gpu_ids = ",".join(str(i) for i in ray.get_gpu_ids())
    last: dict[str, Any] = {}

    def on_epoch(stats: Any, save: Callable[[Path], dict[str, Any]]) -> bool:
        if at_epoch is not None:
            at_epoch(stats.epoch, False)
        new_best = stats.val_acc > best["val_acc"]
        best["val_acc"] = max(best["val_acc"], stats.val_acc)
        metrics = dict(stats.__dict__)
        metrics.pop("extra", None)
        metrics.update(
            best_val_acc=best["val_acc"], max_epochs=cfg.epochs, node=node, gpu_ids=gpu_ids
        )
        metrics.update(cost)
        last.update(metrics)
        if should_checkpoint(stats.epoch, every, cfg.epochs, new_best, pause_at):
            with tempfile.TemporaryDirectory() as directory:
                payload = save(Path(directory) / CHECKPOINT_FILE)
                probs = payload.get("best_val_probs")  # the final evaluation reads these alone
                write_val_probs(Path(directory), None if probs is None else probs.numpy())
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
        if at_epoch is not None:
            at_epoch(stats.epoch, True)
        return False

    try:
        result = engine.train(cfg, train_split, val_split, on_epoch=on_epoch, resume=resume)
    except (UserError, DeterministicError) as exc:
        report_failure(str(exc), last, node)
        return
    if result.status == "nan":
        report_failure(result.message, last, node)


def quiet_ray_loggers() -> None:
    for name in QUIET_LOGGERS:  # one line per epoch checkpoint is noise in the driver's console
        logging.getLogger(name).setLevel(logging.WARNING)


def report_failure(message: str, last: dict[str, Any] | None, node: str) -> None:
    """End a trial that would fail the same way again: report its reason as the last result
    (`failure`) and return, so that Tune does not retry it and the searcher tells Optuna FAIL.
    The result repeats the last epoch (or epoch 0) with no val_acc, which the schedulers ignore."""
    from ray import tune

    metrics = {**(last or {"epoch": 0, "node": node}), "val_acc": float("nan")}
    metrics["failure"] = message.strip().splitlines()[0][:300] if message.strip() else "failed"
    tune.report(metrics)


def trainer_trial(config: dict[str, Any], data: DatasetRefs, trainer: Any) -> None:
    """The Tune trainable of a search: one trial of `trainer` (tuning.trainers.Trainer)."""
    quiet_ray_loggers()
    trainer.run_trial(config, data)


def run_refit_trial(
    config: dict[str, Any], data: DatasetRefs, members: list[dict[str, Any]], trainer: Any
) -> None:
    """One of the refit's trials: config[REFIT_MEMBER] picks its whole trial config from
    `members` (Tune grid-searches the index, so k different configurations run as k trials)."""
    index = config.get(REFIT_MEMBER)
    quiet_ray_loggers()
    trainer.run_trial(config if index is None else members[int(index)], data)
