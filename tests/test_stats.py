"""How sure a score is (fer_search.stats): seeded bootstrap intervals that hold the score and
narrow as the split grows, McNemar's exact test on known tables, and the intervals that
`evaluate` prints beside its accuracy and macro-F1."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from fer_search import stats
from fer_search.evaluation import classification_metrics, compare_predictions, format_metrics

CLASSES = 7


def predictions(n: int, accuracy: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n labels over 7 classes and predictions of which exactly round(accuracy * n) are right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    wrong = (labels + rng.integers(1, CLASSES, n)) % CLASSES
    right = rng.permutation(n) < round(accuracy * n)
    return labels, np.where(right, labels, wrong)


def sklearn_macro_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    classes = list(range(CLASSES))
    return float(f1_score(labels, pred, labels=classes, average="macro", zero_division=0))


def test_the_bootstrap_is_seeded():
    labels, pred = predictions(500, 0.6)
    other = np.roll(pred, 1)
    assert stats.accuracy_ci(labels, pred) == stats.accuracy_ci(labels, pred)
    assert stats.macro_f1_ci(labels, pred, CLASSES) == stats.macro_f1_ci(labels, pred, CLASSES)
    assert stats.paired_comparison(labels, pred, other) == stats.paired_comparison(
        labels, pred, other
    )


@pytest.mark.parametrize("accuracy", [0.2, 0.6, 0.95])
def test_intervals_hold_the_score(accuracy):
    labels, pred = predictions(800, accuracy)
    low, high = stats.accuracy_ci(labels, pred)
    assert low < accuracy < high
    low, high = stats.macro_f1_ci(labels, pred, CLASSES)
    assert low < sklearn_macro_f1(labels, pred) < high


def test_intervals_narrow_as_the_split_grows():
    small = stats.accuracy_ci(*predictions(100, 0.6))
    large = stats.accuracy_ci(*predictions(10_000, 0.6))
    # the width goes as 1/sqrt(n): 100 times the images, about a tenth of the width
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5
    assert 0.15 < small[1] - small[0] < 0.25  # 2 * 1.96 * sqrt(0.6 * 0.4 / 100) = 0.19
    small_f1 = stats.macro_f1_ci(*predictions(100, 0.6), CLASSES)
    large_f1 = stats.macro_f1_ci(*predictions(10_000, 0.6), CLASSES)
    assert (large_f1[1] - large_f1[0]) < (small_f1[1] - small_f1[0]) / 5


def test_macro_f1_counts_absent_classes_as_scikit_learn_does():
    # only 3 of the 7 classes occur: their F1 is averaged with four zeros, as scikit-learn does
    # with labels=range(7); averaging over the classes present would be 7/3 times higher
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    pred = np.where(rng.random(600) < 0.8, labels, rng.integers(0, 3, 600))
    expected = sklearn_macro_f1(labels, pred)
    low, high = stats.macro_f1_ci(labels, pred, CLASSES)
    assert low < expected < high and high < 0.5
    # one class, always right: every resample scores exactly scikit-learn's 1/7
    assert stats.macro_f1_ci(np.zeros(50, int), np.zeros(50, int), CLASSES) == pytest.approx(
        [sklearn_macro_f1(np.zeros(50, int), np.zeros(50, int))] * 2
    )


def correct_table(only_a: int, only_b: int, both: int = 20, neither: int = 8):
    """Right/wrong per image of two models with this McNemar table."""
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_on_known_tables():
    p = stats.mcnemar_exact(*correct_table(10, 2))
    assert p == pytest.approx(binomtest(10, 12, 0.5).pvalue) and p == pytest.approx(
        0.0386, abs=1e-4
    )
    assert stats.mcnemar_exact(*correct_table(2, 10)) == pytest.approx(p)  # two-sided
    assert stats.mcnemar_exact(*correct_table(0, 0)) == 1.0  # no image tells them apart
    assert stats.mcnemar_exact(*correct_table(6, 6)) == 1.0


def test_a_model_against_itself_is_no_difference():
    labels, pred = predictions(400, 0.6)
    result = stats.paired_comparison(labels, pred, pred)
    assert result == {
        "difference": 0.0,
        "difference_ci95": [0.0, 0.0],
        "p_value": 1.0,
        "within_noise": True,
    }


def test_a_clearly_better_model_is_outside_the_noise():
    labels, better = predictions(1000, 0.7, seed=1)
    worse = np.where(np.arange(1000) % 4 == 0, (labels + 1) % CLASSES, better)  # 25 % more wrong
    result = stats.paired_comparison(labels, better, worse)
    low, high = result["difference_ci95"]
    assert 0 < low < result["difference"] < high
    assert not result["within_noise"] and result["p_value"] < 1e-6
    swapped = stats.paired_comparison(labels, worse, better)
    assert swapped["difference"] == -result["difference"]


def test_models_one_image_apart_are_within_noise():
    labels, a = predictions(1000, 0.6, seed=2)
    b = a.copy()
    b[np.flatnonzero(a == labels)[0]] = (labels[np.flatnonzero(a == labels)[0]] + 1) % CLASSES
    result = stats.paired_comparison(labels, a, b)
    assert result["difference"] == pytest.approx(0.001)
    assert result["within_noise"] and result["p_value"] == 1.0


def test_evaluate_s_metrics_carry_intervals_and_print_them():
    labels, pred = predictions(300, 0.6)
    metrics = classification_metrics(np.eye(CLASSES)[pred], labels, [f"c{i}" for i in range(7)])
    assert metrics["macro_f1"] == pytest.approx(sklearn_macro_f1(labels, pred))
    assert metrics["accuracy_ci95"] == stats.accuracy_ci(labels, pred)
    assert metrics["ci_method"] == stats.METHOD
    for key in ("accuracy", "macro_f1"):
        low, high = metrics[f"{key}_ci95"]
        assert low < metrics[key] < high
    low, high = metrics["accuracy_ci95"]
    last = format_metrics(metrics).splitlines()[-1]
    assert last.startswith(f"accuracy 60.00 % (95 % CI {low * 100:.2f}-{high * 100:.2f} %)")
    low, high = metrics["macro_f1_ci95"]
    assert f"(95 % CI {low:.4f}-{high:.4f})" in last and last.endswith("n=300")


@pytest.mark.parametrize("probs", [np.zeros((0, CLASSES)), np.zeros((0, 0))], ids=["7", "0"])
def test_an_empty_split_still_scores(probs):
    labels = np.zeros(0, dtype=int)
    metrics = classification_metrics(probs, labels, [f"c{i}" for i in range(CLASSES)])
    assert (metrics["n"], metrics["accuracy"], metrics["macro_f1"]) == (0, 0.0, 0.0)
    assert metrics["accuracy_ci95"] == metrics["macro_f1_ci95"] == [0.0, 0.0]
    assert "n=0" in format_metrics(metrics)
    result = compare_predictions(labels, labels, labels, ["a", "b"])
    assert result["difference"] == 0.0 and result["p_value"] == 1.0 and result["within_noise"]


def test_compare_predictions_per_class_recall():
    labels = np.array([0, 0, 0, 0, 1, 1])
    pred_a = np.array([0, 0, 0, 1, 1, 1])  # class 0: 3/4, class 1: 2/2
    pred_b = np.array([0, 1, 1, 1, 1, 0])  # class 0: 1/4, class 1: 1/2
    result = compare_predictions(labels, pred_a, pred_b, ["x", "y", "z"])
    assert result["a"]["accuracy"] == pytest.approx(5 / 6)
    assert result["b"]["accuracy"] == pytest.approx(2 / 6)
    assert result["difference"] == pytest.approx(3 / 6)
    assert result["per_class"]["x"] == pytest.approx(
        {"a": 0.75, "b": 0.25, "difference": 0.5, "support": 4}
    )
    assert result["per_class"]["y"]["difference"] == pytest.approx(0.5)
    assert result["per_class"]["z"] == {"a": 0.0, "b": 0.0, "difference": 0.0, "support": 0}
