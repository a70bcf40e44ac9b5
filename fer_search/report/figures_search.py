"""The report's figures of what the search sampled and when: a parallel-coordinates plot and one
slice per sampled setting against val_acc, and a timeline of the trials. trials.py prepares the
data; these functions only draw it, each a "no data" figure rather than an error when empty."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_search.config import METRIC
from fer_search.report.figures import time_origin, time_unit
from fer_search.report.plotting import no_data, pyplot, save_figure
from fer_search.report.trials import (
    ALL_COLOURED,
    OTHER_STATUS_COLOUR,
    OTHERS_COLOUR,
    STATUS_COLOURS,
    TOP_COLOURED,
    Axis,
    axis_positions,
    timeline_rows,
    top_colours,
)

__all__ = ["plot_parallel_coordinates", "plot_param_slices", "plot_timeline"]

SLICE_COLUMNS = 4
SCORE_AXIS = "val acc (%)"
TICK_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1}
TIMELINE_ROWS = 60  # one row per trial up to this many; past it, the bars packed into lanes
# the timeline's lanes: the trials past the coloured best ones, grey by how they stopped
LANE_GREYS = {"completed": ("completed", "0.4"), "failed": ("failed", "black"),
              "nan": ("failed", "black")}  # fmt: skip
STOPPED_GREY = ("stopped early", "0.75")  # pruned, time budget, unfinished


def searched_rows(table: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """The searched trials (no refit: it repeats a configuration for more epochs, so its score
    is not comparable) with their sampled values from the leaderboard."""
    values = board.drop(columns=[c for c in table if c in board and c != "trial_id"])
    return table[~table["refit"]].merge(values, on="trial_id", how="left")


def plot_parallel_coordinates(
    table: pd.DataFrame,
    board: pd.DataFrame,
    axes: list[Axis],
    path: Path,
    best_id: str | None = None,
    costs: list[Axis] | None = None,
) -> Path:
    """One line per searched trial through its value of every sampled setting, of each cost
    objective (`costs`: a multi-objective search's latency_ms, params, flops) and its val_acc:
    up to ALL_COLOURED trials coloured by val_acc, trials without val_acc dashed grey; past
    that, the TOP_COLOURED best in their colours (named in the legend) over the rest thin grey."""
    plt = pyplot()
    rows = searched_rows(table, board)
    costs = list(costs or [])
    width = max(8.0, 1.4 * (len(axes) + len(costs)) + 3)
    fig, ax = plt.subplots(figsize=(width, 5.2), layout="constrained")
    scores = rows[METRIC].astype(float) * 100
    if not axes or rows.empty:
        no_data(ax, "no sampled parameters" if not axes else "no trials")
        ax.set_axis_off()
        return save_figure(fig, path)
    score_axis = Axis(SCORE_AXIS, low=float(scores.min()), high=float(scores.max()))
    all_axes = [*axes, *costs, score_axis]
    rows[SCORE_AXIS] = scores
    grid = np.column_stack([axis_positions(rows[a.name], a) for a in all_axes])
    if len(rows) <= ALL_COLOURED:
        draw_by_score(fig, ax, grid, scores, score_axis)
        missing = int(scores.isna().sum())
        note = f"; {missing} without {METRIC} dashed" if missing else ""
    else:
        top = top_colours(rows, best_id, TOP_COLOURED)
        draw_top_and_rest(ax, grid, rows, top, best_id)
        note = f"; the {len(top)} best coloured, {len(rows) - len(top)} others grey"
        fig.legend(loc="outside right center", fontsize=8)
    for i, axis in enumerate(all_axes):
        ax.axvline(i, color="0.25", linewidth=0.8, zorder=0)
        for position, value in axis_ticks(axis):
            ax.text(i + 0.04, position, short_value(value), fontsize=7, va="center", bbox=TICK_BOX,
                    zorder=30)  # above every line  # fmt: skip
    x = np.arange(len(all_axes))
    ax.set_xticks(x, [f"{a.name}\n(log)" if a.log else a.name for a in all_axes], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(all_axes) - 0.4)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    what = "sampled parameters and objectives" if costs else "sampled parameters"
    ax.set_title(f"{what} of {len(rows)} searched trials{note}")
    return save_figure(fig, path)


def draw_by_score(fig, ax, grid: np.ndarray, scores: pd.Series, score_axis: Axis) -> None:
    """Each trial's line coloured by its val_acc (a colour bar beside), worst first so the best
    are on top; trials without val_acc dashed grey."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap, norm = colormaps["viridis"], Normalize(score_axis.low, score_axis.high)
    x = np.arange(grid.shape[1])
    for i in scores.fillna(-math.inf).argsort(kind="stable"):
        if math.isnan(scores.iloc[i]):
            ax.plot(x, grid[i], color="0.6", linestyle="--", linewidth=0.8, alpha=0.6)
        else:
            ax.plot(x, grid[i], color=cmap(norm(scores.iloc[i])), linewidth=1.6, alpha=0.85)
    if scores.notna().any():
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
        bar.set_label(SCORE_AXIS)


def draw_top_and_rest(
    ax, grid: np.ndarray, rows: pd.DataFrame, top: dict[str, Any], best_id: str | None
) -> None:
    """The trials in `top` (trial_id -> colour) as labelled lines, the best on top; every other
    one thin grey, all in one line broken between trials (a thousand draw as fast as one)."""
    x = np.arange(grid.shape[1])
    position = {t: i for i, t in enumerate(rows["trial_id"])}
    for rank, (trial_id, colour) in enumerate(top.items()):  # the legend's order: best first
        i = position[trial_id]
        best = trial_id == best_id
        label = f"{rows['name'].iloc[i]} {fmt_score(rows[METRIC].iloc[i])}"
        ax.plot(x, grid[i], color=colour, linewidth=2.6 if best else 1.5, alpha=0.95,
                zorder=3 + len(top) - rank, label=f"{label} (best)" if best else label)  # fmt: skip
    rest = [i for i, t in enumerate(rows["trial_id"]) if t not in top]
    if rest:
        breaks = np.full((len(rest), 1), math.nan)
        ax.plot(np.tile(np.append(x, math.nan), len(rest)),
                np.hstack([grid[rest], breaks]).ravel(), color=OTHERS_COLOUR, linewidth=0.5,
                alpha=faint(len(rest)), zorder=1, label=f"{len(rest)} other trials")  # fmt: skip


def faint(lines: int) -> float:
    """An alpha for `lines` grey lines drawn over each other: where many cross, darker."""
    return max(0.06, min(0.35, 30 / max(lines, 1)))


def fmt_score(value: float) -> str:
    return "—" if math.isnan(value) else f"{value * 100:.2f} %"


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
    table: pd.DataFrame,
    board: pd.DataFrame,
    axes: list[Axis],
    path: Path,
    best_id: str | None = None,
) -> Path:
    """One panel per sampled setting: val_acc against its value (log x on a log axis;
    categories evenly spaced), each searched trial a point coloured by how it stopped; past
    ALL_COLOURED trials, the TOP_COLOURED best in their colours over the rest small and grey."""
    from matplotlib.colors import to_rgba
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
    many = len(scored) > ALL_COLOURED
    top = top_colours(scored, best_id, TOP_COLOURED) if many else {}
    if many:  # the rest first, the best last (on top)
        scored = scored.assign(_top=scored["trial_id"].isin(top))
        scored = scored.sort_values("_top", kind="stable").drop(columns="_top")
        colours = [to_rgba(top[t], 0.95) if t in top else to_rgba(OTHERS_COLOUR, 0.5)
                   for t in scored["trial_id"]]  # fmt: skip
        sizes = np.where(scored["trial_id"].isin(top), 34.0, 9.0)
    else:
        colours = [to_rgba(STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR), 0.85)
                   for s in scored["status"]]  # fmt: skip
        sizes = np.full(len(scored), 22.0)
    for ax, axis in zip(panels.flat, axes, strict=False):
        draw_slice(ax, axis, scored[axis.name], scored[METRIC] * 100, colours, sizes)
    for ax in list(panels.flat)[len(axes) :]:
        ax.set_axis_off()
    for ax in panels[:, 0]:
        ax.set_ylabel("val accuracy (%)")
    if many:
        names = dict(zip(scored["trial_id"], scored["name"], strict=True))
        legend = {f"{names[t]}{' (best)' if t == best_id else ''}": c for t, c in top.items()}
        legend[f"{len(scored) - len(top)} other trials"] = OTHERS_COLOUR
    else:
        legend = {
            s: STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR) for s in dict.fromkeys(scored["status"])
        }
    handles = [Line2D([], [], marker="o", linestyle="", color=c) for c in legend.values()]
    fig.legend(handles, list(legend), loc="outside right upper", fontsize=8)
    missing = len(rows) - len(scored)
    note = f" ({missing} without {METRIC} not shown)" if missing else ""
    fig.suptitle(f"{METRIC} against each sampled parameter, {len(scored)} trials{note}")
    return save_figure(fig, path)


def draw_slice(
    ax, axis: Axis, values: pd.Series, scores: pd.Series, colours: list, sizes: np.ndarray
) -> None:
    from matplotlib.ticker import NullFormatter

    if axis.categorical:
        spread = max(len(axis.choices) - 1, 1)
        x = axis_positions(values, axis) * spread
        # a small fixed offset per point so equal values stay visible, the same on every rebuild
        # (a wider strip when there are many)
        spread_x = 0.6 if len(x) > ALL_COLOURED else 0.25
        x = x + (np.arange(len(x)) * 0.618 % 1 - 0.5) * spread_x
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
    ax.scatter(x, scores, c=colours, s=sizes, edgecolors="none")
    ax.set_xlabel(f"{axis.name} (log)" if axis.log else axis.name, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def plot_timeline(
    table: pd.DataFrame, experiment: dict[str, Any], path: Path, best_id: str | None = None
) -> Path:
    """One bar per trial from its start to its last result, coloured by how it stopped: up to
    TIMELINE_ROWS trials one row each, top to bottom by start (grouped by node when there are
    several); past that, the bars packed into lanes (as many per node as ran at once, so a lane
    is a worker slot's use over time), the TOP_COLOURED best in their colours and the rest
    grey by how they stopped."""
    from matplotlib.patches import Patch

    plt = pyplot()
    lanes = int(table["start"].notna().sum()) > TIMELINE_ROWS
    rows = timeline_rows(table, lanes=lanes)
    height = int(rows["y"].max()) + 1 if len(rows) else 0
    inches = min(2.3 + 0.26 * height, 40.0) if not lanes else min(3.0 + 0.2 * height, 14.0)
    fig, ax = plt.subplots(figsize=(11 if lanes else 9, inches), layout="constrained")
    if rows.empty:
        no_data(ax, "no timestamps in any progress.csv")
        ax.set_axis_off()
        return save_figure(fig, path)
    origin = time_origin(experiment, float(rows["start"].min()))
    scale, unit = time_unit(float(rows["end"].max()) - origin)
    legend = lane_colours(rows, table, best_id) if lanes else status_legend(rows)
    ax.barh(
        rows["y"],
        (rows["end"] - rows["start"]) / scale,
        left=(rows["start"] - origin) / scale,
        color=rows["colour"],
        height=0.8 if lanes else 0.7,
        edgecolor="white" if lanes else "none",
        linewidth=0.4,
    )
    if lanes:
        ticks = range(0, height, max(1, math.ceil(height / 32)))
        ax.set_yticks(list(ticks), [str(y - lane_start(rows, y) + 1) for y in ticks], fontsize=7)
        ax.set_ylabel("lane (one per trial running at once)")
    else:
        ax.set_yticks(rows["y"], rows["name"], fontsize=7 if len(rows) > 30 else 9)
    ax.set_ylim(height - 0.5, -0.5)  # the first trial at the top
    nodes = rows.groupby("node", sort=False)["y"]
    if nodes.ngroups > 1:
        for (_, ys), name in zip(nodes, rows.drop_duplicates("node")["node_name"], strict=True):
            ax.axhline(ys.max() + 0.5, color="0.5", linewidth=0.6)
            ax.text(1.01, ys.mean(), f"node {name}", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8)  # fmt: skip
    handles = [Patch(color=colour, label=name) for name, colour in legend.items()]
    if lanes:
        fig.legend(handles=handles, loc="outside right center", fontsize=8)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    ax.set_xlabel(f"wall time since the experiment started ({unit})")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    if lanes:
        ax.set_title(f"{len(rows)} trials over time in {height} lanes (the most that ran at once"
                     f"{' on each node' if nodes.ngroups > 1 else ''})")  # fmt: skip
    else:
        ax.set_title(f"trials over time ({len(rows)} with timestamps, by start)")
    return save_figure(fig, path)


def status_legend(rows: pd.DataFrame) -> dict[str, Any]:
    return {s: STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR) for s in dict.fromkeys(rows["status"])}


def lane_colours(rows: pd.DataFrame, table: pd.DataFrame, best_id: str | None) -> dict[str, Any]:
    """Colour `rows` (in place) for the lanes: the best trials in their colours, the rest grey
    by how they stopped (failures black); returns the legend (name -> colour), in that order."""
    top = top_colours(table, best_id, TOP_COLOURED)
    labels = dict(zip(table["trial_id"], table["label"], strict=True))
    greys = [LANE_GREYS.get(s, STOPPED_GREY) for s in rows["status"]]
    rows["colour"] = [top.get(t, g[1]) for t, g in zip(rows["trial_id"], greys, strict=True)]
    shown = set(rows["trial_id"])
    legend = {
        f"{labels[t]} (best)" if t == best_id else labels[t]: colour
        for t, colour in top.items()
        if t in shown
    }
    rest = Counter(g for t, g in zip(rows["trial_id"], greys, strict=True) if t not in top)
    for name, grey in (LANE_GREYS["completed"], STOPPED_GREY, LANE_GREYS["failed"]):
        if rest[name, grey]:
            legend[f"{rest[name, grey]} other trials {name}"] = grey
    return legend


def lane_start(rows: pd.DataFrame, y: int) -> int:
    """The first lane of the node lane `y` belongs to (lanes are numbered per node)."""
    node = rows.loc[rows["y"] == y, "node"]
    return int(rows.loc[rows["node"] == node.iloc[0], "y"].min()) if len(node) else 0
