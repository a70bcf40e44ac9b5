"""The report tells one story (no Ray): a trial has one name in every figure and table, the
wall time says what it covers, counts add up, and nothing is said twice."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from fer_search.report import build_report, load_results
from fer_search.report.facts import wall_time
from fer_search.report.figures import progress_times, search_best
from fer_search.report.markdown import md_wall_time
from fer_search.report.markdown_final import choice_sentences
from fer_search.report.trials import trial_table

START = 1_714_564_800
# trial_id, Optuna number, status, val_acc, epochs, lr
TRIALS = [
    ("refit", None, "completed", 0.70, 6, 0.01),  # retrains s0's configuration
    ("s0", 0, "completed", 0.62, 3, 0.01),
    ("s1", 1, "completed", 0.58, 3, 0.05),
    ("s2", 2, "pruned", 0.41, 1, 0.09),
]


def write_experiment(exp: Path, params: list[str]) -> Path:
    exp.mkdir(parents=True)
    experiment = {
        "name": "one", "metric": "val_acc", "mode": "max", "scheduler": "asha", "max_t": 3,
        "grace_period": 1, "reduction_factor": 3, "started": "2024-05-01T12:00:00",
        "finished": "2024-05-01T12:10:00", "wall_time_s": 500.0, "params": params,
        "refit": {"members": [{"id": "refit", "from_trial": "s0", "epochs": 6}], "done": True},
    }  # fmt: skip
    (exp / "experiment.json").write_text(json.dumps(experiment))
    rows = []
    for i, (tid, number, status, acc, epochs, lr) in enumerate(TRIALS):
        trial_dir = exp / f"trial_{tid}"
        trial_dir.mkdir()
        if number is not None:
            (trial_dir / "params.json").write_text(json.dumps({"trial_number": number}))
        start = START + (300 if tid == "refit" else 10 * i)
        pd.DataFrame({"epoch": range(1, epochs + 1),
                      "val_acc": [acc - 0.02 * (epochs - e) for e in range(1, epochs + 1)],
                      "timestamp": [start + 20 * e for e in range(1, epochs + 1)],
                      "time_total_s": [20.0 * e for e in range(1, epochs + 1)]}
                     ).to_csv(trial_dir / "progress.csv", index=False)  # fmt: skip
        rows.append({"trial_id": tid, "status": status, "val_acc": acc, "epochs": epochs,
                     "trial_dir": f"trial_{tid}", "lr": lr,
                     **{p: i for p in params if p != "lr"}})  # fmt: skip
    pd.DataFrame(rows).to_csv(exp / "leaderboard.csv", index=False)
    return exp


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    exp = write_experiment(tmp_path_factory.mktemp("one") / "one", ["lr"])
    build_report(exp)
    return exp


def test_a_trial_has_one_name_in_figures_and_tables(built):
    md = (built / "report.md").read_text()
    table = trial_table(load_results(built)).set_index("trial_id")
    assert table.loc["s1", "name"] == "s1 #1" and "| `s1` #1 |" in md
    assert table.loc["refit", "name"] == "refit of s0 #0" and "| `refit` of `s0` #0 |" in md
    assert "Refit: trial `s0` #0's configuration trained again" in md


def test_the_counts_add_up_and_figures_say_which_trials_they_draw(built):
    md = (built / "report.md").read_text()
    assert "- Trials: 3 — " in md
    assert "## Leaderboard (all 4: 3 searched trials and 1 refit, best val_acc first)" in md
    captions = json.loads((built / "report.json").read_text())["figure_trials"]
    assert captions["param_slices.png"].startswith("The 3 searched trials with a val_acc; the 1")
    assert captions["learning_curves.png"] == (
        "Every trial with progress.csv rows: 3 searched trials and 1 refit."
    )


def test_the_best_so_far_line_is_the_searched_trials_alone(built):
    results = load_results(built)
    points, _, _ = progress_times(results["curves"], results["experiment"])
    best = search_best(points, maximise=True)
    assert points["val_acc"].max() == pytest.approx(0.70)  # the refit's epochs are drawn
    assert best["best"].max() == pytest.approx(0.62)  # but are no sample of the search


def test_the_wall_time_says_what_it_leaves_out():
    experiment = {"started": "2024-05-01T12:00:00", "finished": "2024-05-01T12:10:00",
                  "wall_time_s": 500.0, "refit": {"done": True}}  # fmt: skip
    line = md_wall_time({"experiment": experiment, "wall_time": wall_time(experiment)})
    assert line == (
        " (10 min 00 s); wall time 8 min 20 s (the search and the refit: from the Tuner's start "
        "to the final evaluation's); the other 1 min 40 s are the set-up before the search and "
        "the final evaluation after it"
    )
    experiment["phases"] = {"tune": {"wall_s": 380.0}, "refit": {"wall_s": 110.0},
                            "final_evaluation": {"wall_s": 95.0}}  # fmt: skip
    line = md_wall_time({"experiment": experiment, "wall_time": wall_time(experiment)})
    assert ", of which the search 6 min 20 s, the refit 1 min 50 s;" in line
    assert "the final evaluation (1 min 35 s) after it" in line
    unfinished = {"started": "2024-05-01T12:00:00", "finished": None, "wall_time_s": None}
    assert md_wall_time({"experiment": unfinished, "wall_time": wall_time(unfinished)}) == (
        "; wall time —"
    )


def test_the_chosen_ensemble_is_scored_once_and_the_others_after_it():
    def candidate(val, test=None):
        return {"val_acc": val, "test_acc": test}

    chosen = {"method": "forward selection on val", "chosen": "selection", "members": ["a", "b"],
              "weights": [0.75, 0.25], "val_acc": 0.7, "test_acc": 0.69,
              "selection": candidate(0.7, 0.69), "bagged": candidate(0.68),
              "top_k_val_acc": 0.66}  # fmt: skip
    (sentence,) = choice_sentences({"selected_ensemble": chosen})
    assert sentence.count("70.00 %") == 1 and sentence.count("the greedy selection") == 1
    assert sentence.endswith(
        "Not chosen: the bagged selection val 68.00 % (not chosen, so not tested); the top-k "
        "average val 66.00 %."
    )


def test_one_parameter_left_out_of_the_table_is_one_parameter(tmp_path):
    params = [f"p{i}" for i in range(8)] + ["lr"]  # 9 sampled (all vary): one past the table
    md = build_report(write_experiment(tmp_path / "wide", params)).read_text()
    assert "1 more sampled parameter is in report.json." in md
    assert not re.search(r"\b1 more \w+ parameters\b", md)
