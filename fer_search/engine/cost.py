"""A model's costs, the objectives a multi-objective search trades against accuracy.

Protocol (the same for every trial, whatever device it trains on): a freshly built copy of the
trial's model, float32, eval mode, on the CPU with one thread; input one gray image of the
data's size. `params` counts every parameter; `flops` is what torch.utils.flop_counter counts
for one forward pass (a multiply-add is 2 FLOPs; convolutions and matrix products only, so
pooling and activations are left out, as in most published FLOP figures); `latency_ms` is the
median of TIMED_RUNS forward passes after WARMUP_RUNS. A trial measures once, before training,
so the figure does not depend on its weights, and one thread keeps it independent of the
CPUs each trial was given (other trials may still share the machine: see docs/space.md).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fer_search.config import TrainConfig
from fer_search.engine.prepare import build_model

__all__ = ["WARMUP_RUNS", "TIMED_RUNS", "measure_cost", "model_cost"]

WARMUP_RUNS, TIMED_RUNS = 5, 30


def model_cost(model: nn.Module, image_size: int = 48, runs: int = TIMED_RUNS) -> dict[str, float]:
    """params, flops and latency_ms of `model` (see the module's protocol); the model is left
    in eval mode on the CPU."""
    model = model.cpu().float().eval()
    x = torch.zeros(1, 1, image_size, image_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                model(x)
            for _ in range(WARMUP_RUNS):
                model(x)
            times = []
            for _ in range(max(1, runs)):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "flops": float(counter.get_total_flops()),
        "latency_ms": statistics.median(times) * 1e3,
    }


def measure_cost(cfg: TrainConfig, num_classes: int, image_size: int = 48) -> dict[str, float]:
    """The costs of the model `cfg` trains, measured on a fresh copy built for the purpose."""
    return model_cost(build_model(cfg, num_classes), image_size)
