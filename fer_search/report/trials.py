"""What the figures draw, as plain data and without matplotlib: one row per trial (its label,
how it stopped, when it ran), the parameter axes a search sampled, and where a value sits on
its axis. Tested directly; the figure modules only draw it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fer_search.config import METRIC, REFIT_ID, is_refit_id
from fer_search.report.facts import cut_by_time
from fer_search.report.load import sampled_settings
from fer_search.report.text import trial_name

__all__ = [
    "ALL_COLOURED",
    "OTHERS_COLOUR",
    "STATUS_COLOURS",
    "TOP_COLOURED",
    "Axis",
    "axis_positions",
    "cost_axes",
    "pack_lanes",
    "param_axes",
    "qualitative_colours",
    "refit_sources",
    "timeline_rows",
    "top_colours",
    "trial_table",
]

# How a trial stopped -> its colour in every figure (matplotlib's tab10 names).
STATUS_COLOURS = {
    "completed": "tab:green",
    "pruned": "tab:orange",
    "time budget": "tab:purple",
    "failed": "tab:red",
    "nan": "tab:brown",
    "unfinished": "tab:gray",
}
OTHER_STATUS_COLOUR = "tab:olive"
# A search of up to ALL_COLOURED trials gives each trial a colour of its own; a larger one gives
# colours to its TOP_COLOURED best only, the same in every figure, and draws the rest thin grey.
ALL_COLOURED = 12
TOP_COLOURED = 10
OTHERS_COLOUR = "0.62"
QUALITATIVE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
               "tab:pink", "tab:olive", "tab:cyan")  # fmt: skip
QUALITATIVE_LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                     "#f7b6d2", "#dbdb8d", "#9edae5")  # tab20's light ones  # fmt: skip


def trial_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per leaderboard trial, best first: trial_id, number (Optuna's, or None), name
    (`93a3b5dd #7`, `refit of 93a3b5dd #7`; text.trial_name), label (`93a3b5dd #7 pruned`),
    status (the leaderboard's; "time budget" for a searched trial facts.cut_by_time finds the
    budget ended, "unfinished" for one still running),
    refit, METRIC, node, start and end (Unix seconds of its first and last result; NaN without
    timestamps)."""
    board, numbers = results["leaderboard"], results.get("numbers") or {}
    searched = ~board["trial_id"].map(is_refit_id).astype(bool)
    cut = cut_by_time(board, results["experiment"]) & searched
    refit_from = refit_sources(results["experiment"])
    status = board["status"].replace({"running": "unfinished", "": "unfinished"})
    status = status.where(~cut, "time budget")
    rows = []
    for i, trial_id in enumerate(board["trial_id"]):
        number = numbers.get(trial_id)
        refit = bool(is_refit_id(trial_id))
        if refit and refit_from.get(trial_id) in board["trial_id"].values:
            source = refit_from[trial_id]
            name = f"{short_name(trial_id, number)} of {short_name(source, numbers.get(source))}"
        else:
            name = short_name(trial_id, number)
        start, end = trial_span(results["curves"].get(trial_id))
        rows.append(
            {
                "trial_id": trial_id,
                "number": number,
                "name": name,
                "label": f"{name} {status.iloc[i]}",
                "status": status.iloc[i],
                "refit": refit,
                METRIC: board[METRIC].iloc[i],
                "node": board["node"].iloc[i],
                "start": start,
                "end": end,
            }
        )
    columns = [
        "trial_id",
        "number",
        "name",
        "label",
        "status",
        "refit",
        METRIC,
        "node",
        "start",
        "end",
    ]
    types = {"refit": bool, METRIC: float, "start": float, "end": float}
    return pd.DataFrame(rows, columns=columns).astype(types)


def refit_sources(experiment: dict[str, Any]) -> dict[str, str]:
    """Each refit's trial_id -> the trial_id of the trial whose configuration it trained again
    (experiment.json's `refit`: its members, or the one refit of a record from before them)."""
    refit = experiment.get("refit") or {}
    members = refit.get("members") or [{"id": REFIT_ID, "from_trial": refit.get("from_trial")}]
    return {str(m.get("id")): str(m.get("from_trial")) for m in members if m.get("from_trial")}


def short_name(trial_id: str, number: int | None) -> str:
    """`93a3b5dd #7` (text.trial_name): the name the report's tables give the trial too."""
    return trial_name(trial_id, number)


TIMESTAMP_RESOLUTION_S = 1.0  # Tune's result `timestamp`: int(time.time())


def trial_span(curve: pd.DataFrame | None) -> tuple[float, float]:
    """(start, end) in Unix seconds: the first result's time less the training before it, and
    the last result's time; NaN without timestamps."""
    if curve is None or "timestamp" not in curve or curve["timestamp"].notna().sum() == 0:
        return math.nan, math.nan
    stamps = curve["timestamp"].dropna()
    first = stamps.index[0]
    before = curve["time_total_s"].get(first, 0.0) if "time_total_s" in curve else 0.0
    before = 0.0 if pd.isna(before) else float(before)
    return float(stamps.iloc[0]) - before, float(stamps.iloc[-1])


def top_colours(table: pd.DataFrame, best_id: str | None, limit: int) -> dict[str, Any]:
    """trial_id -> colour for the first `limit` trials of `table` (best first) that have a
    METRIC, `best_id` first whether or not it is among them; the same trial gets the same
    colour however many others are drawn."""
    scored = table.loc[table[METRIC].notna(), "trial_id"].tolist()
    if best_id is not None and best_id in set(table["trial_id"]):
        scored = [best_id, *(t for t in scored if t != best_id)]
    palette = qualitative_colours()
    return {t: palette[i % len(palette)] for i, t in enumerate(scored[:limit])}


def qualitative_colours() -> list[str]:
    """tab10's colours, then tab20's lighter ones, without the greys (the other trials' grey):
    the first trials get the most distinct."""
    return [*QUALITATIVE, *QUALITATIVE_LIGHT]


def pack_lanes(
    starts: np.ndarray, ends: np.ndarray, resolution: float = TIMESTAMP_RESOLUTION_S
) -> np.ndarray:
    """A lane for each bar [start, end], in the order given (sorted by start): the lowest lane
    free by its start, so the lanes are as many as the most bars that overlap at once (the
    trials that ran at the same time), and a lane reads as one worker slot's use over time.
    A lane is free `resolution` seconds before its last bar's end: Tune's result timestamps are
    whole seconds, so a trial that starts as another ends can seem to overlap it by up to one."""
    import heapq

    free: list[int] = []  # lanes whose last bar ended, by number
    busy: list[tuple[float, int]] = []  # (end, lane) of the lanes in use
    lanes = np.zeros(len(starts), dtype=int)
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        while busy and busy[0][0] <= start + resolution:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lane = heapq.heappop(free) if free else len(busy)
        heapq.heappush(busy, (max(end, start), lane))
        lanes[i] = lane
    return lanes


def timeline_rows(table: pd.DataFrame, lanes: bool = False) -> pd.DataFrame:
    """The timeline's bars, top to bottom: trials with a start, grouped by node when there are
    several (nodes in order of their first start), each group by start; with y (0 = top), the
    bar's colour and the node's short name. With `lanes`, y is a lane instead of a row per
    trial: each node's bars packed into as many lanes as it ran trials at once (pack_lanes)."""
    rows = table[table["start"].notna()].copy()
    if rows.empty:
        return rows.assign(y=[], colour=[], node_name=[])
    first = rows.groupby("node")["start"].transform("min")
    rows = rows.assign(_first=first).sort_values(["_first", "node", "start"], kind="stable")
    rows = rows.drop(columns="_first").reset_index(drop=True)
    if lanes:
        rows["y"] = 0
        offset = 0
        for node in rows["node"].unique():  # in order of their first start
            mine = rows["node"] == node
            ends = rows.loc[mine, "end"].fillna(rows.loc[mine, "start"])
            packed = pack_lanes(rows.loc[mine, "start"].to_numpy(), ends.to_numpy())
            rows.loc[mine, "y"] = packed + offset
            offset += int(packed.max()) + 1
    else:
        rows["y"] = np.arange(len(rows))
    rows["colour"] = [STATUS_COLOURS.get(s, OTHER_STATUS_COLOUR) for s in rows["status"]]
    rows["node_name"] = [node[:8] or "?" for node in rows["node"]]
    return rows


@dataclass(frozen=True)
class Axis:
    """One sampled setting as a figure axis: `log` for a log scale, `choices` (in order) for
    a categorical one; low/high bound a numeric one (the space's range widened to the data)."""

    name: str
    log: bool = False
    choices: tuple[Any, ...] = ()
    low: float = math.nan
    high: float = math.nan

    @property
    def categorical(self) -> bool:
        return bool(self.choices)


def param_axes(space: tuple[Any, ...] | None, board: pd.DataFrame, params: list[str]) -> list[Axis]:
    """The settings the search sampled, in the space's order, as axes. From the space's Params
    (`lr@sgd` and `lr@adamw` share the axis `lr`; log if either is) when it was read; else
    the leaderboard columns `params` names that took more than one value, numeric ones on a
    linear scale. Settings with no column in the leaderboard are left out."""
    axes = []
    for name in sampled_settings(space, board, params):
        found = [p for p in space or () if p.kind != "fixed" and p.setting == name]
        axes.append(make_axis(name, found, board[name]))
    return axes


def cost_axes(board: pd.DataFrame, costs: list[str]) -> list[Axis]:
    """An axis for each cost objective a trial measured (latency_ms, params, flops): the
    counts on a log scale, a latency on a linear one; costs with no column are left out."""
    axes = []
    for name in costs:
        if name in board and pd.to_numeric(board[name], errors="coerce").notna().any():
            axes.append(make_axis(name, [], pd.to_numeric(board[name], errors="coerce"),
                                  log=name in ("params", "flops")))  # fmt: skip
    return axes


def make_axis(name: str, params: list[Any], column: pd.Series, log: bool = False) -> Axis:
    values = pd.to_numeric(column, errors="coerce")
    categorical = any(p.kind == "categorical" for p in params)
    if categorical or (not params and values.notna().sum() < column.notna().sum()):
        choices = [c for p in params for c in p.choices] or sorted(set(column.dropna()), key=str)
        known = {value_key(c) for c in choices}
        extra = sorted({v for v in column.dropna() if value_key(v) not in known}, key=str)
        return Axis(name, choices=tuple(dict.fromkeys([*choices, *extra])))
    log = log or any(p.kind == "loguniform" or p.log for p in params)
    bounds = [float(b) for p in params for b in (p.low, p.high) if b is not None]
    finite = values[np.isfinite(values)]
    if log:
        finite, bounds = finite[finite > 0], [b for b in bounds if b > 0]
    found = [*bounds, *finite.tolist()]
    low, high = (min(found), max(found)) if found else (math.nan, math.nan)
    return Axis(name, log=log, low=low, high=high)


def value_key(value: Any) -> Any:
    """A categorical value as the CSV and the YAML both give it: 16 == 16.0 == "16", True ==
    "True"."""
    if isinstance(value, bool) or str(value) in ("True", "False"):
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def axis_positions(values: pd.Series, axis: Axis) -> np.ndarray:
    """Where each value sits on `axis`, from 0 (bottom) to 1 (top): categories evenly spaced in
    their order, numbers linearly or by their logarithm between low and high. A missing value
    (an inactive conditional setting, or out of a log axis's reach) is NaN."""
    if axis.categorical:
        index = {value_key(c): i for i, c in enumerate(axis.choices)}
        spread = max(len(axis.choices) - 1, 1)
        found = [index.get(value_key(v)) if pd.notna(v) else None for v in values]
        middle = 0.5 if len(axis.choices) == 1 else 0.0
        return np.array([math.nan if i is None else i / spread + middle for i in found])
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    low, high = axis.low, axis.high
    if axis.log:
        with np.errstate(divide="ignore", invalid="ignore"):
            numbers = np.where(numbers > 0, np.log10(numbers), math.nan)
        low, high = math.log10(low), math.log10(high)
    if not high > low:  # one value, or no values at all: the middle of the axis
        return np.where(np.isnan(numbers), math.nan, 0.5)
    return (numbers - low) / (high - low)
