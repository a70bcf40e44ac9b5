"""The report's figures of the trials over time: learning curves per trial and the best result
so far against wall time (figures_search draws the parameters and the timeline).
matplotlib is imported when a figure is drawn, with the Agg backend (no display needed)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fer_search.config import METRIC, MODE, is_refit_id
from fer_search.report.plotting import no_data, pyplot, save_figure
from fer_search.report.trials import (
    ALL_COLOURED,
    OTHERS_COLOUR,
    TOP_COLOURED,
    qualitative_colours,
    top_colours,
)

__all__ = [
    "FIGURES",
    "plot_best_so_far",
    "plot_learning_curves",
    "search_best",
    "time_origin",
    "time_unit",
]

FIGURES = (
    "learning_curves.png",
    "best_so_far.png",
    "timeline.png",
    "parallel_coordinates.png",
    "param_slices.png",
    "pareto_front.png",  # a multi-objective search's (report.pareto)
    "confusion_test.png",  # written by the final evaluation, not here
)
# The experiment's ISO start time may be naive local time written on another machine; trust it
# only when it falls shortly before the first trial started.
MAX_START_GAP_S = 3600.0
MANY_POINTS = 2000  # epoch results in best_so_far.png past which its points shrink and fade
# the trials past the coloured ones (trials.ALL_COLOURED, TOP_COLOURED)
OTHER_STYLE = {"color": OTHERS_COLOUR, "linewidth": 0.6, "alpha": 0.45, "zorder": 2,
               "markersize": 1.5}  # fmt: skip


def plot_learning_curves(
    table: pd.DataFrame, curves: dict[str, pd.DataFrame], best_id: str | None, path: Path
) -> Path:
    """val_acc and train_loss against epoch, one colour per trial named in the legend
    (`#7 pruned`); the best trial thick and on top. Past ALL_COLOURED trials only the
    TOP_COLOURED best keep a colour and a name; the rest are thin grey lines."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    styles = curve_styles(table[table["trial_id"].isin(list(curves))], best_id)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    panels = (
        (axes[0], METRIC, 100.0, "val accuracy (%)"),
        (axes[1], "train_loss", 1.0, "train loss"),
    )
    drawn_any = False
    for ax, column, scale, label in panels:
        drawn = plot_trial_curves(ax, curves, column, scale, styles)
        drawn_any = drawn_any or bool(drawn)
        if not drawn:
            no_data(ax, f"no {column} in any progress.csv")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if drawn_any:
        handles: dict[str, Any] = {}  # a trial may have train_loss but no val_acc
        for ax in axes:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(name, handle)
        fig.legend(handles.values(), handles.keys(), loc="outside right center", fontsize="small")
    fig.suptitle(f"learning curves ({len(curves)} trials with progress)")
    return save_figure(fig, path)


def curve_styles(table: pd.DataFrame, best_id: str | None) -> dict[str, dict[str, Any]]:
    """trial_id -> line style, in legend order (best first, then by METRIC): a colour of its
    own and a label for each trial up to ALL_COLOURED, else for the TOP_COLOURED best
    (top_colours: the colours they have in the other figures); the rest share one thin grey
    "N other trials" entry."""
    ids = table["trial_id"].tolist()
    if len(table) <= ALL_COLOURED:
        order = sorted(ids, key=lambda t: t != best_id)
        palette = qualitative_colours()
        colours = {t: palette[i % len(palette)] for i, t in enumerate(order)}
    else:
        colours = top_colours(table, best_id, TOP_COLOURED)
    labels = dict(zip(ids, table["label"], strict=True))
    others = len(ids) - len(colours)
    styles: dict[str, dict[str, Any]] = {}
    for trial_id in [*colours, *(t for t in ids if t not in colours)]:
        best = trial_id == best_id
        if trial_id in colours:
            styles[trial_id] = {
                "color": colours[trial_id],
                "linewidth": 2.8 if best else 1.3,
                "alpha": 1.0 if best else 0.85,
                "zorder": 4 if best else 3,
                "markersize": 4 if best else 2.5,
                "label": f"{labels[trial_id]} (best)" if best else labels[trial_id],
            }
        else:
            styles[trial_id] = {**OTHER_STYLE, "label": f"{others} other trials"}
    return styles


def plot_trial_curves(
    ax, curves: dict[str, pd.DataFrame], column: str, scale: float, styles: dict[str, dict]
) -> int:
    """One line per trial that has `column`, in `styles`' order; returns how many were drawn.
    The grey ones (OTHER_STYLE) are one line broken between trials: a thousand of them draw
    as fast as one."""
    drawn, grey_x, grey_y, grey_label = 0, [], [], None
    for trial_id, style in styles.items():
        curve = curves[trial_id]
        if column not in curve or curve[column].notna().sum() == 0:
            continue
        drawn += 1
        if style["color"] == OTHER_STYLE["color"]:
            grey_x += [*curve["epoch"], math.nan]
            grey_y += [*(curve[column] * scale), math.nan]
            grey_label = style["label"]
            continue
        # Markers on every line: a trial ASHA stopped after one epoch is a single point.
        ax.plot(curve["epoch"], curve[column] * scale, marker="o", **style)
    if grey_x:
        ax.plot(grey_x, grey_y, marker="o", **{**OTHER_STYLE, "label": grey_label})
    return drawn


def plot_best_so_far(results: dict[str, Any], table: pd.DataFrame, path: Path) -> Path:
    """The best val_acc the searched trials reached so far against time, as a step curve over
    their epoch results; the refits' epochs drawn apart (they are no samples of the search), their
    stretch of wall time shaded, after the line where the first of them started."""
    plt = pyplot()
    experiment = results["experiment"]
    maximise = experiment.get("mode", MODE) != "min"
    points, xlabel, origin = progress_times(results["curves"], experiment)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if points.empty:
        no_data(ax, "no progress data")
    else:
        scale, unit = time_unit(float(points["t"].max()))
        searched = search_best(points, maximise)
        many = len(points) > MANY_POINTS  # smaller and fainter, so where they crowd shows
        for refit, colour, name in ((False, "C0", "search"), (True, "C1", "refit")):
            these = points[points["refit"] == refit]
            if len(these):
                ax.scatter(
                    these["t"] / scale,
                    these[METRIC] * 100,
                    s=5 if many else 10,
                    alpha=max(0.12, 0.35 * MANY_POINTS / len(points)) if many else 0.35,
                    color=colour,
                    label=f"every epoch of every {name} trial",
                )
        if len(searched):
            ax.step(
                searched["t"] / scale,
                searched["best"] * 100,
                where="post",
                color="C3",
                linewidth=2,
                label=f"best {METRIC} so far (searched trials)",
            )
        boundary = refit_boundary(table, origin)
        if boundary is not None:
            boundary /= scale
            right = max(boundary, float(points["t"].max()) / scale)
            ax.axvspan(boundary, right, color="C1", alpha=0.1, zorder=0, label="refit phase")
            ax.axvline(boundary, color="C1", linestyle="--", linewidth=1.2)
        ax.legend(loc="lower right", fontsize="small")
        ax.set_xlim(left=min(0.0, float(points["t"].min()) / scale))
        xlabel = f"{xlabel} ({unit})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(f"best {METRIC} so far: {experiment.get('name', '')}")
    return save_figure(fig, path)


def search_best(points: pd.DataFrame, maximise: bool) -> pd.DataFrame:
    """The searched trials' epochs of `points` (progress_times') with `best`, the best METRIC
    so far: a refit retrains a searched configuration, so it is no new sample of the search."""
    searched = points[~points["refit"].astype(bool)]
    best = searched[METRIC].cummax() if maximise else searched[METRIC].cummin()
    return searched.assign(best=best)


def refit_boundary(table: pd.DataFrame, origin: float | None) -> float | None:
    """Seconds from `origin` to the first refit trial's start: where the search phase ends;
    None without a refit that has timestamps, or without a wall-clock origin."""
    starts = table.loc[table["refit"], "start"].dropna()
    return None if origin is None or starts.empty else float(starts.min()) - origin


def progress_times(
    curves: dict[str, pd.DataFrame], experiment: dict[str, Any]
) -> tuple[pd.DataFrame, str, float | None]:
    """(t, val_acc, refit) for every reported epoch, sorted by t; what t measures; and the Unix
    time t counts from (None when t is each trial's own training time)."""
    frames = {t: c for t, c in curves.items() if METRIC in c}
    columns = ["timestamp", "time_total_s", METRIC]
    rows = pd.concat(
        [c.reindex(columns=columns).assign(refit=is_refit_id(t)) for t, c in frames.items()]
        or [pd.DataFrame(columns=[*columns, "refit"])]
    )
    origin: float | None = None
    if frames and all("timestamp" in c and c["timestamp"].notna().all() for c in frames.values()):
        origin = experiment_start(experiment, rows)
        t, label = rows["timestamp"] - origin, "wall time since the experiment started"
    elif frames and all("time_total_s" in c for c in frames.values()):
        t, label = rows["time_total_s"], "time within each trial (progress.csv has no timestamps)"
    else:
        return pd.DataFrame({"t": [], METRIC: [], "refit": []}), "time", None
    points = pd.DataFrame(
        {"t": t.to_numpy(), METRIC: rows[METRIC].to_numpy(), "refit": rows["refit"].to_numpy()}
    ).dropna()
    points = points.sort_values(["t", METRIC], kind="stable").reset_index(drop=True)
    return points, label, origin


def experiment_start(experiment: dict[str, Any], rows: pd.DataFrame) -> float:
    """Unix time the experiment started; the first trial's start when the ISO time is unusable."""
    trial_starts = rows["timestamp"] - rows["time_total_s"].fillna(0)
    return time_origin(experiment, float(trial_starts.min()))


def time_origin(experiment: dict[str, Any], earliest: float) -> float:
    """experiment.json's start time when it falls shortly before `earliest` (the first trial's
    start), else `earliest`."""
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
