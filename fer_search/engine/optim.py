"""The optimiser, its learning-rate schedule and the weights' moving average (EMA)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from fer_search.config import TrainConfig, parse_anneal_at

__all__ = [
    "Plateau",
    "apply_settings",
    "ema_decay",
    "lr_factor",
    "make_optimizer",
    "new_ema",
    "update_ema",
]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov when momentum > 0) or AdamW over the model's parameters, which must be on
    the training device already. On CUDA the optimiser is fused: one kernel per step, and with
    fp16 the GradScaler hands it the inf check as a tensor instead of reading it on the host
    every step."""
    # No weight decay on biases and norm parameters (standard practice; matters for BN nets).
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = True if all(p.is_cuda for p in decay + no_decay) and decay else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, fused=fused
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused)


def apply_settings(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    """The run's lr and weight decay back on an optimiser that loaded a checkpoint's state: its
    load_state_dict restores the saved param_groups' settings too, and a run resumed with new
    ones (PBT perturbs a copied trial's lr and weight decay) must train with them. The groups
    are make_optimizer's: [decayed, not decayed]; the schedule scales cfg.lr at every step."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = cfg.lr
        group["weight_decay"] = cfg.weight_decay if i == 0 else 0.0


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at an optimiser step: linear warm-up, then the schedule.

    With `cfg.anneal_at` the cosine and one-cycle schedules run once per segment between those
    epochs (and the last), reaching 0 at each segment's end and starting again at 1 (a cosine
    with warm restarts whose ends are the ASHA rungs: a trial is judged at a rung with its
    learning rate annealed, as at the end); one-cycle warms up over a quarter of the first
    segment. Constant and plateau have nothing to anneal and ignore it."""
    first_end = total_steps
    bounds = [e * steps_per_epoch for e in parse_anneal_at(cfg.anneal_at, cfg.epochs)]
    if bounds and cfg.schedule in ("cosine", "onecycle"):
        first_end = bounds[0]
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and warmup == 0:
        warmup = int(0.25 * first_end)  # one-cycle: ramp up for the first quarter
    if step < warmup:
        start = 0.04 if cfg.schedule == "onecycle" else 0.0
        return start + (1.0 - start) * (step + 1) / warmup
    if cfg.schedule in ("cosine", "onecycle"):
        begin, end = warmup, total_steps
        for bound in bounds:
            if step < bound:
                end = bound
                break
            begin = max(warmup, bound)
        progress = (step - begin) / max(1, end - begin)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0  # constant; plateau scales separately


class Plateau:
    """Halve the learning rate when val_acc has not improved for `patience` epochs."""

    def __init__(self, patience: int = 2, factor: float = 0.5) -> None:
        self.patience, self.factor = patience, factor
        self.scale, self.best, self.bad = 1.0, -1.0, 0

    def step(self, val_acc: float) -> None:
        if val_acc > self.best + 1e-4:
            self.best, self.bad = val_acc, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            self.scale *= self.factor
            self.bad = 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], int(state["bad"])


def ema_decay(cfg: TrainConfig, step: int) -> float:
    """The EMA's decay at optimiser step `step` (from 0): cfg.ema, warmed up as
    (1 + step) / (10 + step) so that the average forgets the first steps' weights within a few
    hundred steps instead of a few thousand (a short trial's first epochs)."""
    return min(cfg.ema, (1.0 + step) / (10.0 + step))


def new_ema(model: nn.Module) -> nn.Module:
    """The moving average's own copy of the network (weights and BatchNorm statistics)."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(cfg: TrainConfig, ema: nn.Module, model: nn.Module, step: int) -> None:
    """After optimiser step `step`: the first step's weights start the average (as torch's
    AveragedModel does), later steps move it towards the model with torch's EMA update (one
    foreach lerp over the float weights and BatchNorm statistics; integer counters are copied).
    Unlike AveragedModel.update_parameters, nothing here moves a counter between host and
    device, which would be a host sync per step on CUDA."""
    pairs = zip(
        [*ema.parameters(), *ema.buffers()], [*model.parameters(), *model.buffers()], strict=True
    )
    floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for average, current in pairs:
        if step == 0 or not average.is_floating_point():
            average.copy_(current)
        else:
            floats[0].append(average)
            floats[1].append(current.detach())
    if floats[0]:
        get_ema_multi_avg_fn(ema_decay(cfg, step))(floats[0], floats[1], None)
