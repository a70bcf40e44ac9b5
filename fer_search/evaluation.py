"""Classification metrics (scikit-learn) with 95 % intervals (fer_search.stats), paired
comparisons of two models' predictions, and confusion-matrix figures for one split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer_search import stats

__all__ = [
    "classification_metrics",
    "compare_predictions",
    "format_comparison",
    "format_metrics",
    "plot_confusion",
]


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy and macro-F1 with their 95 % intervals (`ci_method` says how), per-class
    precision/recall/F1/support and the confusion matrix. An empty split scores 0 throughout."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = np.asarray(labels)
    classes = list(range(len(class_names)))
    if len(labels):
        pred = probs.argmax(1)
        precision, recall, f1, support = precision_recall_fscore_support(
            labels, pred, labels=classes, zero_division=0
        )
        matrix = confusion_matrix(labels, pred, labels=classes)
        macro_f1 = f1_score(labels, pred, labels=classes, average="macro", zero_division=0)
    else:  # scikit-learn refuses empty input
        pred = labels
        precision = recall = f1 = np.zeros(len(classes))
        support, macro_f1 = np.zeros(len(classes), dtype=int), 0.0
        matrix = np.zeros((len(classes), len(classes)), dtype=int)
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "accuracy_ci95": stats.accuracy_ci(labels, pred),
        "macro_f1": float(macro_f1),
        "macro_f1_ci95": stats.macro_f1_ci(labels, pred, len(classes)),
        "ci_method": stats.METHOD,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


def format_metrics(metrics: dict[str, Any], title: str = "") -> str:
    """A plain-text table: per-class precision/recall/F1/support, then accuracy and macro-F1,
    each with its 95 % interval when `metrics` has one."""
    lines = [title] if title else []
    lines.append(f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<10} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
            f"{row['support']:>8d}"
        )
    accuracy = f"accuracy {metrics['accuracy'] * 100:.2f} %"
    if metrics.get("accuracy_ci95"):
        low, high = metrics["accuracy_ci95"]
        accuracy += f" (95 % CI {low * 100:.2f}-{high * 100:.2f} %)"
    f1 = f"macro-F1 {metrics['macro_f1']:.4f}"
    if metrics.get("macro_f1_ci95"):
        low, high = metrics["macro_f1_ci95"]
        f1 += f" (95 % CI {low:.4f}-{high:.4f})"
    lines.append(f"{accuracy}   {f1}   n={metrics['n']}")
    return "\n".join(lines)


def compare_predictions(
    labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Two models' predictions on the same images: each accuracy with its 95 % interval, the
    paired difference A - B (interval, McNemar p-value, within noise or not) and each class's
    accuracy (recall) for both."""
    labels, pred_a, pred_b = np.asarray(labels), np.asarray(pred_a), np.asarray(pred_b)

    def accuracy(pred: np.ndarray, where: np.ndarray) -> float:
        return float((pred[where] == labels[where]).mean()) if where.any() else 0.0

    everything = np.ones(len(labels), dtype=bool)
    per_class = {}
    for i, name in enumerate(class_names):
        a, b = accuracy(pred_a, labels == i), accuracy(pred_b, labels == i)
        per_class[name] = {"a": a, "b": b, "difference": a - b, "support": int((labels == i).sum())}
    return {
        "a": {"accuracy": accuracy(pred_a, everything), "ci95": stats.accuracy_ci(labels, pred_a)},
        "b": {"accuracy": accuracy(pred_b, everything), "ci95": stats.accuracy_ci(labels, pred_b)},
        **stats.paired_comparison(labels, pred_a, pred_b),
        "per_class": per_class,
        "n": int(len(labels)),
        "method": stats.METHOD,
    }


def format_comparison(result: dict[str, Any], title: str = "") -> str:
    """`compare_predictions`' figures as text: A and B, A - B, then the per-class table."""

    def pp(value: float) -> str:
        return f"{value * 100:+.2f}"

    lines = [title] if title else []
    width = max(len(str(result[k].get("path", k))) for k in ("a", "b"))
    for key in ("a", "b"):
        side = result[key]
        low, high = side["ci95"]
        lines.append(
            f"{key.upper()}  {str(side.get('path', key)):<{width}}  accuracy "
            f"{side['accuracy'] * 100:6.2f} % (95 % CI {low * 100:.2f}-{high * 100:.2f} %)"
        )
    low, high = result["difference_ci95"]
    p = result["p_value"]
    verdict = (
        "within noise (the interval contains 0)"
        if result["within_noise"]
        else f"{'A' if result['difference'] > 0 else 'B'} is better (the interval excludes 0)"
    )
    lines.append(
        f"A - B  {pp(result['difference'])} pp (95 % CI {pp(low)} to {pp(high)} pp), "
        f"McNemar p = {f'{p:.4f}' if p >= 1e-4 else f'{p:.1e}'}"
    )
    lines.append(f"       {verdict}; n={result['n']} images, the same for both")
    lines.append(
        f"{'class':<10} {'A':>8} {'B':>8} {'A - B':>9} {'support':>8}   (accuracy = recall)"
    )
    for name, row in result["per_class"].items():
        lines.append(
            f"{name:<10} {row['a'] * 100:>6.2f} % {row['b'] * 100:>6.2f} % "
            f"{pp(row['difference']):>6} pp {row.get('support', 0):>8d}"
        )
    lines.append(f"method: {result['method']}")
    return "\n".join(lines)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = ""):
    """A two-panel matplotlib figure: counts and row-normalised (recall per true class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, values, fmt, name in (
        (axes[0], matrix, "d", "counts"),
        (axes[1], normalised, ".2f", "row-normalised"),
    ):
        ax.imshow(values, cmap="Blues")
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
        ax.set_yticks(range(len(class_names)), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} ({name})" if title else name)
        peak = values.max() if values.size else 0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                color = "white" if peak and values[i, j] > peak / 2 else "black"
                ax.text(
                    j,
                    i,
                    format(values[i, j], fmt),
                    ha="center",
                    va="center",
                    color=color,
                    fontsize=8,
                )
    fig.tight_layout()
    return fig


def plot_confusion(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    import matplotlib.pyplot as plt

    fig = confusion_figure(matrix, class_names, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
