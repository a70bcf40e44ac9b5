"""The report's figures from synthetic results directories (no Ray): each is written and linked,
the data behind them is right (log axes, trial names, timeline order and colours), and a
directory with little or nothing in it gives "no data" figures rather than an error."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fer_search.report import build_report, load_results
from fer_search.report.figures import FIGURES, curve_styles, progress_times, refit_boundary
from fer_search.report.figures_search import TIMELINE_ROWS
from fer_search.report.load import read_space_params
from fer_search.report.trials import (
    OTHERS_COLOUR,
    STATUS_COLOURS,
    Axis,
    axis_positions,
    pack_lanes,
    param_axes,
    timeline_rows,
    top_colours,
    trial_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# confusion_test.png is the final evaluation's, pareto_front.png a multi-objective search's
# (tests/test_objectives.py)
DRAWN = [name for name in FIGURES if name not in ("confusion_test.png", "pareto_front.png")]
START = 1_714_564_800.0
SPACE = {
    "name": "figs",
    "description": "",
    "experiment": {"epochs": 4, "grace_period": 1, "reduction_factor": 2},
    "params": {
        "model": {"type": "fixed", "value": "simple_cnn"},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "lr@sgd": {"type": "loguniform", "low": 0.01, "high": 0.2, "when": {"optimizer": "sgd"}},
        "lr@adamw": {
            "type": "loguniform",
            "low": 3e-4,
            "high": 3e-3,
            "when": {"optimizer": "adamw"},
        },
        "dropout": {"type": "uniform", "low": 0.0, "high": 0.4},
        "width": {"type": "categorical", "choices": [8, 16]},
    },
}
# trial_id, Optuna number, status, epochs, start offset (s), optimizer, lr, dropout, width
TRIALS = [
    ("t0", 0, "completed", 4, 0, "sgd", 0.05, 0.1, 16),
    ("t1", 1, "completed", 4, 0, "adamw", 1e-3, 0.2, 8),
    ("t2", 2, "pruned", 1, 45, "sgd", 0.15, 0.3, 16),
    ("t3", 3, "pruned", 3, 55, "adamw", 5e-4, 0.0, 8),  # between rungs 2 and 4: the time budget
    ("t4", 4, "failed", 0, 60, "sgd", 0.02, 0.4, 8),
]


def write_experiment(exp: Path, trials=TRIALS, refit: bool = True, space=SPACE) -> Path:
    """A results directory as the search writes it: trials with progress.csv and params.json,
    leaderboard.csv, experiment.json, space.yaml and (optionally) a refit of t0 under refit/."""
    exp.mkdir(parents=True)
    rows = []
    for tid, number, status, epochs, offset, optimizer, lr, dropout, width in trials:
        rows.append(write_trial(exp, f"trial_{tid}", tid, number, status, epochs, offset))
        rows[-1].update(optimizer=optimizer, lr=lr, dropout=dropout, width=width, model="cnn")
    experiment = {
        "name": "figs",
        "metric": "val_acc",
        "mode": "max",
        "max_t": 4,
        "grace_period": 1,
        "reduction_factor": 2,
        "asha": True,
        "started": "2024-05-01T12:00:00+00:00",
        "params": list(SPACE["params"]),
    }
    if refit:
        row = write_trial(exp, "refit/trial_refit", "refit", None, "completed", 8, 120)
        row.update({k: rows[0][k] for k in ("optimizer", "lr", "dropout", "width", "model")})
        rows.append(row)
        experiment["refit"] = {"members": [{"id": "refit", "from_trial": "t0", "epochs": 8}]}
    pd.DataFrame(rows).to_csv(exp / "leaderboard.csv", index=False)
    (exp / "experiment.json").write_text(json.dumps(experiment))
    if space is not None:
        (exp / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    return exp


def write_trial(
    exp: Path, trial_dir: str, tid: str, number, status: str, epochs: int, offset: float
) -> dict:
    (exp / trial_dir).mkdir(parents=True)
    config = {"lr": 0.01} if number is None else {"lr": 0.01, "trial_number": number}
    (exp / trial_dir / "params.json").write_text(json.dumps(config))
    acc = [0.3 + 0.05 * e + 0.01 * len(tid) for e in range(1, epochs + 1)]
    if epochs:
        pd.DataFrame(
            {
                "epoch": range(1, epochs + 1),
                "val_acc": acc,
                "train_loss": [2.0 / e for e in range(1, epochs + 1)],
                "time_total_s": [10.0 * e for e in range(1, epochs + 1)],
                "timestamp": [START + offset + 10 * e for e in range(1, epochs + 1)],
                "node": "node-a",
            }
        ).to_csv(exp / trial_dir / "progress.csv", index=False)
    return {
        "trial_id": tid,
        "status": status,
        "val_acc": max(acc) if acc else math.nan,
        "epochs": epochs,
        "node": "node-a",
        "trial_dir": trial_dir,
    }


def table_of(exp: Path) -> pd.DataFrame:
    return trial_table(load_results(exp))


def test_every_figure_is_written_listed_and_linked(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    md = build_report(exp).read_text()
    listed = json.loads((exp / "report.json").read_text())["figures"]
    assert listed == DRAWN  # no confusion_test.png: no final evaluation ran
    for name in DRAWN:
        assert (exp / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"]({name})" in md, name
    assert "confusion_test.png" not in md
    (exp / "confusion_test.png").write_bytes(PNG_MAGIC)  # once the final evaluation wrote it
    assert "](confusion_test.png)" in build_report(exp).read_text()


def test_trials_are_named_by_tune_id_and_optuna_number_and_how_they_stopped(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    (exp / "trial_t1" / "params.json").write_text('{"lr": 0.001}')  # a run from before numbers
    table = table_of(exp).set_index("trial_id")
    assert table.loc["t0", "label"] == "t0 #0 completed"
    assert table.loc["t1", "label"] == "t1 completed"  # no trial_number: the Tune id
    assert table.loc["t2", "label"] == "t2 #2 pruned"  # ended at rung 1: ASHA
    assert table.loc["t3", "label"] == "t3 #3 time budget"  # ended between rungs
    assert table.loc["t4", "label"] == "t4 #4 failed"
    assert table.loc["refit", "label"] == "refit of t0 #0 completed"
    assert table.loc["t4", ["start", "end"]].isna().all()  # it never reported
    assert table.loc["t2", "start"] == START + 45  # its first result less the time before it
    assert table.loc["t2", "end"] == START + 55


def test_a_log_parameter_sits_on_a_log_axis():
    axis = Axis("lr", log=True, low=1e-4, high=1e-2)
    values = pd.Series([1e-4, 1e-3, 1e-2, math.nan, -1.0])
    assert axis_positions(values, axis) == pytest.approx(
        [0, 0.5, 1, math.nan, math.nan], nan_ok=True
    )
    linear = axis_positions(values, Axis("dropout", low=1e-4, high=1e-2))
    assert linear[1] == pytest.approx(0.0909, abs=1e-3)


def test_categories_are_evenly_spaced_whatever_type_the_csv_gave_them():
    axis = Axis("width", choices=(8, 16, 32))
    values = pd.Series(["16", 32.0, 8, None, 64], dtype=object)
    got = axis_positions(values, axis)
    assert got == pytest.approx([0.5, 1.0, 0.0, math.nan, math.nan], nan_ok=True)
    assert axis_positions(pd.Series([True]), Axis("ema", choices=(True,))) == pytest.approx([0.5])


def test_axes_come_from_the_space_conditional_settings_merged(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    space, notes = read_space_params(exp / "space.yaml")
    assert notes == []
    board = load_results(exp)["leaderboard"]
    axes = {a.name: a for a in param_axes(space, board, [])}
    assert list(axes) == ["optimizer", "lr", "dropout", "width"]  # fixed model left out
    assert axes["lr"].log and (axes["lr"].low, axes["lr"].high) == (3e-4, 0.2)
    assert not axes["dropout"].log and not axes["dropout"].categorical
    assert axes["optimizer"].choices == ("sgd", "adamw")
    assert axes["width"].choices == (8, 16)


def test_without_a_space_the_varying_leaderboard_columns_are_the_axes(tmp_path):
    exp = write_experiment(tmp_path / "exp", space=None)
    results = load_results(exp)
    assert results["space"] is None
    axes = param_axes(None, results["leaderboard"], ["model", "optimizer", "lr", "width"])
    assert [(a.name, a.categorical) for a in axes] == [
        ("optimizer", True),
        ("lr", False),
        ("width", False),
    ]  # model took one value only


def test_timeline_orders_by_start_within_each_node_and_colours_by_status():
    table = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "e"],
            "name": ["#0", "#1", "#2", "#3", "#4"],
            "status": ["completed", "pruned", "failed", "time budget", "unfinished"],
            "node": ["n2", "n1", "n2", "n1", "n1"],
            "start": [30.0, 10.0, 20.0, 50.0, math.nan],
            "end": [40.0, 60.0, 25.0, 55.0, math.nan],
        }
    )
    rows = timeline_rows(table)
    assert list(rows["name"]) == ["#1", "#3", "#2", "#0"]  # node n1 first: it started first
    assert list(rows["y"]) == [0, 1, 2, 3]
    assert list(rows["colour"]) == [
        STATUS_COLOURS["pruned"],
        STATUS_COLOURS["time budget"],
        STATUS_COLOURS["failed"],
        STATUS_COLOURS["completed"],
    ]
    assert len(set(STATUS_COLOURS.values())) == len(STATUS_COLOURS)


def test_many_trials_name_only_the_best_few_in_the_legend():
    table = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(20)],
            "label": [f"#{i} pruned" for i in range(20)],
            "val_acc": [0.9 - i / 100 for i in range(20)],
        }
    )
    styles = curve_styles(table, best_id="t15")
    labels = list(dict.fromkeys(s["label"] for s in styles.values()))
    assert labels[0] == "#15 pruned (best)" and len(labels) == 11  # best, top 9, "others"
    assert labels[-1] == "10 other trials"
    assert styles["t15"]["linewidth"] > styles["t0"]["linewidth"] > styles["t19"]["linewidth"]
    coloured = [str(s["color"]) for s in styles.values() if s["label"] != "10 other trials"]
    assert len(set(coloured)) == 10  # no two of the best alike, none the others' grey
    assert OTHERS_COLOUR not in coloured
    few = curve_styles(table.head(5), best_id="t0")
    assert len({str(s["color"]) for s in few.values()}) == 5  # every trial its own colour


def test_the_best_trials_keep_their_colour_in_every_figure():
    table = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "val_acc": [0.7, 0.6, math.nan, 0.5]})
    colours = top_colours(table, best_id="b", limit=3)
    assert list(colours) == ["b", "a", "d"]  # the chosen best first; no val_acc, no colour
    searched = table[table["trial_id"] != "c"]  # the parameter figures leave a refit out
    assert top_colours(searched, best_id="b", limit=3) == colours


def test_lanes_are_as_many_as_the_trials_that_ran_at_once():
    starts = np.array([0.0, 1.0, 2.0, 5.0, 5.0, 6.0])
    ends = np.array([5.0, 3.0, 9.0, 8.0, 6.0, 7.0])
    lanes = pack_lanes(starts, ends, resolution=0.0)
    assert list(lanes) == [0, 1, 2, 0, 1, 1]  # a lane is reused once its bar ended
    for lane in set(lanes):  # no two bars of a lane overlap
        spans = sorted(zip(starts[lanes == lane], ends[lanes == lane], strict=True))
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    # two slots, each running 2.4 s trials back to back, seen through whole-second timestamps
    # (start: the first stamp less the time before it; end: the last stamp, rounded down)
    true_starts = np.array([0.0, 0.3, 2.4, 2.7, 4.8, 5.1, 7.2, 7.5])
    stamped_ends = np.floor(true_starts + 2.4)
    stamped_starts = np.floor(true_starts + 1.2) - 1.2  # a first epoch of 1.2 s
    assert max(pack_lanes(stamped_starts, stamped_ends, resolution=0.0)) + 1 > 2  # too many
    assert max(pack_lanes(stamped_starts, stamped_ends)) + 1 == 2
    table = pd.DataFrame(
        {
            "trial_id": list("abcdef"),
            "name": [f"#{i}" for i in range(6)],
            "status": ["completed"] * 6,
            "node": ["n1", "n1", "n1", "n2", "n2", "n2"],
            "start": [0.0, 1.0, 9.0, 0.5, 1.0, 2.0],
            "end": [5.0, 8.0, 12.0, 9.0, 1.5, 3.0],
        }
    )
    rows = timeline_rows(table, lanes=True).set_index("trial_id")
    assert rows.loc[["a", "b", "c"], "y"].tolist() == [0, 1, 0]  # node n1: lanes 0 and 1
    assert rows.loc[["d", "e", "f"], "y"].tolist() == [2, 3, 3]  # node n2's lanes below


def test_a_search_of_many_trials_draws_the_best_in_colour_and_the_rest_grey(tmp_path):
    """Past TIMELINE_ROWS trials the timeline packs its bars into lanes; every figure colours
    the TOP_COLOURED best only (legends name no more) and is still a PNG of a sensible size."""
    trials = [
        (f"t{i}", i, "completed" if i % 4 == 0 else "pruned", 4 if i % 4 == 0 else 1,
         (i // 8) * 40, "sgd" if i % 2 else "adamw", 0.01 + i / 1000, (i % 5) / 10, 8)
        for i in range(TIMELINE_ROWS + 20)
    ]  # fmt: skip
    exp = write_experiment(tmp_path / "exp", trials=trials, refit=False)
    build_report(exp)
    results = load_results(exp)
    rows = timeline_rows(trial_table(results), lanes=True)
    assert rows["y"].max() + 1 == 8  # eight start together; the next eight when they end
    for name in DRAWN:
        png = (exp / name).read_bytes()
        assert png.startswith(PNG_MAGIC), name
        height = int.from_bytes(png[20:24], "big")
        assert height < 1700, (name, height)  # lanes, not a bar per trial


def test_the_refit_phase_starts_where_the_first_refit_trial_started(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    results = load_results(exp)
    points, _, origin = progress_times(results["curves"], results["experiment"])
    assert origin == START  # experiment.json's start, shortly before the first trial
    assert refit_boundary(table_of(exp), origin) == 120
    assert points.loc[points["t"] >= 120, "refit"].all()
    assert not points.loc[points["t"] < 120, "refit"].any()
    assert refit_boundary(table_of(exp), None) is None  # no wall clock: nothing to mark
    shutil.rmtree(exp / "refit")  # a copy without the refit's folder: its row has no times
    assert refit_boundary(table_of(exp), origin) is None


def no_progress(exp: Path) -> None:
    for path in exp.glob("**/progress.csv"):
        path.unlink()


def no_val_acc(exp: Path) -> None:
    board = pd.read_csv(exp / "leaderboard.csv").assign(val_acc=np.nan)
    board.to_csv(exp / "leaderboard.csv", index=False)
    for path in exp.glob("**/progress.csv"):
        pd.read_csv(path).drop(columns="val_acc").to_csv(path, index=False)


def no_trials(exp: Path) -> None:
    (exp / "leaderboard.csv").write_text("trial_id,status,val_acc,trial_dir\n")


def no_space(exp: Path) -> None:
    (exp / "space.yaml").unlink()


def no_refit_dir(exp: Path) -> None:
    shutil.rmtree(exp / "refit")


@pytest.mark.parametrize(
    "spoil",
    [no_progress, no_val_acc, no_trials, no_space, no_refit_dir],
    ids=["no progress", "no val_acc", "no trials", "no space.yaml", "no refit folder"],
)
def test_an_experiment_with_nothing_to_draw_still_gets_its_figures(tmp_path, spoil):
    exp = write_experiment(tmp_path / "exp")
    spoil(exp)
    md = build_report(exp).read_text()
    for name in DRAWN:
        assert (exp / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"]({name})" in md, name


def test_one_trial_a_categorical_only_space_and_no_refit(tmp_path):
    space = {**SPACE, "params": {"optimizer": SPACE["params"]["optimizer"]}}
    exp = write_experiment(tmp_path / "exp", trials=TRIALS[:1], refit=False, space=space)
    build_report(exp)
    results = load_results(exp)
    axes = param_axes(results["space"], results["leaderboard"], [])
    assert [(a.name, a.categorical) for a in axes] == [("optimizer", True)]
    assert len(timeline_rows(table_of(exp))) == 1
    for name in DRAWN:
        assert (exp / name).read_bytes().startswith(PNG_MAGIC), name
