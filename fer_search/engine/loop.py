"""The training loop: epochs of device-resident batches, validation, best-epoch selection.

The dataset stays one uint8 tensor on the training device; each batch is gathered by index,
normalised and augmented there, so the hot loop has no per-image Python, no PIL and no
DataLoader workers. Metrics accumulate on the device and are read once per epoch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_search import augment
from fer_search.config import EpochStats, TrainConfig
from fer_search.data import FERSplit
from fer_search.engine.checkpoint import restore, resumable_payload, save_checkpoint
from fer_search.engine.devices import configure_backends, out_of_memory, resolve_device, to_device
from fer_search.engine.inference import (
    as_tensor,
    compact_probs,
    epoch_metrics,
    predict_probs,
    to_input,
)
from fer_search.engine.optim import apply_settings, lr_factor, update_ema
from fer_search.engine.precision import amp_dtype, precision_name, use_channels_last
from fer_search.engine.prepare import prepare_data, prepare_state, seed_everything
from fer_search.engine.state import DeviceData, EpochCallback, TrainResult, TrainState
from fer_search.errors import UserError
from fer_search.stats import accuracy_ci

__all__ = ["train"]


def train(
    cfg: TrainConfig,
    train_split: FERSplit,
    val_split: FERSplit,
    *,
    on_epoch: EpochCallback | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train `cfg.model` on `train_split`, selecting the best epoch on `val_split`.

    `resume` is a checkpoint payload from an earlier run of the same config: training continues
    after its epoch with its optimiser, schedule, random stream and best-so-far state. Running
    out of device memory raises DeterministicError; a non-finite loss ends with status "nan".
    """
    cfg.validate()
    if len(train_split) == 0 or len(val_split) == 0:
        raise UserError("training needs non-empty train and val splits")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    configure_backends(device)
    seed_everything(cfg.seed)
    precision = precision_name(cfg, device)
    data = prepare_data(cfg, train_split, device)
    val_images = to_device(as_tensor(val_split.images), device)  # once per trial, not per epoch
    state = prepare_state(cfg, len(train_split.class_names), device)
    start_epoch = 0
    if resume is not None:  # the checkpoint's optimiser state, with this run's settings
        start_epoch = restore(state, resume)
        apply_settings(state.optimizer, cfg)

    status, message = "completed", f"trained {cfg.epochs} epochs"
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        desc = f"epoch {epoch}/{cfg.epochs}"
        train_loss, train_acc, seen = _train_epoch(cfg, data, state, device, desc, progress)
        train_time = time.perf_counter() - t0
        probs = _validate(cfg, state, val_images, device)
        bad = "training loss" if not math.isfinite(train_loss) else "validation outputs"
        if bad == "training loss" or not np.isfinite(probs).all():
            status = "nan"  # argmax of NaN is no accuracy: stop, keep the best epoch so far
            message = f"non-finite {bad} at epoch {epoch} (lr={cfg.lr:g}); stopped"
            break
        val_loss, val_acc, val_f1 = _select(cfg, state, epoch, probs, val_split.labels)
        low, high = accuracy_ci(val_split.labels, probs.argmax(1))
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            val_loss=val_loss,
            val_acc=val_acc,
            val_f1=val_f1,
            lr=state.optimizer.param_groups[0]["lr"],
            images_per_s=seen / train_time,
            epoch_time=time.perf_counter() - t0,
            precision=precision,
            val_acc_ci95_lo=low,
            val_acc_ci95_hi=high,
        )
        state.history.append(stats)

        def save(path: Path, _epoch: int = epoch) -> dict[str, Any]:
            payload = resumable_payload(cfg, state, train_split.class_names, _epoch)
            save_checkpoint(path, payload)
            return payload

        if on_epoch is not None and on_epoch(stats, save) is True:
            status, message = "stopped", f"stopped after epoch {epoch} by the caller"
            break
    return _result(state, status, message, precision)


def _train_epoch(
    cfg: TrainConfig,
    data: DeviceData,
    state: TrainState,
    device: torch.device,
    desc: str,
    progress: bool,
) -> tuple[float, float, int]:
    """One pass over the data; returns (mean loss, accuracy, images seen). Metrics accumulate on
    the device and are read once, at the end (no host sync per step)."""
    state.model.train()
    n = len(data.index)
    batch = min(cfg.batch_size, n)
    steps = max(1, n // batch)  # drop the ragged last batch (BatchNorm needs > 1)
    channels_last = use_channels_last(cfg, device)
    aug = cfg.augment()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    perm = torch.randperm(n, device=device, generator=state.generator)
    order, flips = data.index[perm], data.mirror[perm]  # mirror flags travel with their images
    batches: Any = range(steps)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=desc, leave=False)
    try:
        for b in batches:
            sel = slice(b * batch, (b + 1) * batch)
            idx = order[sel]
            x = to_input(data.images[idx], channels_last)
            x = torch.where(flips[sel].view(-1, 1, 1, 1), torch.flip(x, dims=[3]), x)
            x, y = augment.augment_batch(x, data.targets[idx], aug, generator=state.generator)
            factor = lr_factor(cfg, state.step, steps * cfg.epochs, steps) * state.plateau.scale
            for group in state.optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            loss, logits = _train_step(cfg, state, device, x, y, data.weights)
            loss_sum += loss * batch
            correct += (logits.argmax(1) == y.argmax(1)).sum()
    except torch.OutOfMemoryError:
        raise out_of_memory(device, "batch_size", cfg.batch_size) from None
    seen = steps * batch
    return float(loss_sum) / seen, float(correct) / seen, seen


def _train_step(
    cfg: TrainConfig,
    state: TrainState,
    device: torch.device,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step in the run's precision (autocast, and loss scaling in fp16), then the
    EMA update; returns the detached loss and the logits."""
    dtype = amp_dtype(cfg, device)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = state.step_model(x)
        loss = F.cross_entropy(
            logits.float(), y, weight=weights, label_smoothing=cfg.label_smoothing
        )
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.ema is not None:
        update_ema(cfg, state.ema, state.model, state.step)
    state.step += 1
    return loss.detach(), logits


def _validate(
    cfg: TrainConfig, state: TrainState, val_images: torch.Tensor, device: torch.device
) -> np.ndarray:
    """The validated network's probabilities on the (device-resident) val images."""
    try:
        return predict_probs(
            state.eval_model, val_images, device=device, batch_size=cfg.eval_batch_size
        )
    except torch.OutOfMemoryError:
        raise out_of_memory(device, "eval_batch_size", cfg.eval_batch_size) from None


def _select(
    cfg: TrainConfig, state: TrainState, epoch: int, probs: np.ndarray, labels: np.ndarray
) -> tuple[float, float, float]:
    """Validation (loss, accuracy, macro F1); steps the plateau schedule and keeps a copy of the
    weights, and of the probabilities (float16), when the epoch is the best so far."""
    val_loss, val_acc, val_f1 = epoch_metrics(probs, labels)
    if cfg.schedule == "plateau":
        state.plateau.step(val_acc)
    if val_acc > state.best_acc:
        state.best_acc, state.best_epoch = val_acc, epoch
        state.best_state = {
            k: v.detach().cpu().clone() for k, v in state.eval_model.state_dict().items()
        }
        state.best_val_probs = compact_probs(probs)
    return val_loss, val_acc, val_f1


def _result(state: TrainState, status: str, message: str, precision: str) -> TrainResult:
    """The run's outcome; the model is left holding the best epoch's weights."""
    if state.best_state is not None:
        state.model.load_state_dict(state.best_state)
    return TrainResult(
        status=status,
        message=message,
        epochs_run=len(state.history),
        best_epoch=state.best_epoch,
        best_val_acc=max(state.best_acc, 0.0),
        history=state.history,
        model=state.model,
        model_args=dict(state.model.fer_args),  # type: ignore[arg-type]
        precision=precision,
    )
