"""What a training run holds: the data on the device, the state a checkpoint must carry, and
the result handed back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_search.config import EpochStats
from fer_search.engine.optim import Plateau
from fer_search.stats import recorded_interval

__all__ = ["DeviceData", "EpochCallback", "TrainResult", "TrainState"]

# on_epoch(stats, save) -> True to stop early (True itself: `lambda s, save: save(p)` goes on).
# `save(path)` writes a full checkpoint of "now" and returns what it wrote (the payload:
# engine.checkpoint.resumable_payload).
EpochCallback = Callable[[EpochStats, Callable[[Path], Any]], "bool | None"]


@dataclass
class TrainResult:
    status: str  # "completed" | "stopped" (callback asked) | "nan" (non-finite loss)
    message: str
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    history: list[EpochStats] = field(default_factory=list)
    model: nn.Module | None = None  # holds the best-by-val weights at the end
    model_args: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # what the run trained in: "bf16" | "fp16" | "fp32"

    @property
    def best_val_acc_ci95(self) -> list[float] | None:
        """The best epoch's val_acc interval [lo, hi] (None: a history from before them)."""
        best = [h for h in self.history if h.epoch == self.best_epoch]
        return recorded_interval(best[-1].__dict__) if best else None


@dataclass
class DeviceData:
    """The training split on the device: uint8 images, targets, the epoch's index pool."""

    images: torch.Tensor
    targets: torch.Tensor  # float (N, C) probabilities
    index: torch.Tensor  # which images an epoch visits (mirror balancing repeats some)
    mirror: torch.Tensor  # bool: the visit is a mirrored copy
    weights: torch.Tensor | None  # class weights for balance="weighted"


@dataclass
class TrainState:
    """Everything a checkpoint must hold to continue training exactly."""

    model: nn.Module
    step_model: nn.Module  # the compiled model when torch.compile is on
    ema: nn.Module | None  # the weights' moving average (cfg.ema > 0), validated instead
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    plateau: Plateau
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_val_probs: torch.Tensor | None = None  # the best epoch's on val: float16 (N, C)
    history: list[EpochStats] = field(default_factory=list)

    @property
    def eval_model(self) -> nn.Module:
        """The network that is validated, selected and kept: the EMA when there is one."""
        return self.model if self.ema is None else self.ema
