"""Rungs that predict the end (`rung_anneal`): each trial's schedule anneals by every ASHA rung
and starts again after it; the rungs are Ray's; the refit trains one schedule; `bench --only
rungs` measures Kendall's tau between rung-1 and final val_acc with and without it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fer_search.config import TrainConfig
from fer_search.engine.optim import lr_factor
from fer_search.errors import UserError
from fer_search.space import apply_overrides, load_space_dict
from fer_search.tuning.schedulers import anneal_epochs, asha_milestones

PARAMS: dict[str, Any] = {"model": "simple_cnn", "lr": {"type": "loguniform", "low": 1e-3,
                                                         "high": 0.1}}  # fmt: skip
STEPS = 20  # optimiser steps per epoch in the schedule tests


def _space(**experiment: Any):
    return load_space_dict({"experiment": experiment, "params": PARAMS}, source="s.yaml")


def factors(cfg: TrainConfig) -> list[float]:
    total = cfg.epochs * STEPS
    return [lr_factor(cfg, step, total, STEPS) for step in range(total)]


# ---------------------------------------------------------------- the schedule
@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_the_schedule_anneals_by_each_rung_and_starts_again_after(schedule):
    cfg = TrainConfig(epochs=9, schedule=schedule, anneal_at="1,3")
    f = factors(cfg)
    for end in (1, 3, 9):  # the last step of each segment is nearly annealed
        assert f[end * STEPS - 1] < 0.03, end
    for start in (1, 3):  # and the next segment starts again at the peak
        assert f[start * STEPS] == pytest.approx(1.0)
    for a, b in ((1, 3), (3, 9)):  # falling within each later segment
        segment = f[a * STEPS : b * STEPS]
        assert all(x >= y for x, y in zip(segment, segment[1:], strict=False))
    if schedule == "onecycle":  # warms up over a quarter of the first segment only
        assert f[0] < 0.5 and max(f[:STEPS]) == pytest.approx(1.0)


def test_without_anneal_at_the_schedule_spans_all_epochs():
    plain = factors(TrainConfig(epochs=9, schedule="cosine"))
    assert plain[STEPS] > 0.9 and plain[-1] < 0.001
    assert plain == factors(TrainConfig(epochs=9, schedule="cosine", anneal_at=""))


def test_constant_and_plateau_have_nothing_to_anneal():
    for schedule in ("constant", "plateau"):
        assert set(factors(TrainConfig(epochs=4, schedule=schedule, anneal_at="1,2"))) == {1.0}


@pytest.mark.parametrize("bad", ["3,1", "0,2", "1,9", "1,1", "a", "1;3"])
def test_a_bad_anneal_at_is_one_clear_error(bad):
    with pytest.raises(UserError, match=r"anneal_at=.* increasing epochs in \[1, 9\)"):
        TrainConfig.from_dict({"epochs": 9, "anneal_at": bad})


# ---------------------------------------------------------------- the rungs are Ray's
@pytest.mark.parametrize(
    ("max_t", "grace", "eta"), [(9, 1, 3), (8, 2, 2), (16, 1, 4), (10, 1, 3), (5, 5, 3), (27, 1, 3)]
)
def test_asha_milestones_are_rays_rungs(max_t, grace, eta):
    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = _Bracket(min_t=grace, max_t=max_t, reduction_factor=eta, s=0)
    assert asha_milestones(max_t, grace, eta) == sorted(int(m) for m, _ in bracket._rungs)


def test_rung_anneal_gives_trials_the_rungs_before_the_last_epoch():
    assert anneal_epochs(_space(epochs=9, grace_period=1, reduction_factor=3)) == ""
    space = _space(epochs=9, grace_period=1, reduction_factor=3, rung_anneal=True)
    assert anneal_epochs(space) == "1,3"  # 9 is the end: one schedule there anyway
    assert anneal_epochs(apply_overrides(space, epochs=27)) == "1,3,9"
    assert anneal_epochs(apply_overrides(space, grace_period=9)) == ""  # no rung before max_t


def test_rung_anneal_needs_asha_and_a_yes_or_no():
    with pytest.raises(UserError, match=r"s.yaml: experiment.rung_anneal=true anneals .* asha"):
        _space(rung_anneal="yes", scheduler="hyperband")
    with pytest.raises(UserError, match=r"--rung-anneal=true .* scheduler 'median' has none"):
        apply_overrides(_space(scheduler="median"), rung_anneal=True)
    with pytest.raises(UserError, match=r"experiment.rung_anneal='sometimes' is not true or"):
        _space(rung_anneal="sometimes")


def test_cli_flag_turns_it_on_and_off():
    from fer_search.cli.parser import build_parser

    parser = build_parser()
    assert parser.parse_args(["search", "--space", "demo", "--rung-anneal"]).rung_anneal is True
    assert parser.parse_args(["search", "--space", "demo", "--no-rung-anneal"]).rung_anneal is False
    assert parser.parse_args(["search", "--space", "demo"]).rung_anneal is None


def test_the_refit_trains_one_schedule_over_its_epochs():
    from fer_search.tuning.refit import plan_refit

    space = load_space_dict(
        {"experiment": {"time_budget": 200, "refit_budget": 100}, "params": {"lr": 0.1}}
    )
    from fer_search.tuning.results import LeaderboardRow

    columns = {"trial_id": "t1", "status": "completed", "val_acc": 0.6, "epochs": 4}
    config = {"lr": 0.05, "epochs": 4, "anneal_at": "1,2"}
    row = LeaderboardRow(columns, config=config, epoch_s=5.0)
    plan = plan_refit([row], space, elapsed=80.0)
    assert plan is not None and plan["members"][0]["config"]["anneal_at"] == ""
    assert row.config["anneal_at"] == "1,2"  # the trial's own record keeps its schedule


# ---------------------------------------------------------------- the bench figure's arithmetic
def test_kendall_tau_and_its_bootstrap_interval():
    from fer_search.bench.rungs import ARMS, kendall_tau, tau_intervals

    final = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert kendall_tau(final, final) == pytest.approx(1.0)
    assert kendall_tau(final, -final) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau(np.zeros(8), final))
    shuffled = final[[1, 0, 3, 2, 5, 4, 7, 6]]  # neighbours swapped: tau = 1 - 2 * 4 / 28
    out = tau_intervals({ARMS[0]: shuffled, ARMS[1]: final}, {a: final for a in ARMS})
    assert out[ARMS[0]]["tau"] == pytest.approx(1 - 8 / 28)
    assert out[ARMS[1]]["tau"] == pytest.approx(1.0) and out[ARMS[1]]["tau_ci95"] == [1.0, 1.0]
    low, high = out[ARMS[0]]["tau_ci95"]
    assert low <= out[ARMS[0]]["tau"] <= high < 1.0 + 1e-9
    assert out["difference"] == pytest.approx(8 / 28)
    assert out["difference_ci95"][0] >= 0  # the annealed arm never ranks worse here


def test_rung_summary_says_what_the_first_rung_would_lose():
    from fer_search.bench.rungs import rung_summary

    final = np.array([0.50, 0.60, 0.70, 0.55, 0.52, 0.40])
    at_rung = np.array([0.30, 0.35, 0.20, 0.32, 0.10, 0.05])  # the best (0.70) looks bad early
    summary = rung_summary(at_rung, final, eta=3)
    assert summary == {"kept": 2, "best_rank_at_rung": 4, "best_kept": False,
                       "lost": pytest.approx(0.70 - 0.60)}  # fmt: skip
    assert rung_summary(final, final, eta=3)["lost"] == 0.0


# ---------------------------------------------------------------- end to end
def test_search_with_rung_anneal_anneals_every_trial_at_its_rungs(tmp_path):
    import json

    import pandas as pd
    from helpers import run_fer_search, tiny_space

    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space("tiny", trials=3, epochs=4, rung_anneal=True))
    exp = tmp_path / "results" / "rungs"
    proc = run_fer_search(
        "--space", str(space), "--data", "demo", "--demo-size", "0.25", "--storage",
        str(tmp_path / "results"), "--name", "rungs", "--no-final-eval", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = pd.read_csv(exp / "leaderboard.csv")
    for row in board.itertuples():
        params = json.loads((exp / str(row.trial_dir) / "params.json").read_text())
        assert params["anneal_at"] == "1,2"  # ASHA at grace 1, eta 2, max_t 4: rungs 1, 2, 4
        peak = float(params.get("lr@sgd") or params.get("lr@adamw") or params["lr"])
        lr = pd.read_csv(exp / str(row.trial_dir) / "progress.csv").set_index("epoch")["lr"]
        for epoch in (1, 2, 4):  # the last step of each segment: annealed
            if epoch in lr.index:
                assert lr[epoch] < 0.2 * peak, (row.trial_id, epoch, lr.to_dict())
        if 3 in lr.index:  # half way down the second cosine
            assert lr[3] > 0.3 * peak
