"""The report's figures: learning curves per trial and the best result so far against time.
matplotlib is imported when a figure is drawn, with the Agg backend (no display needed)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fer_search.config import METRIC, MODE

__all__ = ["FIGURES", "plot_best_so_far", "plot_learning_curves"]

FIGURES = ("learning_curves.png", "best_so_far.png", "confusion_test.png")
# The experiment's ISO start time may be naive local time written on another machine; trust it
# only when it falls shortly before the first trial started.
MAX_START_GAP_S = 3600.0


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(curves: dict[str, pd.DataFrame], best_id: str | None, path: Path) -> Path:
    """val_acc and train_loss against epoch for every trial; the best trial in red, on top."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = (
        (axes[0], METRIC, 100.0, "val accuracy (%)"),
        (axes[1], "train_loss", 1.0, "train loss"),
    )
    for ax, column, scale, label in panels:
        if plot_trial_curves(ax, curves, column, scale, best_id):
            ax.legend(loc="best")
        else:
            ax.text(
                0.5,
                0.5,
                f"no {column} in any progress.csv",
                transform=ax.transAxes,
                ha="center",
                va="center",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"learning curves ({len(curves)} trials with progress)")
    return save_figure(fig, path)


def plot_trial_curves(
    ax, curves: dict[str, pd.DataFrame], column: str, scale: float, best_id: str | None
) -> int:
    """One line per trial that has `column`; returns how many were drawn."""
    drawn = others = 0
    for trial_id, curve in curves.items():
        if column not in curve or curve[column].notna().sum() == 0:
            continue
        best = trial_id == best_id
        others += not best
        # Markers on every line: a trial ASHA stopped after one epoch is a single point.
        label = f"best trial {trial_id}" if best else ("other trials" if others == 1 else None)
        ax.plot(
            curve["epoch"],
            curve[column] * scale,
            color="C3" if best else "C0",
            alpha=1.0 if best else 0.4,
            linewidth=2.2 if best else 1.0,
            zorder=3 if best else 2,
            marker="o",
            markersize=3.5 if best else 2.5,
            label=label,
        )
        drawn += 1
    return drawn


def plot_best_so_far(results: dict[str, Any], path: Path) -> Path:
    """The best val_acc reached so far against time, as a step curve over every epoch result."""
    plt = pyplot()
    experiment = results["experiment"]
    maximise = experiment.get("mode", MODE) != "min"
    points, xlabel = progress_times(results["curves"], experiment)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if points.empty:
        ax.text(0.5, 0.5, "no progress data", transform=ax.transAxes, ha="center", va="center")
    else:
        scale, unit = time_unit(float(points["t"].max()))
        best = points[METRIC].cummax() if maximise else points[METRIC].cummin()
        ax.scatter(
            points["t"] / scale,
            points[METRIC] * 100,
            s=10,
            alpha=0.3,
            color="C0",
            label="every epoch of every trial",
        )
        ax.step(
            points["t"] / scale,
            best * 100,
            where="post",
            color="C3",
            linewidth=2,
            label=f"best {METRIC} so far",
        )
        ax.legend(loc="best")
        ax.set_xlim(left=min(0.0, float(points["t"].min()) / scale))
        xlabel = f"{xlabel} ({unit})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(f"best {METRIC} so far: {experiment.get('name', '')}")
    return save_figure(fig, path)


def progress_times(
    curves: dict[str, pd.DataFrame], experiment: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """(t, val_acc) for every reported epoch, sorted by t, and what t measures."""
    frames = [c for c in curves.values() if METRIC in c]
    if frames and all("timestamp" in c and c["timestamp"].notna().all() for c in frames):
        rows = pd.concat([c.reindex(columns=["timestamp", "time_total_s", METRIC]) for c in frames])
        start = experiment_start(experiment, rows)
        t, label = rows["timestamp"] - start, "wall time since the experiment started"
    elif frames and all("time_total_s" in c for c in frames):
        rows = pd.concat([c[["time_total_s", METRIC]] for c in frames])
        t, label = rows["time_total_s"], "time within each trial (progress.csv has no timestamps)"
    else:
        return pd.DataFrame({"t": [], METRIC: []}), "time"
    points = pd.DataFrame({"t": t.to_numpy(), METRIC: rows[METRIC].to_numpy()}).dropna()
    return points.sort_values(["t", METRIC], kind="stable").reset_index(drop=True), label


def experiment_start(experiment: dict[str, Any], rows: pd.DataFrame) -> float:
    """Unix time the experiment started; the first trial's start when the ISO time is unusable."""
    trial_starts = rows["timestamp"] - rows["time_total_s"].fillna(0)
    earliest = float(trial_starts.min())
    try:
        started = datetime.fromisoformat(str(experiment.get("started"))).timestamp()
    except (TypeError, ValueError, OverflowError):
        return earliest
    return started if 0 <= earliest - started <= MAX_START_GAP_S else earliest


def time_unit(longest_s: float) -> tuple[float, str]:
    if longest_s > 2 * 3600:
        return 3600.0, "h"
    if longest_s > 600:
        return 60.0, "min"
    return 1.0, "s"


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
