"""The space the recorded learning curves cover, defined once.

benchmarks/curves.py trains `design(64)` (a scrambled Sobol sequence over these settings) and
records a learning curve for each; `tuning.surrogate` reads the same settings as features; a
benchmark searches `search_params()`, the same choices and ranges as a fer-search space. The
space is the simple_cnn family's width and blocks, the optimiser and its learning rate, weight
decay, schedule, dropout, label smoothing, batch size and five augmentation strengths: wider
than search_spaces/reference.yaml, and small enough to train on a CPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["LR_RANGES", "SCHEDULES", "SETTINGS", "configuration", "design", "lr_middle",
           "search_params"]  # fmt: skip

WIDTHS = (8, 16, 24, 32, 48)
BLOCKS = ("1,1,1", "1,1,2", "1,1,1,1", "1,1,2,2", "1,2,2,2", "2,2,2,2")
OPTIMIZERS = ("sgd", "adamw")
# SGD with momentum and AdamW want learning rates about 30x apart
LR_RANGES = {"sgd": (3e-3, 0.3), "adamw": (1e-4, 1e-2)}
WEIGHT_DECAY = (1e-5, 3e-3)
SCHEDULES = ("cosine", "onecycle", "constant")
BATCH_SIZES = (64, 128, 256)
CROP_PADS = (0, 1, 2, 3, 4, 5, 6)
HFLIPS = (0.0, 0.5)
# the uniform settings' upper ends (each starts at 0)
DROPOUT, LABEL_SMOOTHING, ROTATION, SCALE, ERASING = 0.6, 0.2, 20.0, 0.25, 0.5

# one per dimension of the design, in the order configuration() reads them
SETTINGS = ("width", "blocks", "optimizer", "lr", "weight_decay", "schedule", "dropout",
            "label_smoothing", "batch_size", "crop_pad", "hflip", "rotation", "scale",
            "erasing")  # fmt: skip


def _pick(u: float, choices: tuple[Any, ...]) -> Any:
    return choices[min(int(u * len(choices)), len(choices) - 1)]


def _log_between(u: float, low: float, high: float) -> float:
    return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))


def configuration(u: np.ndarray) -> dict[str, Any]:
    """One point of the unit hypercube (len(SETTINGS) coordinates) -> TrainConfig settings;
    the learning rate's range is the optimiser's."""
    optimizer = _pick(u[2], OPTIMIZERS)
    return {
        "width": _pick(u[0], WIDTHS),
        "blocks": _pick(u[1], BLOCKS),
        "optimizer": optimizer,
        "lr": round(_log_between(u[3], *LR_RANGES[optimizer]), 6),
        "weight_decay": round(_log_between(u[4], *WEIGHT_DECAY), 7),
        "schedule": _pick(u[5], SCHEDULES),
        "dropout": round(DROPOUT * float(u[6]), 3),
        "label_smoothing": round(LABEL_SMOOTHING * float(u[7]), 3),
        "batch_size": _pick(u[8], BATCH_SIZES),
        "crop_pad": int(_pick(u[9], CROP_PADS)),
        "hflip": _pick(u[10], HFLIPS),
        "rotation": round(ROTATION * float(u[11]), 1),
        "scale": round(SCALE * float(u[12]), 3),
        "erasing": round(ERASING * float(u[13]), 3),
    }


def design(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` configurations spread over the space (scrambled Sobol, seeded): the same list
    for the same arguments, the first `n` of `design(m)` the same for every m >= n."""
    from scipy.stats import qmc

    points = qmc.Sobol(len(SETTINGS), scramble=True, seed=seed).random(count)
    return [configuration(point) for point in points]


def lr_middle(optimizer: str) -> float:
    """The geometric middle of the optimiser's learning-rate range."""
    low, high = LR_RANGES[optimizer]
    return math.sqrt(low * high)


def search_params() -> dict[str, Any]:
    """The space as a fer-search search space's `params`: the same choices and ranges, the
    learning rate conditional on the optimiser."""

    def uniform(high: float) -> dict[str, Any]:
        return {"type": "uniform", "low": 0.0, "high": high}

    def categorical(choices: tuple[Any, ...]) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(choices)}

    lrs = {f"lr@{name}": {"type": "loguniform", "low": low, "high": high,
                          "when": {"optimizer": name}}
           for name, (low, high) in LR_RANGES.items()}  # fmt: skip
    return {
        "model": "simple_cnn",
        "width": categorical(WIDTHS),
        "blocks": categorical(BLOCKS),
        "optimizer": categorical(OPTIMIZERS),
        **lrs,
        "weight_decay": {"type": "loguniform", "low": WEIGHT_DECAY[0], "high": WEIGHT_DECAY[1]},
        "schedule": categorical(SCHEDULES),
        "dropout": uniform(DROPOUT),
        "label_smoothing": uniform(LABEL_SMOOTHING),
        "batch_size": categorical(BATCH_SIZES),
        "crop_pad": {"type": "int", "low": CROP_PADS[0], "high": CROP_PADS[-1]},
        "hflip": categorical(HFLIPS),
        "rotation": uniform(ROTATION),
        "scale": uniform(SCALE),
        "erasing": uniform(ERASING),
    }
