"""The report's figures of what the search sampled and when: a parallel-coordinates plot and one
slice per sampled setting against val_acc, and a timeline of the trials. trials.py prepares the
data; these functions only draw it, each a "no data" figure rather than an error when empty."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_search.config import METRIC
from fer_search.report.figures import no_data, pyplot, save_figure, time_origin, time_unit
from fer_search.report.trials import (
    OTHER_STATUS_COLOUR,
    STATUS_COLOURS,
    Axis,
    axis_positions,
    timeline_rows,
)

__all__ = ["plot_parallel_coordinates", "plot_param_slices", "plot_timeline"]

SLICE_COLUMNS = 4
SCORE_AXIS = "val acc (%)"
TICK_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1}


def searched_rows(table: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """The searched trials (no refit: it repeats a configuration for more epochs, so its score
    is not comparable) with their sampled values from the leaderboard."""
    values = board.drop(columns=[c for c in table if c in board and c != "trial_id"])
    return table[~table["refit"]].merge(values, on="trial_id", how="left")


def plot_parallel_coordinates(
    table: pd.DataFrame, board: pd.DataFrame, axes: list[Axis], path: Path
) -> Path:
    """One line per searched trial through its value of every sampled setting and its val_acc,
    coloured by val_acc; trials without val_acc dashed grey."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    plt = pyplot()
    rows = searched_rows(table, board)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.4 * len(axes) + 3), 5.2))
    scores = rows[METRIC].astype(float) * 100
    if not axes or rows.empty:
        no_data(ax, "no sampled parameters" if not axes else "no trials")
        ax.set_axis_off()
        return save_figure(fig, path)
    score_axis = Axis(SCORE_AXIS, low=float(scores.min()), high=float(scores.max()))
    all_axes = [*axes, score_axis]
    rows[SCORE_AXIS] = scores
    grid = np.column_stack([axis_positions(rows[a.name], a) for a in all_axes])
    cmap, norm = colormaps["viridis"], Normalize(score_axis.low, score_axis.high)
    x = np.arange(len(all_axes))
    # worst first, so the best lines are drawn on top
    for i in scores.fillna(-math.inf).argsort(kind="stable"):
        if math.isnan(scores.iloc[i]):
            ax.plot(x, grid[i], color="0.6", linestyle="--", linewidth=0.8, alpha=0.6)
        else:
            ax.plot(x, grid[i], color=cmap(norm(scores.iloc[i])), linewidth=1.6, alpha=0.85)
    for i, axis in enumerate(all_axes):
        ax.axvline(i, color="0.25", linewidth=0.8, zorder=0)
        for position, value in axis_ticks(axis):
            ax.text(i + 0.04, position, short_value(value), fontsize=7, va="center", bbox=TICK_BOX)
    ax.set_xticks(x, [f"{a.name}\n(log)" if a.log else a.name for a in all_axes], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(all_axes) - 0.4)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    if scores.notna().any():
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
        bar.set_label(SCORE_AXIS)
    missing = int(scores.isna().sum())
    note = f"; {missing} without {METRIC} dashed" if missing else ""
    ax.set_title(f"sampled parameters of {len(rows)} searched trials{note}")
    return save_figure(fig, path)


def axis_ticks(axis: Axis) -> list[tuple[float, Any]]:
    """(position, value) for an axis's labels: every category, or its low, middle and high
    (the geometric middle on a log axis)."""
    if axis.categorical:
        values = pd.Series(list(axis.choices), dtype=object)
    elif math.isfinite(axis.low) and math.isfinite(axis.high):
        middle = math.sqrt(axis.low * axis.high) if axis.log else (axis.low + axis.high) / 2
        values = pd.Series(list(dict.fromkeys([axis.low, middle, axis.high])))
    else:
        return []
    return list(zip(axis_positions(values, axis), values, strict=True))


def short_value(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.1e}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3g}"
    return str(value)


def plot_param_slices(
    table: pd.DataFrame, board: pd.DataFrame, axes: list[Axis], path: Path
) -> Path:
    """One panel per sampled setting: val_acc against its value (log x on a log axis;
    categories evenly spaced), each searched trial a point coloured by how it stopped."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    rows = searched_rows(table, board)
    scored = rows[rows[METRIC].notna()]
    if not axes or scored.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no sampled parameters" if not axes else f"no trial has a {METRIC}")
        ax.set_axis_off()
        return save_figure(fig, path)
    columns = min(SLICE_COLUMNS, len(axes))
    lines = math.ceil(len(axes) / columns)
    fig, panels = plt.subplots(
        lines,
        columns,
        figsize=(3.3 * columns + 1.2, 2.8 * lines + 0.8),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    colours = [STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR) for s in scored["status"]]
    for ax, axis in zip(panels.flat, axes, strict=False):
        draw_slice(ax, axis, scored[axis.name], scored[METRIC] * 100, colours)
    for ax in list(panels.flat)[len(axes) :]:
        ax.set_axis_off()
    for ax in panels[:, 0]:
        ax.set_ylabel("val accuracy (%)")
    statuses = dict.fromkeys(scored["status"])
    handles = [
        Line2D([], [], marker="o", linestyle="", color=STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR))
        for s in statuses
    ]
    fig.legend(handles, list(statuses), loc="outside right upper", fontsize=8)
    missing = len(rows) - len(scored)
    note = f" ({missing} without {METRIC} not shown)" if missing else ""
    fig.suptitle(f"{METRIC} against each sampled parameter, {len(scored)} trials{note}")
    return save_figure(fig, path)


def draw_slice(ax, axis: Axis, values: pd.Series, scores: pd.Series, colours: list) -> None:
    from matplotlib.ticker import NullFormatter

    if axis.categorical:
        spread = max(len(axis.choices) - 1, 1)
        x = axis_positions(values, axis) * spread
        # a small fixed offset per point so equal values stay visible, the same on every rebuild
        x = x + (np.arange(len(x)) * 0.618 % 1 - 0.5) * 0.25
        ax.set_xticks(range(len(axis.choices)), [short_value(c) for c in axis.choices])
        ax.set_xlim(-0.5, len(axis.choices) - 0.5)
    else:
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        if axis.log:  # low, middle and high written out: 10^-2 style labels crowd a panel
            ax.set_xscale("log")
            ticks = [v for _, v in axis_ticks(axis)]
            ax.set_xticks([float(v) for v in ticks], [short_value(float(v)) for v in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        if math.isfinite(axis.low) and axis.high > axis.low:  # the space's range, not the data's
            if axis.log:
                pad = (axis.high / axis.low) ** 0.05
                ax.set_xlim(axis.low / pad, axis.high * pad)
            else:
                pad = (axis.high - axis.low) * 0.05
                ax.set_xlim(axis.low - pad, axis.high + pad)
    ax.scatter(x, scores, c=colours, s=22, alpha=0.85, edgecolors="none")
    ax.set_xlabel(f"{axis.name} (log)" if axis.log else axis.name, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def plot_timeline(table: pd.DataFrame, experiment: dict[str, Any], path: Path) -> Path:
    """One bar per trial from its start to its last result, top to bottom by start (grouped by
    node when there are several), coloured by how it stopped."""
    from matplotlib.patches import Patch

    plt = pyplot()
    rows = timeline_rows(table)
    fig, ax = plt.subplots(figsize=(9, min(2.3 + 0.26 * len(rows), 40.0)), layout="constrained")
    if rows.empty:
        no_data(ax, "no timestamps in any progress.csv")
        ax.set_axis_off()
        return save_figure(fig, path)
    origin = time_origin(experiment, float(rows["start"].min()))
    scale, unit = time_unit(float(rows["end"].max()) - origin)
    ax.barh(
        rows["y"],
        (rows["end"] - rows["start"]) / scale,
        left=(rows["start"] - origin) / scale,
        color=rows["colour"],
        height=0.7,
    )
    ax.set_yticks(rows["y"], rows["name"], fontsize=7 if len(rows) > 30 else 9)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first trial at the top
    nodes = rows.groupby("node", sort=False)["y"]
    if nodes.ngroups > 1:
        for (_, ys), name in zip(nodes, rows.drop_duplicates("node")["node_name"], strict=True):
            ax.axhline(ys.max() + 0.5, color="0.5", linewidth=0.6)
            ax.text(1.01, ys.mean(), f"node {name}", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8)  # fmt: skip
    statuses = dict.fromkeys(rows["status"])
    handles = [Patch(color=STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR)) for s in statuses]
    fig.legend(handles, list(statuses), loc="outside lower center", ncol=len(statuses), fontsize=8)
    ax.set_xlabel(f"wall time since the experiment started ({unit})")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"trials over time ({len(rows)} with timestamps, by start)")
    return save_figure(fig, path)
