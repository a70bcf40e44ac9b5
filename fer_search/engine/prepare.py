"""Before the first epoch: seeds, the model, the training data on the device, the run's state."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from fer_search import augment
from fer_search.config import TrainConfig
from fer_search.data import FERSplit
from fer_search.engine.devices import to_device
from fer_search.engine.inference import as_tensor
from fer_search.engine.optim import Plateau, make_optimizer, new_ema
from fer_search.engine.precision import make_grad_scaler, use_channels_last
from fer_search.engine.state import DeviceData, TrainState
from fer_search.models import create_model

__all__ = ["build_model", "mirror_balance", "prepare_data", "prepare_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mirror_balance(
    labels: np.ndarray, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The original study's balancing, as indices: every class is topped up to the size of the
    largest with mirrored copies of its own images. Returns (indices, mirror flags); the images
    themselves are never copied, so a shared dataset stays shared."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=num_classes)
    target = counts.max()
    indices, mirror = [np.arange(len(labels))], [np.zeros(len(labels), dtype=bool)]
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        missing = target - len(members)
        if missing > 0 and len(members):
            indices.append(rng.choice(members, size=missing, replace=missing > len(members)))
            mirror.append(np.ones(missing, dtype=bool))
    return np.concatenate(indices), np.concatenate(mirror)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    return create_model(
        cfg.model,
        num_classes,
        dropout=cfg.dropout,
        batch_norm=cfg.batch_norm,
        width=cfg.width,
        depth=cfg.depth,
        convs=cfg.convs,
        blocks=cfg.blocks,
        pool_before_norm=cfg.pool_before_norm,
        input_size=cfg.input_size,
        pretrained=cfg.pretrained,
        weights_path=cfg.weights_path,
    )


def prepare_data(cfg: TrainConfig, split: FERSplit, device: torch.device) -> DeviceData:
    """The training split on `device`, copied there once per trial."""
    num_classes = len(split.class_names)
    if split.soft_labels is not None:
        targets = to_device(as_tensor(split.soft_labels), device).float()
    else:
        targets = augment.one_hot(to_device(as_tensor(split.labels), device), num_classes)
    if cfg.balance == "mirror":
        index, mirror = mirror_balance(split.labels, num_classes, cfg.seed)
    else:
        index, mirror = np.arange(len(split)), np.zeros(len(split), dtype=bool)
    weights = None
    if cfg.balance == "weighted":
        weights = to_device(
            torch.from_numpy(augment.class_weights(split.labels, num_classes)), device
        )
    return DeviceData(
        images=to_device(as_tensor(split.images), device),
        targets=targets,
        index=to_device(torch.from_numpy(index), device),
        mirror=to_device(torch.from_numpy(mirror), device),
        weights=weights,
    )


def prepare_state(cfg: TrainConfig, num_classes: int, device: torch.device) -> TrainState:
    """A fresh model (NHWC where that pays off, compiled on request on CUDA), its optimiser,
    EMA, GradScaler and the run's own random generator on the device."""
    model = build_model(cfg, num_classes).to(device)
    if use_channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    step_model: nn.Module = model
    if cfg.compile and device.type == "cuda":
        step_model = torch.compile(model)  # type: ignore[assignment]
    return TrainState(
        model=model,
        step_model=step_model,
        ema=new_ema(model) if cfg.ema > 0 else None,
        optimizer=make_optimizer(cfg, model),
        scaler=make_grad_scaler(cfg, device),
        generator=torch.Generator(device=device).manual_seed(cfg.seed),
        plateau=Plateau(),
    )
