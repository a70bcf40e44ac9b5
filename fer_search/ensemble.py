"""Ensembles from the trials a search already trained, chosen on PublicTest (val) only.

`greedy_selection` is ensemble selection with replacement (Caruana et al., "Ensemble Selection
from Libraries of Models", ICML 2004): start empty, repeatedly add the model (any, again if it
helps) whose addition makes the averaged probabilities most accurate on val, for a fixed number
of steps, and keep the best prefix. `choose_ensemble` compares it with the plain top-k average
on val and keeps the better one; the test split is looked at only afterwards, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["choose_ensemble", "greedy_selection", "weighted_accuracy"]


def weighted_accuracy(probs: list[np.ndarray], weights: np.ndarray, labels: np.ndarray) -> float:
    mean = np.tensordot(weights, np.stack(probs), axes=1)
    return float((mean.argmax(1) == labels).mean())


def greedy_selection(
    probs: list[np.ndarray], labels: np.ndarray, steps: int | None = None
) -> tuple[np.ndarray, float]:
    """Weights over `probs` (they sum to 1: how often each model was picked) and their val
    accuracy. Ties go to the earlier model (the better-ranked trial) and the shorter prefix."""
    steps = steps or 2 * len(probs)
    total = np.zeros_like(probs[0], dtype=np.float64)
    counts = np.zeros(len(probs), dtype=np.int64)
    best_counts, best_acc = counts.copy(), -1.0
    for _ in range(steps):
        scores = [float(((total + p).argmax(1) == labels).mean()) for p in probs]
        pick = int(np.argmax(scores))  # first of the best
        total += probs[pick]
        counts[pick] += 1
        if scores[pick] > best_acc:
            best_acc, best_counts = scores[pick], counts.copy()
    return best_counts / best_counts.sum(), best_acc


def choose_ensemble(probs: list[np.ndarray], labels: np.ndarray, top_k: int) -> dict[str, Any]:
    """The greedy selection against the top-k average (the first `top_k` models), on val:
    {"weights", "val_acc", "chosen": "selection" | "top_k", and both candidates' weights and
    val_acc}; `weights` are the chosen one's (top-k: equal weights on the first k)."""
    k = max(1, min(top_k, len(probs)))
    top = np.zeros(len(probs))
    top[:k] = 1.0 / k
    top_acc = weighted_accuracy(probs, top, labels)
    weights, acc = greedy_selection(probs, labels)
    chosen = "selection" if acc > top_acc else "top_k"
    return {
        "weights": weights if chosen == "selection" else top,
        "val_acc": max(acc, top_acc),
        "selection_weights": weights,
        "selection_val_acc": acc,
        "top_k_weights": top,
        "top_k_val_acc": top_acc,
        "chosen": chosen,
    }
