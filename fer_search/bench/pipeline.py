"""Figures 1-2: how fast the training pipeline is.

1. pipeline efficiency: the engine's training loop (augmentation on) / the bare model on one
   resident batch (forward + backward + step);
2. the engine / a naive torchvision pipeline (FER2013-style Dataset, PIL transforms, DataLoader,
   fp32: what a user's own loop runs; the engine's bf16/channels_last count in its favour).

Each engine epoch is followed by one measurement of each of the others, alternated, and the
figures are medians, because the machines this runs on are noisy.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fer_search import augment, engine
from fer_search.bench.measure import goal_met, median, subset, sync
from fer_search.bench.plan import Context
from fer_search.config import PIXEL_MEAN, PIXEL_STD, TrainConfig
from fer_search.data import FERSplit

__all__ = [
    "NaiveFER2013",
    "efficiency_figure",
    "measure_pipelines",
    "naive_figure",
    "naive_transform",
    "pipeline_figures",
]


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


def pipeline_figures(ctx: Context, arch: str) -> list[dict[str, Any]]:
    """Figures 1 and 2 for one architecture on the run's data."""
    data = ctx.load()
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
