"""How sure a score is: 95 % intervals and paired comparisons on one split's images.

FER2013's test split has 3,589 images, so one accuracy carries about +-0.8 pp of sampling noise.
Every interval here is a seeded percentile bootstrap over the images (scipy.stats.bootstrap,
BOOTSTRAP_RESAMPLES resamples); a paired comparison resamples the same images for both models,
and McNemar's exact test (a binomial test on the images exactly one model gets right) gives
the p-value of their accuracy difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "METHOD",
    "accuracy_ci",
    "macro_f1_ci",
    "mcnemar_exact",
    "paired_comparison",
    "percent",
    "recorded_interval",
]

BOOTSTRAP_RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
METHOD = (
    f"{LEVEL:.0%} percentile bootstrap over the images, {BOOTSTRAP_RESAMPLES} seeded resamples "
    "(scipy.stats.bootstrap); paired differences resample the same images for both models; "
    "p-values from McNemar's exact test"
)


def _interval(statistic: Any, data: tuple[np.ndarray, ...], paired: bool) -> list[float]:
    """`statistic(*data, axis=-1)` must work on resampled batches (vectorised). No images:
    [0, 0], as classification_metrics scores an empty split; one image: its own score."""
    from scipy.stats import bootstrap

    if len(data[0]) == 0:
        return [0.0, 0.0]
    if len(data[0]) < 2:
        value = float(statistic(*data, axis=-1))
        return [value, value]
    result = bootstrap(
        data,
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=LEVEL,
        method="percentile",
        paired=paired,
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    return [float(low), float(high)]


def accuracy_ci(labels: np.ndarray, pred: np.ndarray) -> list[float]:
    """95 % interval of the accuracy of `pred` (class indices) against `labels`."""
    correct = (np.asarray(pred) == np.asarray(labels)).astype(np.float64)
    return _interval(np.mean, (correct,), paired=False)


def macro_f1_ci(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> list[float]:
    """95 % interval of the macro-F1 of `pred` against `labels`."""

    def f1(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
        """Macro-F1 along the last axis, as scikit-learn's (zero_division=0)."""
        scores = []
        for c in range(num_classes):
            tp = np.sum((y == c) & (p == c), axis=axis)
            wrong = np.sum((y == c) != (p == c), axis=axis)  # false positives + negatives
            scores.append(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
        return np.mean(scores, axis=0)

    return _interval(f1, (np.asarray(labels), np.asarray(pred)), paired=True)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: of the images exactly one model gets right, is A's
    share different from one half?"""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_comparison(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict:
    """A's accuracy minus B's on the same images, its 95 % interval and McNemar's p-value."""
    labels = np.asarray(labels)
    correct_a = (np.asarray(pred_a) == labels).astype(np.float64)
    correct_b = (np.asarray(pred_b) == labels).astype(np.float64)
    interval = _interval(
        lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        (correct_a, correct_b),
        paired=True,
    )
    return {
        "difference": float(correct_a.mean() - correct_b.mean()) if len(labels) else 0.0,
        "difference_ci95": interval,
        "p_value": mcnemar_exact(correct_a, correct_b),
        "within_noise": interval[0] <= 0.0 <= interval[1],
    }


def recorded_interval(record: Mapping[str, Any], key: str = "val_acc") -> list[float] | None:
    """The 95 % interval of `key` that a leaderboard row or a trial's result holds in two
    columns, `<key>_ci95_lo` and `<key>_ci95_hi`, as [lo, hi] (final.json's form); None where
    it holds none (results from before the trials reported one)."""
    try:
        low, high = float(record[f"{key}_ci95_lo"]), float(record[f"{key}_ci95_hi"])
    except (KeyError, TypeError, ValueError):
        return None
    return [low, high] if math.isfinite(low) and math.isfinite(high) else None


def percent(value: float, interval: list[float] | None) -> str:
    """`76.86 % [72.57, 81.14]`: an accuracy and its 95 % interval, as the console shows them
    (the interval left out when there is none)."""
    shown = f" [{interval[0] * 100:.2f}, {interval[1] * 100:.2f}]" if interval else ""
    return f"{value * 100:.2f} %{shown}"
