"""benchmarks/strategies_sim.py: strategies over many seeds on the curve surrogate. Its space
must be the curve table's design, and its scoring (the delivered model's true val_acc at each
budget, the budget to reach random search's final best) is checked on hand-made searches."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from helpers import load_script

from fer_search.space import load_space_dict
from fer_search.tuning import curve_space
from fer_search.tuning.surrogate import CurveTable

sim = load_script("strategies_sim")
TABLE = Path(__file__).resolve().parents[1] / "results/benchmarks/curves/curves.csv"


def inside(param: Any, value: Any) -> bool:
    if not isinstance(param, dict):
        return value == param
    if param["type"] == "categorical":
        return value in param["choices"]
    return param["low"] <= value <= param["high"]


def test_the_committed_curve_table_was_made_by_the_design_the_package_defines():
    table = CurveTable.read(TABLE)
    design = curve_space.design(max(table.configs) + 1)
    for number, config in table.configs.items():
        assert config == design[number], number


def test_the_searched_space_is_the_curve_tables_design():
    load_space_dict(sim.space(0, 10))  # a valid fer-search space
    for config in curve_space.design(64):
        for name, value in config.items():
            key = f"lr@{config['optimizer']}" if name == "lr" else name
            assert inside(sim.SPACE_PARAMS[key], value), (name, value)
    # and Ray's stock arm samples the same space, the learning rate by its optimiser
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        sim.define_by_run(trial)
        params = dict(trial.params)
        lr = params.pop(f"lr_{params['optimizer']}")
        assert inside(sim.SPACE_PARAMS[f"lr@{params['optimizer']}"], lr)
        assert all(inside(sim.SPACE_PARAMS[k], v) for k, v in params.items())
        study.tell(trial, 0.5)


class Truth:
    """A surrogate stand-in: a configuration's true val_acc is its `q` (epochs aside)."""

    def true_val_acc(self, config: dict[str, Any], epoch: int) -> float:
        return float(config["q"])


def event(at: float, seconds: float, val_acc: float, q: float, trial: str = "t") -> dict:
    return {"at": at, "seconds": seconds, "val_acc": val_acc, "epoch": 1, "trial": trial,
            "config": {"q": q}}  # fmt: skip


def test_a_search_is_scored_by_the_true_value_of_what_it_would_deliver():
    events = [
        event(3.0, 10, 0.60, 0.52, "b"),  # the best seen so far, though truly worse
        event(1.0, 10, 0.50, 0.55, "a"),
        event(2.0, 10, 0.40, 0.70, "c"),  # truly best, but it looked worse: not delivered
        event(4.0, 10, 0.65, 0.66, "d"),
    ]
    grid = np.array([5.0, 10.0, 20.0, 30.0, 40.0, 60.0])
    scored = sim.trajectory(events, Truth(), grid)
    values = scored["values"]
    assert math.isnan(values[0])  # nothing reported within the first 5 s
    assert values[1:] == [0.55, 0.55, 0.52, 0.66, 0.66]  # by report time, cut at each budget
    assert scored["spent_s"] == 40 and scored["trials"] == 4 and scored["results"] == 4
    short = sim.trajectory(events, Truth(), np.array([15.0, 25.0]))
    assert short["values"] == [0.55, 0.55] and short["results"] == 2 and short["trials"] == 2


def test_the_budget_to_reach_random_search_s_final_best():
    grid = np.linspace(10, 100, 10)
    random = np.tile(np.linspace(0.50, 0.60, 10), (4, 1))  # reaches 0.60 at the end
    fast = np.tile(np.minimum(0.60, np.linspace(0.52, 0.70, 10)), (4, 1))
    assert sim.crossing(fast[0], grid, 0.60) == pytest.approx(50.0)  # 0.52 + 0.02 * 4
    assert sim.budget_ratio(fast, random, grid) == pytest.approx(0.5)
    assert sim.budget_ratio(random, random, grid) == pytest.approx(1.0)
    assert math.isinf(sim.budget_ratio(random - 0.05, random, grid))
    between = sim.crossing(np.array([np.nan, 0.5, 0.7]), np.array([1.0, 2.0, 3.0]), 0.6)
    assert between == pytest.approx(2.5)


def test_the_summary_gives_the_default_s_ratio_with_a_paired_interval():
    grid = np.linspace(10, 100, 10)
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(12):
        luck = rng.normal(0, 0.01)  # a seed's noise, shared by the arms (paired)
        base = np.linspace(0.50, 0.60, 10) + luck
        runs.append({"arm": "random", "seed": seed, "values": base.tolist(), "spent_s": 100,
                     "trials": 30, "results": 60})  # fmt: skip
        better = np.minimum(base + 0.05, 0.62 + luck)
        runs.append({"arm": "default", "seed": seed, "values": better.tolist(), "spent_s": 90,
                     "trials": 25, "results": 55})  # fmt: skip
    summary = sim.summarise(runs, grid)
    default = summary["arms"]["default"]
    # default's curve is 0.55 + 0.0111 i against random's final 0.60: grid point 4.5 of 10..100
    assert summary["default_budget_ratio"] == default["budget_ratio"] == pytest.approx(0.55)
    low, high = summary["default_budget_ratio_ci95"]
    assert low <= default["budget_ratio"] <= high < 0.8
    assert default["seeds"] == 12 and default["reached_budget"] == 0
    assert summary["arms"]["random"]["budget_ratio"] == pytest.approx(1.0)
    assert default["final_ci95"][0] < default["final_mean"] < default["final_ci95"][1]


def test_an_interval_reaching_never_says_never_not_nan():
    """Resamples in which the arm never reaches random's final best make the upper bound
    'never' (inf), not NaN from interpolating between a finite ratio and inf."""
    grid = np.linspace(1.0, 10.0, 10)
    random = np.tile(np.linspace(0.40, 0.50, 10), (6, 1))
    reaches = np.linspace(0.45, 0.55, 10)  # reaches 0.50 halfway
    never = np.full(10, 0.42)
    arm = np.stack([reaches, never] * 3)
    low, high = sim.ratio_interval(arm, random, grid, np.random.default_rng(0))
    assert 0.0 < low < 1.0 and math.isinf(high)
