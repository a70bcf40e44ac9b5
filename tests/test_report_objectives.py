"""A multi-objective search's report from a synthetic results directory (no Ray): its
leaderboard by Pareto rank with the sampled parameters first, its figures' objective axes and
statuses, and one importance per objective."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from fer_search.objectives import Objective, pareto_front
from fer_search.report import build_report, load_results
from fer_search.report.figures_pareto import pareto_points
from fer_search.report.pareto import pareto_ranks
from fer_search.report.trials import cost_axes, trial_table

OBJECTIVES = (Objective("val_acc", "max"), Objective("latency_ms", "min"))
SPACE = {
    "name": "mo",
    "description": "",
    "experiment": {"epochs": 4, "grace_period": 1, "reduction_factor": 2, "pick": "latency_ms<=2"},
    "params": {
        "model": {"type": "fixed", "value": "simple_cnn"},
        "width": {"type": "categorical", "choices": [16, 32]},
        "lr": {"type": "loguniform", "low": 0.01, "high": 0.1},
        "dropout": {"type": "uniform", "low": 0.1, "high": 0.3, "step": 0.1},
    },
    "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "latency_ms", "mode": "min"}],
    "constraints": {"max_params": 1_000_000},
}
# trial_id, status, stopped_by, val_acc, latency_ms, params, width, lr, dropout
TRIALS = [
    ("m0", "completed", "", 0.60, 3.0, 5e5, 32, 0.05, 0.1),  # the front: most accurate
    ("m1", "completed", "", 0.55, 1.0, 3e5, 16, 0.03, 0.2),  # the front, picked (<= 2 ms)
    ("m2", "pruned", "asha", 0.40, 0.5, 2e5, 16, 0.02, 0.3),  # the front: fastest
    ("m3", "completed", "", 0.58, 3.5, 6e5, 32, 0.08, 0.1),  # behind m0: rank 2
    ("m4", "pruned", "time budget", 0.30, 0.8, 2e5, 16, 0.01, 0.2),  # behind m2: rank 2
    ("m5", "completed", "", 0.62, 0.9, 2e6, 32, 0.04, 0.3),  # over max_params
    ("m6", "failed", "", float("nan"), 1.2, 3e5, 16, 0.09, 0.1),
]


def write_mo_experiment(exp: Path) -> Path:
    exp.mkdir(parents=True)
    (exp / "space.yaml").write_text(yaml.safe_dump(SPACE))
    experiment = {
        "name": "mo", "metric": "val_acc", "mode": "max", "scheduler": "asha", "max_t": 4,
        "grace_period": 1, "reduction_factor": 2, "started": "2024-05-01T12:00:00",
        "finished": "2024-05-01T12:10:00", "wall_time_s": 540.0,
        "params": ["model", "width", "lr", "dropout"],
        "choice": {"pick": "latency_ms<=2", "trial_id": "m1"},
    }  # fmt: skip
    (exp / "experiment.json").write_text(json.dumps(experiment))
    rows = []
    for number, (tid, status, by, acc, latency, size, width, lr, dropout) in enumerate(TRIALS):
        (exp / f"trial_{tid}").mkdir()
        (exp / f"trial_{tid}" / "params.json").write_text(json.dumps({"trial_number": number}))
        rows.append({"trial_id": tid, "status": status, "stopped_by": by, "val_acc": acc,
                     "epochs": 4 if status == "completed" else 1, "trial_dir": f"trial_{tid}",
                     "latency_ms": latency, "params": size, "model": "simple_cnn",
                     "width": width, "lr": lr, "dropout": dropout})  # fmt: skip
    pd.DataFrame(rows).to_csv(exp / "leaderboard.csv", index=False)
    write_study(exp)
    return exp


def write_study(exp: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{exp / 'optuna.db'}", study_name="mo",
        directions=["maximize", "minimize"],
    )  # fmt: skip
    space = {"width": CategoricalDistribution([16, 32]), "lr": FloatDistribution(0.01, 0.1,
             log=True), "dropout": FloatDistribution(0.1, 0.3, step=0.1)}  # fmt: skip
    for tid, status, _, acc, latency, _, width, lr, dropout in TRIALS:
        study.enqueue_trial({"width": width, "lr": lr, "dropout": dropout})
        trial = study.ask(space)
        trial.set_user_attr("ray_trial_id", tid)
        state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}
        values = [acc, latency] if status == "completed" else None
        study.tell(trial, values, state=state.get(status, TrialState.FAIL))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    exp = write_mo_experiment(tmp_path_factory.mktemp("mo") / "mo")
    build_report(exp)
    return exp


def leaderboard_rows(md: str) -> list[list[str]]:
    table = md[md.index("## Leaderboard") : md.index("## Objectives")]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_leaderboard_goes_by_pareto_rank_then_val_acc_with_sampled_parameters_first(built):
    md = (built / "report.md").read_text()
    header, _, *rows = leaderboard_rows(md)
    assert [r[1].split("`")[1] for r in rows] == ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]
    assert [r[header.index("Pareto rank")] for r in rows] == ["1", "1", "1", "2", "2", "—", "—"]
    assert "latency_ms" in header and "params" in header  # what it is ranked and limited by
    assert {"width", "lr", "dropout"} <= set(header) and "model" not in header
    assert "Fixed in every trial (1): model simple_cnn." in md
    assert rows[1][1] == "`m1` #1 (best/)"  # the pick, not first by rank: marked
    assert rows[4][header.index("status")] == "time budget"


def test_pareto_ranks_peel_the_fronts_and_leave_out_what_breaks_a_constraint():
    board = pd.DataFrame([dict(zip(("trial_id", "status", "stopped_by", "val_acc",
                                    "latency_ms", "params"), t[:6], strict=True))
                          for t in TRIALS])  # fmt: skip
    ranks = pareto_ranks(board, OBJECTIVES, {"max_params": 1e6})
    assert ranks.tolist() == [1, 1, 1, 2, 2, pd.NA, pd.NA]
    feasible = board[board["params"] <= 1e6].to_dict("records")[:5]
    front = {feasible[i]["trial_id"] for i in pareto_front(feasible, OBJECTIVES)}
    assert front == set(board.loc[ranks == 1, "trial_id"])  # rank 1 is the search's front
    assert pareto_ranks(board, (), {}).isna().all()  # a single-objective search has none


def test_the_figures_draw_the_objectives_and_the_status_every_figure_uses(built):
    results = load_results(built)
    table = trial_table(results)
    points = pareto_points(table, results["leaderboard"], "latency_ms").set_index("trial_id")
    assert points.loc["m4", "shown"] == "time budget" and points.loc["m2", "shown"] == "pruned"
    assert "m6" not in points.index  # failed: no val_acc to draw
    (latency,) = cost_axes(results["leaderboard"], ["latency_ms"])
    assert (latency.name, latency.log, latency.low, latency.high) == ("latency_ms", False, 0.5, 3.5)
    report = json.loads((built / "report.json").read_text())
    assert "pareto_front.png" in report["figures"]
    assert report["figure_trials"]["parallel_coordinates.png"] == (
        "The 7 searched trials with their latency_ms."
    )


def test_the_importances_are_one_per_objective_beside_optuna_dashboards(built):
    md = (built / "report.md").read_text()
    section = md[md.index("## Parameter importances") : md.index("## Figures")]
    assert "Error" not in section and "not available" not in section.lower()
    # 6 scored searched trials (the pruned from leaderboard.csv): a sentence per objective;
    # beside them optuna-dashboard's, over the 4 COMPLETE trials
    assert "fANOVA of val_acc: not computed: 6 searched trials have a val_acc" in section
    assert "fANOVA of latency_ms: not computed: 6 searched trials have a latency_ms" in section
    assert "rests on 4 trials (#0, #1, #3, #5): too few to say more than noise" in section
    assert "| parameter | val_acc: optuna-dashboard | latency_ms: optuna-dashboard |" in section
