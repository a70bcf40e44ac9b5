"""`fer-search bench`: how fast the pipeline is, what the search costs, what ASHA saves.

Six figures, each a dict of raw measurements with its headline ratio, the goal and whether it
was met; every ratio compares two things measured in this run, alternated where possible and
summarised by medians, because the machines it runs on are noisy:

1. pipeline efficiency: the engine's training loop (augmentation on) / the bare model on one
   resident batch (forward + backward + step);
2. the engine / a naive torchvision pipeline (FER2013-style Dataset, PIL transforms, DataLoader,
   fp32: what a user's own loop runs; the engine's bf16/channels_last count in its favour);
3. search overhead: N short trials through `fer-search` (Ray Tune + Optuna, ASHA off) / the same
   trials in a plain loop of `engine.train`;
4. ASHA savings: epochs of the same trials run to max_t / epochs under ASHA, and the best-val_acc
   gap;
5. memory: driver and per-trial RSS/USS, and the private memory the dataset costs each trial
   (it must not cost any: the dataset is shared through Ray's object store, not copied);
6. data: CSV parse cold vs cached, `fer-search --help` start time.

Writes `<out>/bench[-quick].json` and `.md` (command, machine, versions, date) and prints a
table (`--json`: the JSON); `--only GROUP` (repeatable) measures some figure groups and writes
`bench[-quick]-GROUP.*`. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import gc
import json
import logging
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fer_search import augment, engine
from fer_search.config import EMOTIONS, PIXEL_MEAN, PIXEL_STD, TrainConfig
from fer_search.data import FERData, FERSplit, load_data, resolve_data_path

__all__ = [
    "Plan",
    "efficiency_figure",
    "figure_asha",
    "figure_csv",
    "figure_help",
    "figure_memory",
    "figure_search_overhead",
    "format_markdown",
    "format_table",
    "make_plan",
    "measure_pipelines",
    "naive_figure",
    "run",
]

MIB = 1 << 20
FER2013_TRAIN_VAL = 28709 + 3589  # images a trial sees on the real data
FER2013_ROWS = 35887
CPU_SKIPPED = ("resnet101", "densenet169")  # ~2 img/s on a 2-core CPU
SEARCH_WIDTH = 8  # simple_cnn width of the search figures (3-5): short trials
TRIAL_WORKER_SKIP = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


# ---------------------------------------------------------------- sizes
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
    return Plan(False, archs, steps, 4, workers, (6, 2), 2, (32, 16, 4), None, 0.2, 5,
                skipped)  # fmt: skip


@dataclasses.dataclass
class Context:
    """What every figure needs: the command's arguments, the plan, the device, a scratch dir."""

    args: argparse.Namespace
    plan: Plan
    device: torch.device
    tmp: Path
    ray_started: bool = False
    ray_startup_s: float | None = None

    def data_flags(self, demo_size: float | None = None) -> list[str]:
        """Data flags for a search or a load: the demo data at `demo_size`, else the run's data
        (--quick defaults to the demo data; the full run to what `fer-search` would pick)."""
        if demo_size is not None:
            return ["--data", "demo", "--demo-size", f"{demo_size:g}"]
        a = self.args
        data = a.data or ("demo" if self.plan.quick else None)
        flags = (["--data", data] if data else []) + ["--demo-size", f"{a.demo_size:g}"]
        if a.class_set:
            flags += ["--class-set", a.class_set]
        if a.ferplus:
            flags += ["--ferplus", a.ferplus, "--ferplus-mode", a.ferplus_mode]
        return flags + (["--no-cache"] if a.no_cache else [])

    def data_is_demo(self) -> bool:
        return self.args.data == "demo" or (self.args.data is None and self.plan.quick)

    def demo_size_if_demo(self, size: float | None) -> float | None:
        """`size` where the run's data is the demo data; None (the run's data) otherwise."""
        return size if self.data_is_demo() else None

    def load(self, demo_size: float | None = None) -> FERData:
        from fer_search.cli import build_parser, load_data_from_args

        ns = build_parser().parse_args(["data", *self.data_flags(demo_size)])
        return load_data_from_args(ns)

    def search_device_flags(self, per_trial: float) -> list[str]:
        if self.device.type == "cuda":
            return ["--gpus", "1", "--gpus-per-trial", f"{per_trial:g}"]
        return ["--gpus", "0"]


# ---------------------------------------------------------------- small helpers
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


# ---------------------------------------------------------------- 1 + 2: the training pipeline
def train_step(model, optimizer, scaler, dtype, device, x, y) -> None:
    """One step as the engine takes it (autocast, fp32 loss, scaler), without the bookkeeping."""
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = F.cross_entropy(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def fresh_model(cfg: TrainConfig, num_classes: int, device: torch.device, *, plain: bool = False):
    """Model, optimiser, AMP dtype, scaler and channels_last exactly as engine.train sets them;
    `plain`: fp32 and contiguous, as a user's own training loop has them."""
    model = engine.build_model(cfg, num_classes).to(device)
    channels_last = not plain and engine.use_channels_last(cfg, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    dtype = None if plain else engine.amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return model, engine.make_optimizer(cfg, model), dtype, scaler, channels_last


def make_ceiling(cfg: TrainConfig, train: FERSplit, device: torch.device) -> Callable[[int], float]:
    """img/s of forward + backward + step on one resident, normalised batch: the model's limit."""
    model, optimizer, dtype, scaler, channels_last = fresh_model(
        cfg, len(train.class_names), device
    )
    b = min(cfg.batch_size, len(train))
    x = engine.to_input(engine.as_tensor(train.images[:b]).to(device), channels_last)
    y = augment.one_hot(torch.from_numpy(train.labels[:b]).to(device), len(train.class_names))

    def measure(steps: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, optimizer, scaler, dtype, device, x, y)
        sync(device)
        return steps * b / (time.perf_counter() - start)

    return measure


class NaiveFER2013(torch.utils.data.Dataset):
    """What torchvision.datasets.FER2013 holds and does per item: a list of (uint8 48x48 tensor,
    label) parsed once at construction, `Image.fromarray` per item, then the transform."""

    def __init__(self, split: FERSplit, transform: Callable[[Any], torch.Tensor]) -> None:
        self._samples = [
            (torch.from_numpy(np.array(img)), int(label))
            for img, label in zip(split.images, split.labels, strict=True)
        ]
        self.transform = transform

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        image_tensor, target = self._samples[idx]
        return self.transform(Image.fromarray(image_tensor.numpy())), target


def naive_transform(cfg: TrainConfig):
    """The engine's augmentation knobs (hflip, crop_pad) as the usual torchvision transforms."""
    from torchvision import transforms as T

    steps: list[Any] = []
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip(cfg.hflip))
    if cfg.crop_pad:
        steps.append(T.RandomCrop(48, padding=cfg.crop_pad))
    steps += [T.ToTensor(), T.Normalize((PIXEL_MEAN,), (PIXEL_STD,))]
    return T.Compose(steps)


def make_naive(
    cfg: TrainConfig, train: FERSplit, device: torch.device, workers: int
) -> tuple[Callable[[], float], Callable[[], None]]:
    """img/s of one pass of a DataLoader (shuffled, `workers` processes, persistent so that
    start-up is not counted) through the same model and optimiser, in fp32 and contiguous
    memory as the user's own loop would run it (no autocast, no channels_last). Returns
    (measure, close)."""
    model, optimizer, dtype, scaler, channels_last = fresh_model(
        cfg, len(train.class_names), device, plain=True
    )
    loader = torch.utils.data.DataLoader(
        NaiveFER2013(train, naive_transform(cfg)),
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )

    def measure() -> float:
        sync(device)
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            train_step(model, optimizer, scaler, dtype, device, x, y.to(device, non_blocking=True))
            seen += len(y)
        sync(device)
        return seen / (time.perf_counter() - start)

    def close() -> None:
        nonlocal loader
        del loader  # stops persistent workers
        gc.collect()

    return measure, close


def measure_pipelines(
    cfg: TrainConfig,
    train: FERSplit,
    val: FERSplit,
    *,
    steps: int,
    rounds: int,
    workers: tuple[int, ...],
) -> dict[str, list[float]]:
    """img/s of the engine, the ceiling and the naive pipeline (per worker count), alternated:
    each engine epoch is followed by one measurement of each of the others, in an order that
    rotates. Round 0 (the first epoch: cold caches and allocator) is dropped. The engine figure
    is its own EpochStats.images_per_s."""
    device = engine.resolve_device(cfg.device)
    train = subset(train, steps * cfg.batch_size)
    val = subset(val, 128)  # validation is not timed; keep it short
    ceiling = make_ceiling(cfg, train, device)
    naive = {w: make_naive(cfg, train, device, w) for w in workers}
    others: list[tuple[str, Callable[[], float]]] = [("ceiling", partial(ceiling, steps))]
    others += [(f"naive_{w}", measure) for w, (measure, _) in naive.items()]
    rates: dict[str, list[float]] = {"engine": [], **{name: [] for name, _ in others}}

    def on_epoch(stats, _save) -> bool:
        rates["engine"].append(stats.images_per_s)
        turn = len(rates["engine"]) % len(others)  # rotate the order from round to round
        for name, measure in others[turn:] + others[:turn]:
            rates[name].append(measure())
        return False

    try:
        engine.train(dataclasses.replace(cfg, epochs=rounds + 1), train, val, on_epoch=on_epoch)
    finally:
        for _, close in naive.values():
            close()
    return {name: values[1:] for name, values in rates.items()}


def efficiency_figure(arch: str, rates: dict[str, list[float]]) -> dict[str, Any]:
    a, b = median(rates["engine"]), median(rates["ceiling"])
    ratio = a / b
    return {
        "figure": "pipeline efficiency",
        "arch": arch,
        "engine_img_s": round(a, 1),
        "ceiling_img_s": round(b, 1),
        "engine_runs": [round(r, 1) for r in rates["engine"]],
        "ceiling_runs": [round(r, 1) for r in rates["ceiling"]],
        "ratio": ratio,
        "goal": ">= 0.90",
        "met": goal_met(ratio, 0.90, True),
        "summary": f"engine {a:,.0f} / ceiling {b:,.0f} img/s",
    }


def naive_figure(arch: str, rates: dict[str, list[float]], device: torch.device) -> dict[str, Any]:
    """The engine against the naive pipeline's better worker count (fair to the baseline)."""
    naive = {int(k.split("_")[1]): median(v) for k, v in rates.items() if k.startswith("naive_")}
    workers = max(naive, key=lambda w: naive[w])
    a, b = median(rates["engine"]), naive[workers]
    ratio = a / b
    goal = 3.0 if device.type == "cuda" else 1.5 if arch == "simple_cnn" else None
    return {
        "figure": "vs naive pipeline",
        "arch": arch,
        "engine_img_s": round(a, 1),
        "naive_img_s": round(b, 1),
        "naive_workers": workers,
        "naive_img_s_by_workers": {str(w): round(r, 1) for w, r in naive.items()},
        "naive_runs": {k: [round(r, 1) for r in v] for k, v in rates.items() if "naive" in k},
        "ratio": ratio,
        "goal": None if goal is None else f">= {goal:g}",
        "met": None if goal is None else goal_met(ratio, goal, True),
        "summary": f"engine {a:,.0f} / naive {b:,.0f} img/s ({workers} workers)",
    }


def pipeline_figures(ctx: Context, data: FERData, arch: str) -> list[dict[str, Any]]:
    cfg = TrainConfig(model=arch, width=32, device=str(ctx.device), seed=0)  # hflip .5, pad 4
    rates = measure_pipelines(
        cfg,
        data.splits["train"],
        data.splits["val"],
        steps=ctx.plan.steps[arch],
        rounds=ctx.plan.rounds,
        workers=ctx.plan.workers,
    )
    setup = {
        "batch_size": cfg.batch_size,
        "steps": ctx.plan.steps[arch],
        "augment": {"hflip": cfg.hflip, "crop_pad": cfg.crop_pad},
        "torch_threads": torch.get_num_threads(),
        "channels_last": engine.use_channels_last(cfg, ctx.device),
        "amp": str(engine.amp_dtype(cfg, ctx.device)),
        "naive": "fp32, contiguous (no autocast, no channels_last), as a user's loop runs it",
    }
    if arch == "simple_cnn":
        setup["width"] = cfg.width
    figures = [efficiency_figure(arch, rates), naive_figure(arch, rates, ctx.device)]
    for figure in figures:
        figure["setup"] = setup
    return figures


# ---------------------------------------------------------------- 3-5: the search
def ensure_ray(ctx: Context) -> None:
    """Start (or join) Ray once, as `fer-search` does; its start-up time is figure 3's."""
    import ray

    from fer_search import search
    from fer_search.cli import build_parser

    if ray.is_initialized():
        return
    args = build_parser().parse_args(["search", *ctx.search_device_flags(1)])
    if os.environ.get("RAY_ADDRESS"):
        ctx.ray_startup_s = timed(lambda: search.start_ray(args))  # the cluster the user named
    else:
        # A fresh local Ray as start_ray starts one, but with address="local": a bare ray.init()
        # joins any `ray start` cluster that happens to run on this machine.
        def start() -> None:
            ray.init(
                address="local",
                num_gpus=0 if ctx.device.type == "cpu" else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )

        ctx.ray_startup_s = timed(start)
        search.start_ray(args)  # only its environment settings: Ray is up, it starts nothing
    ctx.ray_started = True


def search_space(name: str, trials: int, epochs: int, params: dict[str, Any], **experiment):
    base = {"epochs": epochs, "num_samples": trials, "seed": 0, "top_k": 1}
    return {"name": name, "experiment": {**base, **experiment}, "params": params}


FIXED_PARAMS: dict[str, Any] = {
    "model": "simple_cnn",
    "width": SEARCH_WIDTH,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.05,
    "dropout": 0.2,
    "hflip": 0.5,
    "crop_pad": 2,
}
SAMPLED_PARAMS: dict[str, Any] = {
    "model": "simple_cnn",
    "width": SEARCH_WIDTH,
    "batch_size": 64,
    "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    "lr@sgd": {"type": "loguniform", "low": 0.003, "high": 0.3, "when": {"optimizer": "sgd"}},
    "lr@adamw": {"type": "loguniform", "low": 1e-4, "high": 1e-2, "when": {"optimizer": "adamw"}},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "hflip": 0.5,
    "crop_pad": {"type": "int", "low": 0, "high": 4},
}


def run_search(ctx: Context, space: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    """`fer-search search` in this process (Ray already up); wall time and leaderboard rows."""
    import yaml

    from fer_search import search
    from fer_search.cli import build_parser

    ensure_ray(ctx)
    name = f"{space['name']}-{time.strftime('%H%M%S')}-{os.getpid()}-{time.perf_counter_ns()}"
    path = ctx.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    storage = ctx.tmp / "runs"
    argv = ["search", "--space", str(path), "--storage", str(storage), "--name", name]
    args = build_parser().parse_args([*argv, "--no-final-eval", "--verbose", "0", *flags])
    log = ctx.tmp / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = search.run(args)
    wall = time.perf_counter() - start
    board = storage / name / "leaderboard.csv"
    if code != 0 or not board.is_file():
        tail = log.read_text()[-1500:]
        raise RuntimeError(f"search {name} exited {code}; its log ends:\n{tail}")
    with open(board, newline="") as file:
        rows = list(csv.DictReader(file))
    return {"wall_s": wall, "rows": rows, "name": name}


def plain_loop(ctx: Context, params: dict[str, Any], trials: int, epochs: int, threads: int):
    """The same trials as the search runs them (trial_config of the same config), one after
    another in this process: load the data, then engine.train each config."""
    from fer_search.trainable import trial_config

    start = time.perf_counter()
    data = ctx.load()
    constants = {"epochs": epochs, "seed": 0, "device": ctx.device.type, "threads": threads}
    constants["class_set"] = ctx.args.class_set or "all"
    for _ in range(trials):
        cfg = trial_config({**constants, **params})
        engine.train(cfg, data.splits["train"], data.splits["val"])
    return time.perf_counter() - start


def figure_search_overhead(ctx: Context) -> dict[str, Any]:
    """N short trials through `fer-search` (FIFO, one at a time, all CPUs per trial) against
    the same trials in a plain loop, alternated; Ray's start-up is reported on its own."""
    trials, epochs = ctx.plan.overhead
    cpus = os.cpu_count() or 1
    space = search_space("bench-overhead", trials, epochs, FIXED_PARAMS, cpus_per_trial=cpus)
    flags = ["--no-asha", "--max-concurrent", "1", "--cpus-per-trial", str(cpus)]
    flags += ctx.search_device_flags(1) + ctx.data_flags()
    threads_before = torch.get_num_threads()
    ensure_ray(ctx)
    loops, searches, trial_s = [], [], []
    try:
        for _ in range(ctx.plan.overhead_repeats):
            loops.append(plain_loop(ctx, FIXED_PARAMS, trials, epochs, cpus))
            result = run_search(ctx, space, flags)
            searches.append(result["wall_s"])
            trial_s.append(sum(float(r["time_s"]) for r in result["rows"]))
    finally:
        torch.set_num_threads(threads_before)
    loop, search_s, startup = median(loops), median(searches), ctx.ray_startup_s or 0.0
    ratio = search_s / loop
    return {
        "figure": "search overhead",
        "arch": "simple_cnn",
        "trials": trials,
        "epochs": epochs,
        "data": shlex.join(ctx.data_flags()),
        "search_s": round(search_s, 2),
        "loop_s": round(loop, 2),
        "search_runs_s": [round(s, 2) for s in searches],
        "loop_runs_s": [round(s, 2) for s in loops],
        "trial_time_s": round(median(trial_s), 2),  # Tune's time_total_s, summed over trials
        "overhead_per_trial_s": round((search_s - loop) / trials, 2),
        "ray_startup_s": round(startup, 2),
        "ratio_with_ray_startup": (search_s + startup) / loop,
        "ratio": ratio,
        "goal": "<= 1.10",
        "met": goal_met(ratio, 1.10, False),
        "summary": f"search {search_s:.1f} s / loop {loop:.1f} s ({trials}x{epochs} ep; "
        f"+{startup:.1f} s Ray start)",
    }


@contextlib.contextmanager
def random_sampler() -> Iterator[None]:
    """Swap the search's TPE sampler for a seeded RandomSampler, so that two searches with the
    same seed sample the same configurations whatever the results (TPE adapts to them)."""
    import optuna

    tpe = optuna.samplers.TPESampler

    def sampler(*, seed: int | None = None, **_unused: Any) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)

    optuna.samplers.TPESampler = sampler  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        optuna.samplers.TPESampler = tpe  # type: ignore[misc]


def leaderboard_configs(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The sampled settings of each trial, sorted (trial ids do not say the sampling order)."""
    keys = ("optimizer", "lr", "dropout", "crop_pad")
    return sorted(tuple(str(r.get(k, "")) for k in keys) for r in rows)


def stratified_share(data: FERData, fraction: float, seed: int = 0) -> FERData:
    """`data` with a stratified, seeded `fraction` of its train split (val and test whole)."""
    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([
        rng.permutation(members)[: max(1, round(fraction * len(members)))]
        for members in (np.flatnonzero(train.labels == c) for c in np.unique(train.labels))
    ]))  # fmt: skip
    part = FERSplit(train.name, train.images[keep], train.labels[keep], train.class_names)
    return dataclasses.replace(data, splits={**data.splits, "train": part})


def asha_data(ctx: Context) -> tuple[list[str], str, float]:
    """The ASHA searches' data flags, what they are in words, and the share of train they hold:
    the demo data at its ASHA size, or the run's data with a stratified share of train."""
    fraction = ctx.plan.asha_train_fraction
    if fraction >= 1.0 or ctx.data_is_demo():
        flags = ctx.data_flags(ctx.demo_size_if_demo(ctx.plan.asha_demo_size))
        return flags, shlex.join(flags), 1.0
    share = stratified_share(ctx.load(), fraction)
    path = write_kaggle_csv(share, ctx.tmp / "asha-share.csv")
    words = f"{fraction:g} of train (stratified, seed 0), all of val, from " + shlex.join(
        ctx.data_flags()
    )
    return ["--data", str(path)], words, fraction


def figure_asha(ctx: Context) -> dict[str, Any]:
    """The same sampled trials (seeded random sampler) with ASHA and run to max_t."""
    trials, max_t, factor = ctx.plan.asha
    space = search_space(
        "bench-asha", trials, max_t, SAMPLED_PARAMS, grace_period=1, reduction_factor=factor,
        cpus_per_trial=1,
    )  # fmt: skip
    flags = ["--max-concurrent", "2", "--cpus-per-trial", "1", *ctx.search_device_flags(0.5)]
    data_flags, data_words, fraction = asha_data(ctx)
    flags += data_flags
    with random_sampler():
        full = run_search(ctx, space, [*flags, "--no-asha"])
        asha = run_search(ctx, space, flags)
    epochs = {k: sum(int(r["epochs"]) for r in v["rows"]) for k, v in
              (("full", full), ("asha", asha))}  # fmt: skip
    best = {k: max(float(r["val_acc"]) for r in v["rows"]) for k, v in
            (("full", full), ("asha", asha))}  # fmt: skip
    ratio = epochs["full"] / max(1, epochs["asha"])
    gap_pp = (best["full"] - best["asha"]) * 100
    return {
        "figure": "ASHA savings",
        "arch": "simple_cnn",
        "trials": trials,
        "max_t": max_t,
        "grace_period": 1,
        "reduction_factor": factor,
        "train_fraction": fraction,
        "data": data_words,
        "epochs_no_asha": epochs["full"],
        "epochs_asha": epochs["asha"],
        "best_val_acc_no_asha": best["full"],
        "best_val_acc_asha": best["asha"],
        "gap_pp": round(gap_pp, 2),
        "wall_s_no_asha": round(full["wall_s"], 1),
        "wall_s_asha": round(asha["wall_s"], 1),
        "same_configs": leaderboard_configs(full["rows"]) == leaderboard_configs(asha["rows"]),
        "sampler": "RandomSampler(seed=0) in place of TPE, so both searches get the same configs",
        "ratio": ratio,
        "goal": ">= 3 with gap <= 1 pp",
        "met": goal_met(ratio, 3.0, True) and gap_pp <= 1.0,
        "summary": f"{epochs['full']} / {epochs['asha']} epochs, best val_acc gap {gap_pp:+.2f} pp",
    }


def proc_memory(pid: int | str = "self", *, uss: bool = True) -> dict[str, int]:
    """Bytes of a process's memory from Linux /proc: rss, anon (private heap: where a copy of
    the dataset would land), shmem (shared-memory pages mapped: Ray's object store), file, and
    uss (pages no other process maps; smaps_rollup, a page walk, so optional)."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssShmem": "shmem", "RssFile": "file"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            out[fields[key]] = int(value.split()[0]) * 1024
    if uss:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        private = [line.split()[1] for line in rollup if line.startswith("Private_")]
        out["uss"] = sum(int(kb) for kb in private) * 1024
    return out


@contextlib.contextmanager
def sample_memory(interval: float = 0.5) -> Iterator[dict[str, Any]]:
    """Peak memory (proc_memory) of this process and of each trial worker it started (its
    descendants named `ray::<Trainable>`), sampled every `interval` seconds."""
    import psutil  # ray's dependency (importing ray puts its bundled copy on sys.path)

    peaks: dict[str, Any] = {"driver": {}, "trials": {}, "max_concurrent": 0}
    stop = threading.Event()
    me = psutil.Process()

    def keep_peak(into: dict[str, int], pid: int | str) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for key, value in proc_memory(pid).items():
                into[key] = max(into.get(key, 0), value)

    def sample() -> None:
        while not stop.is_set():
            keep_peak(peaks["driver"], "self")
            with contextlib.suppress(psutil.Error):
                workers = [p for p in me.children(recursive=True) if is_trial_worker(p)]
                peaks["max_concurrent"] = max(peaks["max_concurrent"], len(workers))
                for p in workers:
                    keep_peak(peaks["trials"].setdefault(p.pid, {}), p.pid)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def is_trial_worker(process) -> bool:
    with contextlib.suppress(Exception):
        name = process.name()
        return name.startswith("ray::") and not name.startswith(TRIAL_WORKER_SKIP)
    return False


def trial_memory(ctx: Context) -> dict[str, Any]:
    """Two one-epoch trials at once (1 CPU each) on the run's data, memory sampled throughout:
    driver and per-trial peaks (MiB; per trial the median over the trial processes)."""
    space = search_space("bench-memory", 2, 1, FIXED_PARAMS, cpus_per_trial=1)
    flags = ["--no-asha", "--max-concurrent", "2", "--cpus-per-trial", "1"]
    flags += ctx.search_device_flags(0.5) + ctx.data_flags()
    ensure_ray(ctx)
    gc.collect()
    before = proc_memory()
    with sample_memory() as peaks:
        run_search(ctx, space, flags)
    trials = list(peaks["trials"].values())
    out: dict[str, Any] = {f"driver_{k}_mib": mib(v) for k, v in peaks["driver"].items()}
    out["driver_uss_growth_mib"] = mib(peaks["driver"].get("uss", 0) - before["uss"])
    for key in ("rss", "uss", "anon", "shmem"):
        out[f"trial_{key}_mib"] = mib(median([t.get(key, 0) for t in trials]))
    out["trial_uss_each_mib"] = sorted(mib(t.get("uss", 0)) for t in trials)
    out.update(trial_processes=len(trials), max_concurrent_seen=peaks["max_concurrent"])
    return out


def probe_dataset(refs) -> dict[str, Any]:
    """In a Ray worker: what fetching the dataset as a trial does (DatasetRefs.get, the
    engine's as_tensor) and reading every page of it costs this process, in bytes."""
    from fer_search.data import FERSplit  # noqa: F401  (imports are not the dataset's cost)

    before = proc_memory()
    splits = [refs.get("train"), refs.get("val")]
    tensors = [engine.as_tensor(s.images) for s in splits]
    pages = sum(int(t.reshape(-1)[::4096].sum()) for t in tensors)  # touch every page
    after = proc_memory()
    growth = {k: after[k] - before[k] for k in after}
    views = all(not s.images.flags.writeable for s in splits)
    return {"growth": growth, "read_only_views": views, "checksum": pages}


def dataset_probe(ctx: Context) -> dict[str, Any]:
    """The run's data, or FER2013-sized random images where it is the demo data, put once as a
    search puts it; one Ray task fetches and reads it as a trial does."""
    import ray

    from fer_search.config import EMOTIONS
    from fer_search.trainable import DatasetRefs

    ensure_ray(ctx)
    data = ctx.load()
    if data.source == "demo":
        rng = np.random.default_rng(0)
        sizes = {"train": FER2013_TRAIN_VAL - 3589, "val": 3589}
        splits = {
            name: FERSplit(name, rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
                           rng.integers(0, 7, n), EMOTIONS)
            for name, n in sizes.items()
        }  # fmt: skip
    else:
        splits = data.splits
    refs = DatasetRefs(splits, splits["train"].class_names)
    seen = [splits["train"], splits["val"]]
    data_bytes = sum(s.images.nbytes + s.labels.nbytes for s in seen)
    task = ray.remote(num_cpus=1)(probe_dataset)
    result = ray.get(task.remote(refs))
    growth = {f"{k}_growth_mib": mib(v) for k, v in result["growth"].items()}
    return {"data_mib": mib(data_bytes), "read_only_views": result["read_only_views"], **growth}


def figure_memory(ctx: Context) -> dict[str, Any]:
    """Driver and per-trial memory of real trials, and what the dataset costs each trial
    privately (anonymous memory: a copy would land there; the object store's pages are
    shared memory, mapped once per node)."""
    trials, probe = trial_memory(ctx), dataset_probe(ctx)
    copied = probe["anon_growth_mib"]
    ratio = copied / probe["data_mib"] if probe["data_mib"] else float("nan")
    return {
        "figure": "memory",
        "arch": "simple_cnn",
        **trials,
        "extra_uss_per_concurrent_trial_mib": trials["trial_uss_mib"],
        "dataset_probe": probe,
        "data_mib_per_extra_trial": copied,
        "ratio": ratio,
        "goal": "<= 5 MiB data per extra trial",
        "met": goal_met(copied, 5.0, False),
        "summary": f"trial USS {trials['trial_uss_mib']:.0f} MiB (RSS "
        f"{trials['trial_rss_mib']:.0f}), driver USS {trials['driver_uss_mib']:.0f}; data: "
        f"{copied:+.1f} MiB private of {probe['data_mib']:.0f} MiB shared",
        "note": "per trial: the peak of each trial worker (USS = pages no other process maps: "
        "Python, torch, Ray, model, activations; this is what each additional concurrent trial "
        "adds). Data per extra trial: the anonymous-memory growth of a Ray worker that fetches "
        "the dataset as a trial does and reads every page (ratio = that / the data size); "
        "shmem growth = the object-store pages it maps instead. Driver = this bench process, "
        "which also holds the bench's own data and models.",
    }


# ---------------------------------------------------------------- 6: data
def write_kaggle_csv(data: FERData, path: Path) -> Path:
    """The data as a Kaggle fer2013.csv (emotion,pixels,Usage), for timing the CSV parser."""
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    with open(path, "w", newline="") as file:
        file.write("emotion,pixels,Usage\n")
        for name, split in data.splits.items():
            emotions = [EMOTIONS.index(split.class_names[i]) for i in split.labels]
            for image, label in zip(split.images, emotions, strict=True):
                file.write(f"{label},{' '.join(map(str, image.ravel()))},{usage[name]}\n")
    return path


def figure_csv(data_path: Path | str, repeats: int, cache: Path) -> dict[str, Any]:
    """load_data with cache=False (a cold parse) against a cached load, alternated."""
    load_data(data_path, cache_dir=cache)  # fill the cache (not timed)
    cold, cached = [], []
    for _ in range(repeats):
        cold.append(timed(lambda: load_data(data_path, cache=False)))
        cached.append(timed(lambda: load_data(data_path, cache_dir=cache)))
    a, b = median(cold), median(cached)
    size = Path(data_path).stat().st_size if Path(data_path).is_file() else None
    return {
        "figure": "data: parse",
        "data": str(data_path),
        "file_bytes": size,
        "cold_s": round(a, 3),
        "cached_s": round(b, 3),
        "cold_runs_s": [round(s, 6) for s in cold],
        "cached_runs_s": [round(s, 6) for s in cached],
        "ratio": a / b,
        "goal": None,
        "met": None,
        "summary": f"cold {a:.2f} s / cached {b:.3f} s",
    }


def help_command() -> list[str]:
    script = shutil.which("fer-search")
    return [script, "--help"] if script else [sys.executable, "-m", "fer_search", "--help"]


def figure_help(repeats: int) -> dict[str, Any]:
    """Wall time of `fer-search --help` in a fresh process, against a bare `python -c pass`."""
    paths = [package_root(), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    command = help_command()
    helps, bare = [], []
    for _ in range(repeats):
        helps.append(timed(lambda: subprocess.run(command, env=env, capture_output=True)))
        bare.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env)))
    a, b = median(helps), median(bare)
    return {
        "figure": "data: --help start",
        "command": shlex.join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
        "help_s": round(a, 3),
        "python_s": round(b, 3),
        "help_runs_s": [round(s, 6) for s in helps],
        "python_runs_s": [round(s, 6) for s in bare],
        "ratio": a / b,
        "goal": None,
        "met": None,
        "summary": f"--help {a:.2f} s (python alone {b:.2f} s)",
    }


def package_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def data_figures(ctx: Context, data: FERData) -> list[dict[str, Any]]:
    cache = ctx.tmp / "cache"
    if data.source == "demo":
        path: Path | str = write_kaggle_csv(data, ctx.tmp / "demo-fer2013.csv")
    else:
        path = resolve_data_path(ctx.args.data)
    figure = figure_csv(path, ctx.plan.repeats, cache)
    if data.source == "demo":
        rows = sum(len(split) for split in data.splits.values())
        figure["note"] = (
            f"the demo data ({rows:,} rows) written as a Kaggle fer2013.csv; "
            f"FER2013 has {FER2013_ROWS:,} rows"
        )
    return [figure, figure_help(ctx.plan.repeats + 2)]


# ---------------------------------------------------------------- the report
def versions() -> dict[str, str]:
    from fer_search import __version__

    out = {"fer-search": __version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "ray", "optuna", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def finite(value: Any) -> Any:
    """The result with NaN/inf as None, so that the JSON is standard JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def command_line(args: argparse.Namespace) -> str:
    argv = ["fer-search", "bench"] + (["--quick"] if args.quick else [])
    argv += [] if args.device == "cpu" else ["--device", args.device]
    for flag in ("data", "class_set", "ferplus"):
        if getattr(args, flag):
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    argv += [] if args.demo_size == 1 else ["--demo-size", f"{args.demo_size:g}"]
    argv += [] if args.out == "results/benchmarks" else ["--out", args.out]
    for group in getattr(args, "only", None) or []:
        argv += ["--only", group]
    return shlex.join(argv + (["--json"] if args.json else []))


def fmt_ratio(figure: dict[str, Any]) -> str:
    ratio = figure.get("ratio")
    return "-" if ratio is None or ratio != ratio else f"{ratio:.2f}"


def fmt_met(figure: dict[str, Any]) -> str:
    if "error" in figure:
        return "ERROR"
    return {True: "yes", False: "no", None: "-"}[figure.get("met")]


def table_rows(figures: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["figure", "arch", "measured", "ratio", "goal", "met"]]
    for f in figures:
        measured = f.get("summary") or f"error: {f.get('error', '')}"[:70]
        rows.append([f["figure"], f.get("arch", ""), measured, fmt_ratio(f), f.get("goal") or "-",
                     fmt_met(f)])  # fmt: skip
    return rows


def format_table(figures: list[dict[str, Any]]) -> str:
    rows = table_rows(figures)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)  # fmt: skip


def format_markdown(result: dict[str, Any]) -> str:
    m, v = result["machine"], result["versions"]
    title = "fer-search bench" + (" --quick" if result["quick"] else "")
    title += "".join(f" --only {group}" for group in result.get("only") or [])
    lines = [
        f"# {title}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']} ({result['wall_s']:.0f} s)",
        f"- data: {result['data']}",
        f"- machine: {m['platform']}; {m['cpu_count']} CPUs ({m['cpu']}); torch threads "
        f"{m['torch_threads']}; device {m['device']} ({m['device_name']}); load average "
        f"{m.get('load_average_at_start', '?')} at start, {m.get('load_average_at_end', '?')} "
        "at end",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
    ]
    rows = table_rows(result["figures"])
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    notes = [f"- {f['figure']}: {f['note']}" for f in result["figures"] if f.get("note")]
    notes += [f"- {note}" for note in result["notes"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", f"Raw measurements: `{result['json_name']}`.", ""]
    return "\n".join(lines)


def write_results(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`bench[-quick].{json,md}`; a run of some figure groups (`--only asha`) writes
    `bench[-quick]-asha.*`, so it never replaces the whole run's files."""
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-quick" if result["quick"] else "bench"
    if result.get("only"):
        stem += "-" + "-".join(result["only"])
    result["json_name"] = f"{stem}.json"
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, default=str, allow_nan=False) + "\n")
    md_path.write_text(format_markdown(result))
    return json_path, md_path


# ---------------------------------------------------------------- entry point
FIGURE_GROUPS = ("data", "pipeline", "overhead", "asha", "memory")  # `--only` takes these


def jobs(ctx: Context, data: FERData) -> list[tuple[str, Callable[[], list[dict[str, Any]]]]]:
    """The measurements in order: cheap and Ray-free first (DataLoader workers are forked
    before Ray starts its threads), then the searches; `--only` keeps some groups."""
    out: list[tuple[str, str, Callable[[], list[dict[str, Any]]]]] = [
        ("data", "data", lambda: data_figures(ctx, data))
    ]
    for arch in ctx.plan.archs:
        out.append(("pipeline", f"pipeline {arch}", partial(pipeline_figures, ctx, data, arch)))
    out.append(("overhead", "search overhead", lambda: [figure_search_overhead(ctx)]))
    out.append(("asha", "ASHA savings", lambda: [figure_asha(ctx)]))
    out.append(("memory", "memory", lambda: [figure_memory(ctx)]))
    only = getattr(ctx.args, "only", None) or FIGURE_GROUPS
    return [(name, job) for group, name, job in out if group in only]


def run(args: argparse.Namespace) -> int:
    device = engine.resolve_device(args.device)
    if args.device == "auto":
        args.device = device.type
    plan = make_plan(args.quick, device)
    started, date = time.perf_counter(), dt.datetime.now(dt.timezone.utc)
    info, figures, notes = machine(device), [], []
    if plan.skipped and "pipeline" in (args.only or FIGURE_GROUPS):
        notes.append(f"skipped on CPU: {', '.join(plan.skipped)} (about 2 img/s on 2 cores)")
    if plan.quick and {"overhead", "asha"} & set(args.only or FIGURE_GROUPS):
        notes.append(
            "--quick: a few demo trials of sub-second epochs, so the search overhead is mostly "
            "the fixed cost per trial and ASHA has one rung to stop at; those two goals are for "
            "the full run on FER2013 (fer-search bench --data path/to/fer2013.csv)"
        )
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        ctx = Context(args, plan, device, Path(tmp))
        data = ctx.load()
        for note in data.notes:
            print(f"note: {note}", file=sys.stderr)
        if not plan.quick and data.source == "demo":
            notes.append("a full run on the demo data: pass --data path/to/fer2013.csv for FER2013")
        try:
            for name, job in jobs(ctx, data):
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                try:
                    figures += job()
                except Exception as exc:  # one broken figure must not lose the others
                    traceback.print_exc(file=sys.stderr)
                    figures.append({"figure": name, "error": f"{type(exc).__name__}: {exc}"})
                print(f"bench: {name} took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        finally:
            if ctx.ray_started:
                import ray

                ray.shutdown()
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {
        "command": command_line(args),
        "date": date.isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - started,
        "quick": plan.quick,
        "only": list(dict.fromkeys(args.only or [])),
        "data": data.source + (f" (demo size {args.demo_size:g})" if data.source == "demo" else ""),
        "machine": info,
        "versions": versions(),
        "plan": dataclasses.asdict(plan),
        "figures": figures,
        "notes": notes,
    }
    result = finite(result)
    json_path, md_path = write_results(result, Path(args.out))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_table(figures))
        print(f"wrote {json_path} and {md_path}")
    return 1 if any("error" in f for f in figures) else 0
