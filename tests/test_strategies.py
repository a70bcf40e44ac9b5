"""benchmarks/strategies.py: the strategies compared at equal wall time. Its plans and verdict
are pure functions, tested here on made-up figures; one slow test runs the script for real on
the demo data with a tiny budget and reads the JSON it writes."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, load_script, run_python

from fer_search.space import load_space
from fer_search.space.schema import ExperimentSettings

SCRIPT = REPO / "benchmarks" / "strategies.py"
strategies = load_script("strategies")


def test_search_plan_scales_the_reference_space_to_ten_minutes() -> None:
    ex = load_space("reference").experiment  # 3420 s, 2580 s of refit, 8 epochs, grace 2, k 2
    plan = strategies.search_plan(ex, 540.0, refit_share=0.4)
    assert plan["time_budget"] == 540.0 and plan["refit_budget"] == 216.0
    # the search part (324 s) is 0.39 of the space's (840 s): trials of 3 epochs, grace 1
    assert plan["epochs"] == 3 and plan["grace_period"] == 1
    assert plan["refit_top_k"] == 1  # 216 s of refit is too short to split between two


def test_search_plan_never_exceeds_the_space() -> None:
    ex = load_space("reference").experiment
    plan = strategies.search_plan(ex, 100_000.0, refit_share=0.4)
    assert plan["epochs"] == ex.epochs and plan["grace_period"] == ex.grace_period
    assert plan["refit_top_k"] == ex.refit_top_k


def test_search_plan_without_a_refit_keeps_the_space_trial_length() -> None:
    ex = load_space("reference").experiment
    plan = strategies.search_plan(ex, 1320.0, refit_share=0.0)  # Ray's stock arm at 25 minutes
    assert (plan["epochs"], plan["grace_period"], plan["refit_budget"]) == (8, 2, 0.0)
    scaled = strategies.search_plan(ex, 1320.0, refit_share=2580 / 3420)
    assert scaled["epochs"] < plan["epochs"]


def test_search_plan_of_a_space_without_budget_or_refit() -> None:
    plan = strategies.search_plan(ExperimentSettings(epochs=5, grace_period=1), 30.0)
    assert plan == {"time_budget": 30.0, "refit_budget": 0.0, "epochs": 5, "grace_period": 1}


def test_refit_share_defaults_to_the_space_own() -> None:
    assert strategies.space_refit_share(load_space("reference").experiment) == 2580 / 3420
    assert strategies.space_refit_share(ExperimentSettings()) == 0.0  # no refit
    assert (
        strategies.space_refit_share(ExperimentSettings(refit_budget=60.0))
        == strategies.REFIT_SHARE
    )
    assert strategies.parse_args([]).refit_share == 2580 / 3420
    assert strategies.parse_args(["--refit-share", "0.4"]).refit_share == 0.4


def test_default_recipe_epoch_planning() -> None:
    assert strategies.epochs_that_fit(100.0, 21.48) == 4
    assert strategies.epochs_that_fit(5.0, 21.48) == 1  # at least one epoch
    # 25 minutes here: a timed 54 s epoch, 1380 s left; the epochs ran 57 s
    assert strategies.epochs_that_fit(1380.0, 54.0) == 25
    planned = strategies.epochs_that_fit(1380.0, 54.0, strategies.EPOCH_SLACK)
    assert planned * 57.0 <= 1380.0


def test_reserve_is_fifteen_percent_within_bounds() -> None:
    assert strategies.reserve_seconds(600) == 90
    assert strategies.reserve_seconds(18) == 5
    assert strategies.reserve_seconds(3600) == 180


def test_fer_search_wall_time_is_the_other_arms_budget() -> None:
    ours = {"wall_s": 700.0, "train_s": 510.0}
    assert strategies.training_seconds("fer-search", 600.0, 90.0, None) == (600.0, 510.0)
    assert strategies.training_seconds("random", 600.0, 90.0, ours) == (700.0, 510.0)
    assert strategies.training_seconds("default-recipe", 600.0, 90.0, ours) == (700.0, 690.0)
    assert strategies.training_seconds("ray-optuna", 600.0, 90.0, ours) == (700.0, 670.0)
    # without fer-search, every arm gets the minutes asked for
    assert strategies.training_seconds("ray-optuna", 600.0, 90.0, None) == (600.0, 510.0)


def paired(difference: float, low: float, high: float, p: float = 0.01) -> dict:
    return {"difference": difference, "difference_ci95": [low, high], "p_value": p,
            "within_noise": low <= 0 <= high}  # fmt: skip


def test_verdict_names_each_baseline_with_its_interval() -> None:
    arms = dict.fromkeys(("fer-search", "default-recipe", "random", "ray-optuna"), {})
    text = strategies.verdict(arms, {
        "default-recipe": paired(0.015, 0.002, 0.028),
        "random": paired(0.004, -0.006, 0.014, 0.4),
        "ray-optuna": paired(-0.002, -0.01, 0.006, 0.7),
    })  # fmt: skip
    assert "beat (a) the default recipe by >= 1 pp: +1.50 pp (95 % CI +0.20 to +2.80" in text
    assert "ahead beyond noise, but the interval reaches below 1 pp" in text
    assert "is ahead of (b) random search: +0.40 pp" in text and "(within noise)" in text
    assert "is behind (c) Ray's stock OptunaSearch + ASHA: -0.20 pp" in text


def test_verdict_when_fer_search_misses_the_margin_or_did_not_run() -> None:
    arms = dict.fromkeys(("fer-search", "default-recipe"), {})
    text = strategies.verdict(arms, {"default-recipe": paired(0.005, -0.004, 0.014, 0.3)})
    assert "did not beat (a) the default recipe by >= 1 pp: +0.50 pp" in text
    assert "the interval includes 0 (within noise)" in text
    assert strategies.verdict({"random": {}}, {}).startswith("fer-search was not run")


def test_dict_space_keeps_only_the_active_conditional_parameters() -> None:
    space = load_space("demo")
    conditions = {p.name: p.when for p in space.params if p.when}
    config = {"optimizer": "adamw", "lr@sgd": 0.1, "lr@adamw": 0.001, "dropout": 0.2}
    assert strategies.active_settings(config, conditions) == {
        "optimizer": "adamw", "lr": 0.001, "dropout": 0.2,
    }  # fmt: skip


def test_unknown_arm_is_refused() -> None:
    with pytest.raises(SystemExit):
        strategies.parse_args(["--only", "fer-search,grid"])


@pytest.mark.slow
def test_every_arm_runs_on_demo_data(tmp_path) -> None:
    """All four arms for real, each with 30 s (the demo space: narrow, quick trials; with less,
    a search's first trials may not finish an epoch before its time budget)."""
    done = run_python(str(SCRIPT), "--minutes", "0.5", "--space", "demo", "--out",
                      str(tmp_path), timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "strategies.json").read_text())
    assert set(report["arms"]) == set(strategies.ARMS), report["failed"]
    for arm, r in report["arms"].items():
        for key in ("val_acc", "test_acc"):
            low, high = r[f"{key}_ci95"]
            assert low <= r[key] <= high, (arm, key)
        assert r["epochs"] >= 1 and r["wall_s"] > 0
        if arm != "fer-search":  # fer-search's wall time is the others' budget
            assert r["budget_s"] == report["arms"]["fer-search"]["wall_s"]
    assert set(report["paired"]) == {"default-recipe", "random", "ray-optuna"}
    assert report["verdict"].startswith("On PublicTest, fer-search")
    markdown = (tmp_path / "strategies.md").read_text()
    assert report["command"] in markdown and "PrivateTest" in markdown
