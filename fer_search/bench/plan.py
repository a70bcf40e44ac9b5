"""How much of everything a bench run measures (the plan), and what every figure shares (the
context: options, plan, device, scratch directory, the loaded data and Ray)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from fer_search.bench.bench_options import BenchOptions
from fer_search.bench.measure import timed
from fer_search.data import FERData

__all__ = ["CPU_SKIPPED", "Context", "Plan", "describe", "make_plan"]

CPU_SKIPPED = ("resnet101", "densenet169")  # ~2 img/s on a 2-core CPU


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of everything: --quick (demo data, minutes) or the full run (real data)."""

    quick: bool
    archs: tuple[str, ...]
    steps: dict[str, int]  # optimiser steps per pipeline measurement, per architecture
    rounds: int  # measured rounds of the pipeline comparison (after one warm-up round)
    workers: tuple[int, ...]  # DataLoader worker counts tried for the naive pipeline
    overhead: tuple[int, int]  # search-overhead trials, epochs
    overhead_repeats: int  # loop/search alternations
    asha: tuple[int, int, int]  # ASHA trials, max_t, reduction factor (grace period 1)
    asha_demo_size: float | None  # demo size for ASHA (None: the run's data)
    asha_train_fraction: float  # ASHA's trials train on this stratified share of train
    repeats: int  # CSV parse and --help repeats
    skipped: tuple[str, ...] = ()
    # rung fairness: configurations, max_t, reduction factor (grace period 1), on ASHA's data
    rungs: tuple[int, int, int] = (6, 4, 2)


def make_plan(quick: bool, device: torch.device) -> Plan:
    cuda = device.type == "cuda"
    if cuda:
        archs: tuple[str, ...] = ("simple_cnn", "vgg16", "resnet101", "mobilenet_v2", "densenet169")
        archs = archs[:1] if quick else archs
        steps = dict.fromkeys(archs, 20 if quick else 60)
        skipped: tuple[str, ...] = ()
    else:
        archs = ("simple_cnn",) if quick else ("simple_cnn", "mobilenet_v2", "vgg16")
        steps = {"simple_cnn": 3 if quick else 12, "mobilenet_v2": 6, "vgg16": 3}
        skipped = () if quick else CPU_SKIPPED
    workers = (0, 2) if not cuda else (2, min(8, os.cpu_count() or 2))
    if quick:
        return Plan(True, archs, steps, 2, workers, (4, 1), 1, (12, 4, 4), 0.25, 1.0, 3)
    # ASHA on the real data: 32 trials x 16 epochs at Ray's default reduction factor 4 (rungs at
    # 1, 4 and 16 epochs), on a fifth of the training images (val is all of PublicTest), so the
    # 512 epochs of the run to max_t take about as long as 100 full epochs
    # Rung fairness: 16 configurations x 9 epochs twice at reduction factor 3 (rungs at 1, 3, 9)
    return Plan(False, archs, steps, 4, workers, (6, 2), 2, (32, 16, 4), None, 0.2, 5,
                skipped, (16, 9, 3))  # fmt: skip


def describe(data: FERData) -> str:
    """The data in words, for the figures and the report."""
    if data.source == "demo":
        return f"demo (demo size {float(data.load_args.get('demo_size', 1.0)):g})"
    return data.source


@dataclasses.dataclass
class Context:
    """What every figure needs: the options, the plan, the device, a scratch directory, the
    data (loaded once per demo size) and Ray (started once, by the first search)."""

    options: BenchOptions
    plan: Plan
    device: torch.device
    tmp: Path
    ray_started: bool = False
    ray_startup_s: float | None = None
    loaded: dict[float | None, FERData] = dataclasses.field(default_factory=dict)

    def load(self, demo_size: float | None = None) -> FERData:
        """The run's data, or the demo data at `demo_size`; loaded on first use."""
        from fer_search import api

        if demo_size not in self.loaded:
            self.loaded[demo_size] = api.load_data(**self.options.load_kwargs(demo_size))
        return self.loaded[demo_size]

    def demo_size_if_demo(self, size: float | None) -> float | None:
        """`size` where the run's data is the demo data; None (the run's data) otherwise."""
        return size if self.options.data_is_demo else None

    def search_resources(self, gpus_per_trial: float) -> dict[str, Any]:
        """`api.search`'s resource options on this run's device."""
        if self.device.type == "cuda":
            return {"gpus": 1, "gpus_per_trial": gpus_per_trial}
        return {"gpus": 0}

    def start_ray(self) -> None:
        """Start (or join, with $RAY_ADDRESS) Ray once, as `fer-search` does; its start-up
        time is reported by the search-overhead figure."""
        import ray

        from fer_search.tuning.cluster import start_ray

        if ray.is_initialized():
            return
        gpus = 0 if self.device.type == "cpu" else None
        self.ray_startup_s = timed(lambda: start_ray(None, None, gpus))
        self.ray_started = True

    def stop_ray(self) -> None:
        if self.ray_started:
            import ray

            ray.shutdown()
            self.ray_started = False
