"""Ensembles from the trials a search already trained, chosen on PublicTest (val) only.

`greedy_selection` is ensemble selection with replacement (Caruana et al., "Ensemble Selection
from Libraries of Models", ICML 2004): start empty, repeatedly add the model (any, again if it
helps) whose addition makes the averaged probabilities most accurate on val, for a fixed number
of steps, and keep the best prefix. `bagged_selection` is the paper's bagged ensemble selection
(its section 4.2): the greedy selection repeated on random halves of the pool, the weights
averaged, so that no one model's luck on val decides. `choose_ensemble` compares them with the
plain top-k average on val and keeps the best; the test split is looked at only afterwards, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bagged_selection", "choose_ensemble", "greedy_selection", "weighted_accuracy"]

BAGS = 20  # the paper's bag count
BAG_FRACTION = 0.5  # the share of the pool each bag draws (the paper's p = 0.5)
SEED = 0
# At a thousand trials: selection draws from the best LIBRARY models on val (the paper's model
# library pruning, its section 2.3) in at most MAX_STEPS additions (auto-sklearn's ensemble
# size); a pool of 25 or fewer is selected from whole, in 2 x its size steps, as before.
LIBRARY = 100
MAX_STEPS = 50


def weighted_accuracy(probs: list[np.ndarray], weights: np.ndarray, labels: np.ndarray) -> float:
    mean = np.tensordot(weights, np.stack(probs), axes=1)
    return float((mean.argmax(1) == labels).mean())


def greedy_selection(
    probs: list[np.ndarray], labels: np.ndarray, steps: int | None = None
) -> tuple[np.ndarray, float]:
    """Weights over `probs` (they sum to 1: how often each model was picked) and their val
    accuracy. Ties go to the earlier model (the better-ranked trial) and the shorter prefix."""
    steps = steps or min(2 * len(probs), MAX_STEPS)
    stacked = np.stack(probs)
    total = np.zeros_like(probs[0], dtype=np.float64)
    counts = np.zeros(len(probs), dtype=np.int64)
    best_counts, best_acc = counts.copy(), -1.0
    for _ in range(steps):
        # every candidate at once: (models, images) right answers after adding each
        scores = ((total + stacked).argmax(2) == labels).mean(1)
        pick = int(np.argmax(scores))  # first of the best
        total += stacked[pick]
        counts[pick] += 1
        if scores[pick] > best_acc:
            best_acc, best_counts = float(scores[pick]), counts.copy()
    return best_counts / best_counts.sum(), best_acc


def bagged_selection(
    probs: list[np.ndarray],
    labels: np.ndarray,
    bags: int = BAGS,
    fraction: float = BAG_FRACTION,
    seed: int = SEED,
) -> tuple[np.ndarray, float]:
    """Weights over `probs` (summing to 1): the mean of greedy_selection's weights on `bags`
    seeded random subsets of `fraction` of the models; and their val accuracy."""
    rng = np.random.default_rng(seed)
    size = max(1, round(fraction * len(probs)))
    weights = np.zeros(len(probs))
    for _ in range(bags):
        bag = np.sort(rng.choice(len(probs), size=size, replace=False))
        bag_weights, _ = greedy_selection([probs[i] for i in bag], labels)
        weights[bag] += bag_weights / bags
    return weights, weighted_accuracy(probs, weights, labels)


def choose_ensemble(probs: list[np.ndarray], labels: np.ndarray, top_k: int) -> dict[str, Any]:
    """The greedy and the bagged selection against the top-k average (the first `top_k`
    models), on val: {"weights", "val_acc", "chosen": "top_k" | "selection" | "bagged", and each
    candidate's `<name>_weights` and `<name>_val_acc`}; `weights` are the chosen one's (top-k:
    equal weights on the first k). A candidate must beat those before it to be chosen.
    `probs` are ranked best first: the selections draw from the first LIBRARY of them."""
    k = max(1, min(top_k, len(probs)))
    top = np.zeros(len(probs))
    top[:k] = 1.0 / k
    library = probs[:LIBRARY]

    def over_pool(found: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
        weights = np.zeros(len(probs))
        weights[: len(library)] = found[0]
        return weights, found[1]

    candidates = {
        "top_k": (top, weighted_accuracy(probs[:k], top[:k], labels)),
        "selection": over_pool(greedy_selection(library, labels)),
        "bagged": over_pool(bagged_selection(library, labels)),
    }
    chosen = "top_k"
    for name, (_, acc) in candidates.items():
        if acc > candidates[chosen][1]:
            chosen = name
    found: dict[str, Any] = {
        "weights": candidates[chosen][0],
        "val_acc": candidates[chosen][1],
        "chosen": chosen,
    }
    for name, (weights, acc) in candidates.items():
        found.update({f"{name}_weights": weights, f"{name}_val_acc": acc})
    return found
