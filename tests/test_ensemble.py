"""Ensemble selection from the pool of trials (fer_search.ensemble), chosen on val only."""

from __future__ import annotations

import numpy as np
import pytest

from fer_search.ensemble import (
    bagged_selection,
    choose_ensemble,
    greedy_selection,
    weighted_accuracy,
)

N = 100
LABELS = np.zeros(N, dtype=np.int64)  # class 0 is right everywhere; two classes


def model(right: np.ndarray, sure: float, unsure: float) -> np.ndarray:
    """Probabilities of a two-class model that gives class 0 `sure` where `right`, else
    `unsure` (< 0.5: wrong)."""
    p0 = np.where(right, sure, unsure)
    return np.stack([p0, 1 - p0], axis=1)


def constructed_pool() -> list[np.ndarray]:
    """A and B are right on the same 70 images (B a near copy of A: the top-2 average adds
    nothing); C is weaker, 50 right, but sure exactly where A and B are wrong."""
    index = np.arange(N)
    a = model(index < 70, 0.6, 0.4)
    b = model(index < 69, 0.58, 0.42)
    c = model(index >= 50, 0.9, 0.45)
    return [a, b, c]


def test_greedy_selection_beats_the_top_k_average_where_it_must():
    pool = constructed_pool()
    assert [weighted_accuracy(pool, np.eye(3)[i], LABELS) for i in range(3)] == [0.7, 0.69, 0.5]
    top2 = weighted_accuracy(pool, np.array([0.5, 0.5, 0.0]), LABELS)
    weights, acc = greedy_selection(pool, LABELS)
    assert top2 == pytest.approx(0.7) and acc == 1.0
    assert weights[2] > 0 and weights.sum() == pytest.approx(1.0)  # C, the complement, is in
    chosen = choose_ensemble(pool, LABELS, top_k=2)
    assert chosen["chosen"] == "selection" and chosen["val_acc"] == 1.0
    assert chosen["top_k_val_acc"] == pytest.approx(0.7)


def test_top_k_is_kept_when_the_selection_is_no_better():
    same = [model(np.arange(N) < 80, 0.7, 0.3)] * 3  # three copies: nothing to gain
    chosen = choose_ensemble(same, LABELS, top_k=3)
    assert chosen["chosen"] == "top_k" and chosen["val_acc"] == pytest.approx(0.8)
    assert list(chosen["weights"]) == pytest.approx([1 / 3] * 3)


def test_selection_with_replacement_stops_at_its_best_prefix():
    pool = constructed_pool()
    weights, acc = greedy_selection(pool, LABELS, steps=10)
    # later additions that do not raise val accuracy are not kept
    assert acc == weighted_accuracy(pool, weights, LABELS) == 1.0
    assert np.count_nonzero(weights) <= 2


def test_bagged_selection_averages_the_greedy_picks_of_seeded_half_pools():
    pool = constructed_pool()
    weights, acc = bagged_selection(pool, LABELS)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    assert acc == weighted_accuracy(pool, weights, LABELS)
    assert weights[2] > 0  # C, the complement, is picked in the bags that hold it
    again, _ = bagged_selection(pool, LABELS)
    assert np.array_equal(weights, again)  # seeded: the same ensemble every time
    # one bag of the whole pool is the plain greedy selection
    whole, _ = bagged_selection(pool, LABELS, bags=1, fraction=1.0)
    assert np.allclose(whole, greedy_selection(pool, LABELS)[0])


@pytest.mark.parametrize("pool", [constructed_pool(), [model(np.arange(N) < 80, 0.7, 0.3)] * 3])
def test_the_choice_is_the_best_candidate_on_val(pool):
    chosen = choose_ensemble(pool, LABELS, top_k=2)
    scores = {name: chosen[f"{name}_val_acc"] for name in ("top_k", "selection", "bagged")}
    assert chosen["val_acc"] == max(scores.values())
    first_best = next(name for name, acc in scores.items() if acc == max(scores.values()))
    assert chosen["chosen"] == first_best  # a tie keeps the simpler candidate
    assert np.array_equal(chosen["weights"], chosen[f"{first_best}_weights"])
