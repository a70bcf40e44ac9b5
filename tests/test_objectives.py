"""Multi-objective search: objectives, constraints, the Pareto front, `pick`, the model's
measured costs, the Optuna bookkeeping, and one real search on demo data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import one_line_error, run_fer_search
from torch import nn

from fer_search.errors import UserError
from fer_search.objectives import (
    Condition,
    constraint_values,
    mark_choice,
    pareto_front,
    parse_constraints,
    parse_objectives,
    parse_pick,
)
from fer_search.space import load_space, load_space_dict
from fer_search.space.settings import apply_overrides

OBJECTIVES = [{"metric": "val_acc", "mode": "max"}, {"metric": "latency_ms", "mode": "min"}]
MO = tuple(parse_objectives(OBJECTIVES, "val_acc", "s.yaml"))


def row(trial_id, val_acc, latency_ms, params=1e5, status="completed"):
    return {"trial_id": trial_id, "status": status, "val_acc": val_acc,
            "latency_ms": latency_ms, "params": params}  # fmt: skip


# --- the space's keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"metric": "latency_ms"}, {"metric": "val_acc"}], "must be the search metric 'val_acc'"),
        ([{"metric": "val_acc"}, {"metric": "latncy_ms"}], "did you mean 'latency_ms'"),
        ([{"metric": "val_acc"}, {"metric": "latency_ms", "mode": "max"}], "takes mode: min"),
        ([{"metric": "val_acc"}, "params", "params"], "names a metric twice"),
        ([{"metric": "val_acc"}], "needs a cost besides val_acc"),
        ({"metric": "val_acc"}, "must be a list"),
        ([{"metric": "val_acc", "weight": 1}, "params"], "unknown key 'weight'"),
    ],
)
def test_bad_objectives_are_one_clear_error(raw, message):
    with pytest.raises(UserError, match=message):
        parse_objectives(raw, "val_acc", "s.yaml")


def test_objectives_take_a_name_or_a_mapping_with_the_natural_mode():
    parsed = parse_objectives(["val_acc", {"metric": "flops"}], "val_acc", "s.yaml")
    assert [(o.metric, o.mode) for o in parsed] == [("val_acc", "max"), ("flops", "min")]


def test_constraints_read_yaml_text_numbers_and_refuse_the_rest():
    assert parse_constraints({"max_params": "1e6", "max_latency_ms": 2}, "s") == {
        "max_params": 1e6,
        "max_latency_ms": 2.0,
    }
    with pytest.raises(UserError, match="did you mean 'max_params'"):
        parse_constraints({"max_param": 5}, "s")
    with pytest.raises(UserError, match="must be a positive number"):
        parse_constraints({"max_latency_ms": 0}, "s")


def test_pick_parses_conditions_and_names_the_bad_part():
    conditions = parse_pick(
        "latency_ms<=2, params<1e6", "--pick", ["val_acc", "latency_ms", "params"]
    )
    assert conditions == (Condition("latency_ms", "<=", 2.0), Condition("params", "<", 1e6))
    with pytest.raises(UserError, match="'latency_ms=2' is not METRIC<=VALUE"):
        parse_pick("latency_ms=2", "--pick", ["latency_ms"])
    with pytest.raises(UserError, match="did you mean 'latency_ms'"):
        parse_pick("latency<=2", "--pick", ["val_acc", "latency_ms"])


def space_dict(**extra):
    return {
        "name": "mo",
        "experiment": {"epochs": 2, "num_samples": 2},
        "params": {"model": "simple_cnn", "width": {"type": "categorical", "choices": [8, 16]}},
        **extra,
    }


def test_a_space_round_trips_its_objectives_constraints_and_pick():
    space = load_space_dict(
        space_dict(objectives=OBJECTIVES, constraints={"max_params": 1e6},
                   experiment={"epochs": 2, "pick": "latency_ms<=2"})
    )  # fmt: skip
    again = load_space_dict(space.to_dict())
    assert again.objectives == space.objectives and again.constraints == {"max_params": 1e6}
    assert again.experiment.pick == "latency_ms<=2" and again.measures_cost
    assert not load_space_dict(space_dict()).measures_cost


def test_pick_needs_objectives_and_metric_must_stay_their_first():
    with pytest.raises(UserError, match="has no `objectives:`"):
        load_space_dict(space_dict(experiment={"pick": "latency_ms<=2"}))
    with pytest.raises(UserError, match="--pick='latncy_ms<=2'.*did you mean 'latency_ms'"):
        apply_overrides(load_space_dict(space_dict(objectives=OBJECTIVES)), pick="latncy_ms<=2")
    with pytest.raises(UserError, match="must be the first of"):
        apply_overrides(load_space_dict(space_dict(objectives=OBJECTIVES)), metric="val_loss")
    with pytest.raises(UserError, match="--scheduler=pbt exploits on one metric"):
        apply_overrides(load_space_dict(space_dict(objectives=OBJECTIVES)), scheduler="pbt")


def test_cli_refuses_a_bad_pick_before_searching(tmp_path):
    proc = run_fer_search(
        "--space", "demo_latency", "--pick", "latency_ms=1", "--storage", str(tmp_path)
    )
    assert "is not METRIC<=VALUE" in one_line_error(proc)
    assert not any(tmp_path.iterdir())


# --- the front and the choice ---------------------------------------------------------------------


def test_pareto_front_keeps_exactly_the_undominated_trials():
    rows = [
        row("a", 0.60, 5.0),
        row("b", 0.55, 1.0),
        row("c", 0.50, 2.0),  # dominated by b
        row("d", 0.60, 6.0),  # dominated by a (equal accuracy, slower)
        row("e", 0.40, 0.5),
        row("f", float("nan"), 0.1),  # never scored: never on the front
    ]
    assert [rows[i]["trial_id"] for i in pareto_front(rows, MO)] == ["a", "b", "e"]


def test_pick_chooses_the_most_accurate_front_trial_that_satisfies_it():
    rows = [row("a", 0.60, 5.0), row("b", 0.55, 1.0), row("e", 0.40, 0.5)]
    eligible, note = mark_choice(
        rows, rows, MO, {}, parse_pick("latency_ms<=2", "p", ["latency_ms"])
    )
    assert note == ""
    assert eligible == [False, True, True]
    assert [r["eligible"] for r in rows] == eligible  # the leaderboard's column says it too
    assert [r["pareto"] for r in rows] == [True, True, True]
    from fer_search.tuning.results import LeaderboardRow, rank_rows

    ranked = rank_rows([LeaderboardRow(r, eligible=e) for r, e in zip(rows, eligible, strict=True)])
    assert ranked[0]["trial_id"] == "b"


def test_infeasible_trials_are_never_on_the_front_nor_chosen():
    rows = [row("big", 0.70, 0.4, params=5e6), row("small", 0.50, 1.0)]
    limits = {"max_params": 1e6}
    eligible, _ = mark_choice(rows, rows, MO, limits, ())
    assert [(r["feasible"], r["pareto"], e) for r, e in zip(rows, eligible, strict=True)] == [
        (False, False, False),
        (True, True, True),
    ]
    assert constraint_values(rows[0], limits) == {"max_params": 4e6}
    assert constraint_values({"params": float("nan")}, limits) == {"max_params": 1.0}


def test_a_pick_no_front_trial_satisfies_falls_back_to_the_best_and_says_so():
    rows = [row("a", 0.60, 5.0), row("b", 0.55, 3.0)]
    eligible, note = mark_choice(
        rows, rows, MO, {}, parse_pick("latency_ms<=1", "p", ["latency_ms"])
    )
    assert "no Pareto-optimal trial satisfies pick latency_ms<=1" in note
    assert eligible == [True, True]


# --- measured costs ----------------------------------------------------------------------------


def test_model_cost_counts_parameters_and_convolution_flops():
    from fer_search.engine import model_cost

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten())
    cost = model_cost(model, image_size=8, runs=3)
    assert cost["params"] == 36
    assert cost["flops"] == 2 * 4 * 9 * 8 * 8  # a multiply-add per weight per output pixel
    assert cost["latency_ms"] > 0 and not model.training
    assert torch.get_num_threads() >= 1


def test_measured_costs_order_the_architectures_as_their_size_does():
    from fer_search.config import TrainConfig
    from fer_search.engine import measure_cost

    small = measure_cost(TrainConfig(model="simple_cnn", width=8, depth=2), 7)
    large = measure_cost(TrainConfig(model="simple_cnn", width=48, depth=4), 7)
    assert small["params"] < large["params"] and small["flops"] < large["flops"]


# --- Optuna's record ----------------------------------------------------------------------------


def test_close_study_tells_a_multi_objective_study_its_values_and_constraints(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from fer_search.tuning.study import Objectives, close_study

    exp = tmp_path / "mo"
    exp.mkdir()
    (exp / "experiment.json").write_text(json.dumps({"name": "mo"}))
    study = optuna.create_study(
        study_name="mo", storage=f"sqlite:///{exp / 'optuna.db'}",
        directions=["maximize", "minimize"],
    )  # fmt: skip
    rows = [row("t0", 0.6, 2.0), row("t1", 0.4, 1.0, status="pruned")]
    for r in rows:
        trial = study.ask()
        trial.suggest_float("lr", 0.01, 0.1)
        trial.set_user_attr("ray_trial_id", r["trial_id"])
    objectives = Objectives(("val_acc", "latency_ms"), (("max_latency_ms", 1.5),))
    close_study(exp, rows, "val_acc", "asha", objectives)
    done = optuna.load_study(study_name="mo", storage=f"sqlite:///{exp / 'optuna.db'}")
    first, second = done.trials
    assert (first.state, first.values) == (TrialState.COMPLETE, [0.6, 2.0])
    assert list(first.constraints.values()) == [0.5]  # 2.0 ms over a 1.5 ms limit
    assert done.user_attrs["constraints"] == ["max_latency_ms"]  # what each value is
    assert (second.state, second.values) == (TrialState.PRUNED, None)
    assert second.user_attrs["stopped_by"] == "time budget"
    assert done.metric_names == ["val_acc", "latency_ms"]


# --- end to end ---------------------------------------------------------------------------------


def test_a_multi_objective_search_writes_its_front_and_makes_the_pick_best(tmp_path):
    proc = run_fer_search(
        "--space", "demo_latency", "--data", "demo", "--demo-size", "0.25", "--num-samples", "4",
        "--epochs", "2", "--top-k", "1", "--pick", "latency_ms<=1e9", "--storage", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (exp,) = tmp_path.iterdir()
    report = json.loads((exp / "report.json").read_text())
    front = report["pareto_front"]
    assert front and "pareto_front.png" in report["figures"]
    assert [o["metric"] for o in report["objectives"]] == ["val_acc", "latency_ms"]
    for a in front:  # nothing on the front is dominated by a trial on the front
        assert not any(
            b["val_acc"] >= a["val_acc"] and b["latency_ms"] <= a["latency_ms"] and b != a
            and (b["val_acc"] > a["val_acc"] or b["latency_ms"] < a["latency_ms"])
            for b in front
        )  # fmt: skip
    chosen = json.loads((exp / "experiment.json").read_text())["choice"]["trial_id"]
    final = json.loads((exp / "final.json").read_text())
    assert final["best"]["trial_id"] == chosen == front[0]["trial_id"]

    import optuna

    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{exp / 'optuna.db'}")
    study = optuna.load_study(
        study_name=summary.study_name, storage=f"sqlite:///{exp / 'optuna.db'}"
    )
    assert len(study.directions) == 2
    states = {t.state.name for t in study.trials}
    assert "RUNNING" not in states and "COMPLETE" in states
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            assert len(trial.values) == 2 and not math.isnan(trial.values[1])
            assert len(trial.constraints) == 1  # max_params (the study's "constraints")
    assert "## Objectives and constraints" in (exp / "report.md").read_text()
    assert load_space(str(exp / "space.yaml")).objectives  # the saved space resumes as it ran
