"""Classification metrics (scikit-learn) and confusion-matrix figures for one split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["classification_metrics", "format_metrics", "plot_confusion"]


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    pred = probs.argmax(1)
    classes = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, pred, labels=classes, zero_division=0
    )
    matrix = confusion_matrix(labels, pred, labels=classes)
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1_score(labels, pred, labels=classes, average="macro", zero_division=0)),
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
    """A plain-text table: per-class precision/recall/F1/support, then accuracy and macro-F1."""
    lines = [title] if title else []
    lines.append(f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<10} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
            f"{row['support']:>8d}"
        )
    lines.append(
        f"accuracy {metrics['accuracy'] * 100:.2f} %   macro-F1 {metrics['macro_f1']:.4f}"
        f"   n={metrics['n']}"
    )
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
