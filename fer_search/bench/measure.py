"""Small helpers every figure uses: timing, medians, units, the goal check."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from fer_search.data import FERSplit

__all__ = ["goal_met", "median", "mib", "subset", "sync", "timed"]

MIB = 1 << 20


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def subset(split: FERSplit, n: int) -> FERSplit:
    n = min(n, len(split))
    soft = None if split.soft_labels is None else split.soft_labels[:n]
    return FERSplit(split.name, split.images[:n], split.labels[:n], split.class_names, soft)


def mib(nbytes: float) -> float:
    return round(nbytes / MIB, 1)


def goal_met(value: float | None, goal: float, higher_is_better: bool) -> bool | None:
    if value is None or value != value:
        return None
    return bool(value >= goal if higher_is_better else value <= goal)
