"""The search's scheduler choice (`scheduler:` in a space, --scheduler): each is Ray Tune's own,
built from the space's settings; HyperBand's pauses land on epochs the trainable checkpoints.
Ray's HyperBand is driven with fake trials and results, as Ray's own scheduler tests do."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fer_search.config import recorded_scheduler
from fer_search.errors import UserError
from fer_search.space import apply_overrides, load_space_dict
from fer_search.tuning.schedulers import checkpoint_epochs, hyperband_milestones, make_scheduler
from fer_search.tuning.search_options import SearchOptions
from fer_search.tuning.trainable import should_checkpoint

PARAMS: dict[str, Any] = {"model": "simple_cnn", "lr": {"type": "loguniform", "low": 1e-3,
                                                         "high": 0.1}}  # fmt: skip


def _space(**experiment: Any):
    return load_space_dict({"experiment": experiment, "params": PARAMS}, source="s.yaml")


def test_a_space_without_the_key_keeps_asha():
    assert _space().experiment.scheduler == "asha"
    assert type(make_scheduler(_space())).__name__ == "AsyncHyperBandScheduler"


@pytest.mark.parametrize(
    ("name", "cls", "settings"),
    [
        ("asha", "AsyncHyperBandScheduler", {"_max_t": 6, "_reduction_factor": 3}),
        ("hyperband", "HyperBandScheduler", {"_max_t_attr": 6, "_eta": 3}),
        ("median", "MedianStoppingRule", {"_grace_period": 2, "_min_samples_required": 4,
                                          "_min_time_slice": 6}),
        ("fifo", "FIFOScheduler", {}),
    ],
)  # fmt: skip
def test_each_scheduler_is_rays_own_with_the_space_settings(name, cls, settings):
    space = _space(scheduler=name, epochs=6, grace_period=2, reduction_factor=3,
                   min_samples_required=4)  # fmt: skip
    scheduler = make_scheduler(space)
    assert type(scheduler).__name__ == cls
    assert {key: getattr(scheduler, key) for key in settings} == settings
    assert getattr(scheduler, "_time_attr", "epoch") == "epoch"


def test_cli_scheduler_overrides_the_file_and_no_asha_is_fifo():
    space = _space(scheduler="median")
    assert apply_overrides(space, scheduler="hyperband").experiment.scheduler == "hyperband"
    fifo = SearchOptions(no_asha=True).space_overrides()
    assert apply_overrides(space, **fifo).experiment.scheduler == "fifo"
    with pytest.raises(UserError, match=r"^--no-asha means --scheduler fifo, not --scheduler"):
        SearchOptions(no_asha=True, scheduler="hyperband").validate()
    with pytest.raises(UserError, match=r"^--scheduler='hyperbnd' is not one of .*'hyperband'"):
        apply_overrides(space, scheduler="hyperbnd")


def test_experiment_records_before_the_key_name_asha_or_fifo():
    assert recorded_scheduler({"scheduler": "median", "asha": False}) == "median"
    assert recorded_scheduler({"asha": True, "no_asha": False}) == "asha"
    assert recorded_scheduler({"asha": False, "no_asha": True}) == "fifo"
    assert recorded_scheduler({}) == "asha"


def test_hyperband_milestones():
    assert hyperband_milestones(81, 3) == [1, 3, 9, 27, 81]
    assert hyperband_milestones(10, 3) == [1, 3, 9, 10]  # 3 and 9: odd epochs to checkpoint
    assert hyperband_milestones(3, 2) == [1, 2, 3]
    assert checkpoint_epochs(_space(scheduler="hyperband", epochs=10)) == [1, 3, 9, 10]
    assert checkpoint_epochs(_space(scheduler="asha", epochs=10)) == []


def test_a_trial_checkpoints_where_the_scheduler_may_pause_it():
    kept = [e for e in range(1, 11) if should_checkpoint(e, 4, 10, False, {1, 3, 9, 10})]
    assert kept == [1, 3, 4, 8, 9, 10]


class FakeTrial:
    def __init__(self, number: int) -> None:
        self.trial_id, self.status, self.is_saving = str(number), "PENDING", False


class FakeController:
    """What HyperBandScheduler calls back: stopping a paused trial."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def stop_trial(self, trial: FakeTrial) -> None:
        trial.status = "TERMINATED"
        self.scheduler.on_trial_remove(self, trial)


def hyperband_decisions(max_t: int, eta: int, trials: int, seed: int) -> set[int]:
    """The epochs at which Ray's HyperBandScheduler paused or stopped any of `trials` fake
    trials reporting random val_acc, run one at a time as Tune would."""
    from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

    rng = random.Random(seed)
    scheduler = HyperBandScheduler(time_attr="epoch", metric="val_acc", mode="max",
                                   max_t=max_t, reduction_factor=eta)  # fmt: skip
    ctrl = FakeController(scheduler)
    epochs: dict[FakeTrial, int] = {}
    for number in range(trials):
        trial = FakeTrial(number)
        epochs[trial] = 0
        scheduler.on_trial_add(ctrl, trial)
    decided: set[int] = set()
    while (trial := scheduler.choose_trial_to_run(ctrl)) is not None:
        trial.status = "RUNNING"
        while trial.status == "RUNNING":
            epochs[trial] += 1
            result = {"epoch": epochs[trial], "val_acc": rng.random()}
            action = scheduler.on_trial_result(ctrl, trial, result)
            if action == TrialScheduler.PAUSE:
                trial.status = "PAUSED"
            elif action == TrialScheduler.STOP or epochs[trial] >= max_t:
                trial.status = "TERMINATED"
                scheduler.on_trial_complete(ctrl, trial, result)
            else:
                continue
            decided.add(epochs[trial])
    assert all(t.status == "TERMINATED" for t in epochs), "a trial was left paused"
    return decided


@pytest.mark.parametrize(("max_t", "eta"), [(10, 3), (6, 2), (3, 2), (16, 4)])
def test_rays_hyperband_pauses_only_at_the_milestones(max_t, eta):
    decided: set[int] = set()
    for seed in range(3):
        decided |= hyperband_decisions(max_t, eta, trials=12, seed=seed)
    assert decided - {max_t} and decided <= set(hyperband_milestones(max_t, eta))


# ---------------------------------------------------------------- end to end
@pytest.mark.parametrize(
    ("scheduler", "settings"),
    [
        # brackets of 3 trials to epoch 4 and of 3 paused at epoch 2 (milestones 1, 2, 4);
        # checkpoint_every 3 leaves epoch 2 to the milestone rule unless it is a new best
        ("hyperband", {"epochs": 4, "num_samples": 6, "checkpoint_every": 3}),
        pytest.param(  # Ray's own rule, checked by unit tests in CI; the real run: -m slow
            "median",
            {"epochs": 3, "num_samples": 4, "min_samples_required": 1},
            marks=pytest.mark.slow,
        ),
    ],
)
def test_search_end_to_end_with_the_scheduler(tmp_path, scheduler, settings):
    import csv
    import json

    import optuna
    import pandas as pd
    from helpers import run_fer_search, tiny_space

    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space("tiny", trials=settings.pop("num_samples"), **settings))
    exp = tmp_path / "results" / scheduler
    proc = run_fer_search(
        "--space", str(space), "--data", "demo", "--demo-size", "0.25", "--scheduler",
        scheduler, "--storage", str(tmp_path / "results"), "--name", scheduler,
        "--verbose", "1", "--no-final-eval", env={"RAY_DEDUP_LOGS": "0"}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((exp / "experiment.json").read_text())
    assert (record["scheduler"], record["asha"], record["no_asha"]) == (scheduler, False, False)
    with (exp / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["status"] for r in rows} <= {"completed", "pruned"} and "completed" in statuses(rows)
    assert {r["stopped_by"] for r in rows if r["status"] == "pruned"} <= {scheduler}
    study = optuna.load_study(study_name=scheduler, storage=f"sqlite:///{exp / 'optuna.db'}")
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(by_id) == {r["trial_id"] for r in rows}  # and none RUNNING:
    for row in rows:
        trial = by_id[row["trial_id"]]
        assert trial.state.name == {"completed": "COMPLETE", "pruned": "PRUNED"}[row["status"]]
        assert trial.user_attrs.get("stopped_by", "") == row["stopped_by"]
    name = {"hyperband": "HyperBand", "median": "the median rule"}[scheduler]
    if any(r["status"] == "pruned" for r in rows):
        assert f"stopped by {name} at epoch" in proc.stdout
        assert f"pruned by {name}" in (exp / "report.md").read_text()
    resumed = 0
    for row in rows:  # a paused trial went on from its checkpoint: no epoch twice
        progress = pd.read_csv(exp / row["trial_dir"] / "progress.csv")
        assert list(progress["epoch"]) == list(range(1, int(row["epochs"]) + 1)), row
        resumed += bool((progress["iterations_since_restore"] < progress["epoch"]).any())
    if scheduler == "hyperband":
        assert resumed >= 1  # the bracket's good trial that had waited, paused, for the others
        assert {r["status"] for r in rows} == {"completed", "pruned"}


def statuses(rows: list[dict[str, str]]) -> set[str]:
    return {r["status"] for r in rows}


def test_only_a_trial_saved_paused_takes_its_live_final_state():
    from fer_search.tuning.run import saved_or_live_states

    saved = {"a": "PAUSED", "b": "RUNNING", "c": "PAUSED", "d": "TERMINATED"}
    live = {"a": "TERMINATED", "b": "TERMINATED", "c": "PAUSED", "d": "TERMINATED"}
    # b: an interrupted search's running trial, which Tune stops: unfinished, as saved
    assert saved_or_live_states(saved, live) == {
        "a": "TERMINATED", "b": "RUNNING", "c": "PAUSED", "d": "TERMINATED"
    }  # fmt: skip


# ---------------------------------------------------------------- PBT
PBT_PARAMS: dict[str, Any] = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    "lr@sgd": {"type": "loguniform", "low": 0.01, "high": 0.2, "when": {"optimizer": "sgd"}},
    "lr@adamw": {"type": "loguniform", "low": 1e-4, "high": 3e-3, "when": {"optimizer": "adamw"}},
    "weight_decay": {"type": "uniform", "low": 0.0, "high": 1e-3},
    "rotation": {"type": "uniform", "low": 0.0, "high": 20.0, "step": 5.0},  # a grid: not PBT's
    "mixup": {"type": "uniform", "low": 0.0, "high": 0.4, "when": {"optimizer": "adamw"}},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},  # not a mutable setting
}


def _pbt_space(params: dict[str, Any] | None = None, **experiment: Any):
    settings = {"scheduler": "pbt", "epochs": 8, **experiment}
    return load_space_dict({"experiment": settings, "params": params or PBT_PARAMS}, "s.yaml")


def test_pbt_is_rays_with_mutations_derived_from_the_space():
    from ray.tune.search.sample import Float

    scheduler = make_scheduler(_pbt_space(perturbation_interval=3))
    assert type(scheduler).__name__ == "PopulationBasedTraining"
    assert (scheduler._time_attr, scheduler._perturbation_interval) == ("epoch", 3)
    mutations = scheduler._hyperparam_mutations
    assert list(mutations) == ["lr", "weight_decay", "mixup"]  # not rotation's grid, not dropout
    assert all(isinstance(domain, Float) for domain in mutations.values())
    lr, wd = mutations["lr"], mutations["weight_decay"]
    assert (lr.lower, lr.upper, type(lr.sampler).__name__) == (1e-4, 0.2, "_LogUniform")
    assert (wd.lower, wd.upper, type(wd.sampler).__name__) == (0.0, 1e-3, "_Uniform")
    # a trial checkpoints where PBT may copy it or pause it
    assert checkpoint_epochs(_pbt_space(perturbation_interval=3)) == [3, 6]
    assert checkpoint_epochs(_pbt_space()) == [2, 4, 6, 8]  # default: a quarter of the epochs


def test_pbt_keeps_a_perturbed_config_inside_the_active_parameters_range():
    from fer_search.tuning.schedulers import KeepInSpace

    keep = KeepInSpace(_pbt_space())
    sgd = keep({"optimizer": "sgd", "lr": 0.3, "weight_decay": -1e-4, "mixup": 0.12})
    # lr@sgd's range; weight_decay's; mixup is not sampled for SGD: back to its default
    assert (sgd["lr"], sgd["weight_decay"], sgd["mixup"]) == (0.2, 0.0, 0.0)
    adamw = keep({"optimizer": "adamw", "lr": 0.01, "weight_decay": 5e-4, "mixup": 0.12})
    assert (adamw["lr"], adamw["weight_decay"], adamw["mixup"]) == (3e-3, 5e-4, 0.12)


@pytest.mark.parametrize(
    ("params", "experiment", "message"),
    [
        ({"dropout": {"type": "uniform", "low": 0.0, "high": 0.5}}, {},
         r"^s\.yaml: experiment\.scheduler=pbt needs a continuous range .* over one of lr, "
         r"weight_decay, hflip"),
        ({"lr": {"type": "categorical", "choices": [0.01, 0.1]}}, {},
         r"this space samples none$"),
        (None, {"perturbation_interval": 8},
         r"^s\.yaml: experiment\.perturbation_interval=8 must be < epochs=8"),
        (None, {"epochs": 1}, r"^s\.yaml: experiment\.epochs=1 leaves PBT no epoch to perturb"),
        (None, {"max_concurrent": 2}, r"^s\.yaml: experiment\.max_concurrent=2 cannot limit pbt"),
    ],
)  # fmt: skip
def test_pbt_settings_are_checked(params, experiment, message):
    with pytest.raises(UserError, match=message):
        _pbt_space(params, **experiment)


def test_cli_scheduler_pbt_on_a_space_pbt_cannot_perturb_names_the_flag():
    space = _space()  # samples lr: fine
    assert apply_overrides(space, scheduler="pbt").experiment.scheduler == "pbt"
    fixed = load_space_dict({"params": {"dropout": {"type": "uniform", "low": 0, "high": 0.5}}},
                            source="s.yaml")  # fmt: skip
    with pytest.raises(UserError, match=r"^--scheduler=pbt needs a continuous range"):
        apply_overrides(fixed, scheduler="pbt")


def test_pbt_search_end_to_end_records_lineage_and_an_honest_study(tmp_path):
    """4 trials x 4 epochs, a perturbation every epoch: PBT copies at least one trial; the
    leaderboard and report say which it copied, when and what changed; optuna.db holds each
    initial configuration, none RUNNING, an exploited one PRUNED at its first copy."""
    import csv

    import optuna
    from helpers import one_line_error, run_fer_search, tiny_space

    space = tmp_path / "tiny.yaml"
    extra = "  weight_decay: {type: loguniform, low: 1e-5, high: 1e-3}\n"
    space.write_text(tiny_space("pbt", trials=4, epochs=4, scheduler="pbt",
                                perturbation_interval=1, params=extra))  # fmt: skip
    exp = tmp_path / "results" / "pbt"
    proc = run_fer_search(
        "--space", str(space), "--data", "demo", "--demo-size", "0.25", "--storage",
        str(tmp_path / "results"), "--name", "pbt", "--verbose", "1", "--no-final-eval",
        env={"RAY_DEDUP_LOGS": "0"}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (exp / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len({r["trial_id"] for r in rows}) == 4 and statuses(rows) == {"completed"}
    copied = [r for r in rows if r["lineage"]]
    assert copied, "PBT copied no trial"
    ids = {r["trial_id"] for r in rows}
    for row in copied:
        assert row["lineage"].startswith("copied ") and row["lineage"].split()[1] in ids
    report = (exp / "report.md").read_text()
    assert "## PBT lineage" in report and copied[0]["lineage"] in report

    study = optuna.load_study(study_name="pbt", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}  # none RUNNING
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(by_id) == ids
    for row in rows:
        trial = by_id[row["trial_id"]]
        assert trial.user_attrs["pbt"] == "initial configuration"
        if row["lineage"]:  # its initial configuration ran until PBT replaced it
            first = trial.user_attrs["pbt_exploits"][0]["epoch"]
            assert (trial.state.name, trial.user_attrs["stopped_by"]) == ("PRUNED", "pbt")
            assert max(trial.intermediate_values) == first
            assert trial.user_attrs["pbt_lineage"] == row["lineage"]
            assert trial.user_attrs["pbt_final_val_acc"] == pytest.approx(float(row["val_acc"]))
        else:
            assert trial.state.name == "COMPLETE"
            assert trial.values[0] == pytest.approx(float(row["val_acc"]))
    resumed = run_fer_search("--resume", str(exp))  # refused, in one line, before any work
    assert "--resume of a PBT search is not supported" in one_line_error(resumed)


def test_a_pbt_search_registers_each_checkpoint_once_so_no_trial_loses_its_donor(tmp_path):
    """2 simulated trials x 8 epochs, a perturbation every 2, a checkpoint every epoch, both
    running at once: at a perturbation PBT asks the better trial for its checkpoint, and Tune
    would ask again for the checkpoint that result reported. Registered twice, Tune deleted the
    directory one checkpoint early, while the trial still named it and PBT handed it out: the
    trial copying it failed to restore ("does not exist on storage anymore") and errored, and
    Tune failed to delete it again ("Error handling checkpoint ... Path not found")."""
    import logging

    import ray

    import fer_search

    class Errors(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage()[:300])

    space = {
        "name": "pbt-once",
        "experiment": {"epochs": 8, "num_samples": 2, "seed": 0, "scheduler": "pbt",
                       "perturbation_interval": 2, "checkpoint_every": 1, "cpus_per_trial": 1},
        "params": {"model": "simple_cnn", "lr": {"type": "loguniform", "low": 1e-3, "high": 0.1},
                   "dropout": {"type": "uniform", "low": 0.0, "high": 0.5}},
    }  # fmt: skip
    errors, tune_log = Errors(), logging.getLogger("ray.tune")
    tune_log.addHandler(errors)
    try:
        exp = fer_search.search(
            space, data=fer_search.load_data("demo", demo_size=0.1), cpus=4, verbose=0,
            trainer=fer_search.SimulatedTrainer(epoch_s=0.2, checkpoint_mib=0.0),
            storage=str(tmp_path), name="pbt-once", no_final_eval=True,
        )  # fmt: skip
    finally:
        tune_log.removeHandler(errors)
        ray.shutdown()  # the search started Ray in this process; later modules start their own
    assert errors.messages == []
    board = exp.leaderboard
    assert set(board["status"]) == {"completed"} and (board["epochs"] == 8).all()
