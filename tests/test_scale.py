"""Searches at scale with simulated trials (fer_search.tuning.simulated): the learning curve and
the probabilities the simulated models answer with, then real searches on demo data whose
trials only wait and report (Ray Tune, the Optuna study, ASHA, leaderboard, final evaluation,
report and resume are the real ones): 50 trials 16 at a time, 20 trials whose final
evaluation loads only the checkpoints it uses, and a search interrupted and resumed.

The searches share one local Ray with 16 logical CPUs (on any machine: a simulated trial only
sleeps), shut down when the module ends.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import fer_search
from fer_search.tuning.run import trainer_from_record
from fer_search.tuning.simulated import LearningCurve, SimulatedTrainer, simulated_probs
from fer_search.tuning.trainers import VAL_PROBS_FILE

CLASSES = 7
CHECKPOINT_MIB = 0.25
MIB = 2**20


# ---------------------------------------------------------------- the simulation, without Ray
def config(**values: Any) -> dict[str, Any]:
    return {"model": "simple_cnn", "lr": 3e-3, "dropout": 0.3, "weight_decay": 5e-4, **values}


def test_the_learning_curve_is_the_same_for_a_configuration_and_epoch():
    curve = LearningCurve()
    first = [curve(config(), epoch, CLASSES) for epoch in range(1, 6)]
    reordered = dict(reversed(list(config().items())))
    assert [LearningCurve()(reordered, epoch, CLASSES) for epoch in range(1, 6)] == first
    # bookkeeping is not the configuration: a refit's longer schedule continues its curve
    refit = config(epochs=40, trial_number=7, threads=2)
    assert [curve(refit, epoch, CLASSES) for epoch in range(1, 6)] == first
    assert len(set(first)) == len(first)  # each epoch has its own noise
    assert curve(config(lr=3.1e-3), 3, CLASSES) != first[2]


def test_the_learning_curve_ranks_a_learning_rate_near_its_best_above_a_far_one():
    curve = LearningCurve()
    for epoch in (1, 3, 10):
        near = curve(config(lr=curve.lr_best * 1.2), epoch, CLASSES)
        far = curve(config(lr=curve.lr_best * 100), epoch, CLASSES)
        assert near > far + 0.05, (epoch, near, far)
    assert 1 / CLASSES <= curve(config(lr=10.0), 20, CLASSES) <= 0.99


def test_the_learning_curve_rises_with_epochs_on_average():
    curve, rng = LearningCurve(), np.random.default_rng(0)
    configs = [
        config(lr=float(10 ** rng.uniform(-4, -1)), dropout=float(rng.uniform(0, 0.5)))
        for _ in range(40)
    ]
    mean = [np.mean([curve(c, epoch, CLASSES) for c in configs]) for epoch in (1, 2, 4, 8, 16)]
    assert mean == sorted(mean) and mean[-1] - mean[0] > 0.1, mean


@pytest.mark.parametrize("n", [35, 200, 3589])
def test_simulated_probabilities_are_right_on_exactly_the_asked_share(n):
    labels = np.arange(n) % CLASSES
    for accuracy in (0.0, 0.3, 0.55, 0.7, 1.0):
        for seed in range(5):
            probs = simulated_probs(labels, CLASSES, accuracy, np.random.default_rng(seed), "val")
            assert probs.shape == (n, CLASSES) and (probs >= 0).all()
            assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
            right = int((probs.argmax(1) == labels).sum())
            assert right == round(accuracy * n), (n, accuracy, seed, right)


def test_simulated_probabilities_are_distributions():
    labels = np.arange(200) % CLASSES
    for accuracy in (0.0, 0.6, 1.0):
        probs = simulated_probs(labels, CLASSES, accuracy, np.random.default_rng(1), "test")
        assert probs.shape == (200, CLASSES) and (probs >= 0).all()
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_an_ensemble_of_simulated_models_gains_a_few_points_as_real_ones_do():
    # their mistakes are shared (hard images, confusable classes): the mean of 20 models of
    # 70 % is better than one, and far from the 89 % of 20 models erring independently
    labels = np.arange(3500) % CLASSES
    rng = np.random.default_rng(3)
    models = [simulated_probs(labels, CLASSES, 0.70, rng, "val") for _ in range(20)]
    gain = float((np.mean(models, axis=0).argmax(1) == labels).mean()) - 0.70
    assert 0.01 < gain < 0.08, gain


def test_a_simulated_trainer_is_rebuilt_from_its_description():
    trainer = SimulatedTrainer(
        epoch_s=0.3, checkpoint_mib=2.5, test_gap=0.01, curve=LearningCurve(peak=0.6, tau0=3.0)
    )
    described = json.loads(json.dumps(trainer.describe()))  # as experiment.json keeps it
    assert described["kind"] == "simulated"
    assert SimulatedTrainer.from_description(described) == trainer
    assert trainer_from_record({"trainer": described}) == trainer  # what resume() does


# ---------------------------------------------------------------- searches
@pytest.fixture(scope="module", autouse=True)
def _one_ray_for_the_module():
    """The searches start Ray in this process (cpus=16) and share it; later modules start
    their own."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def demo():
    return fer_search.load_data("demo", demo_size=0.1)  # 35 val and 35 test images


def simulated_search(storage: Path, name: str, data: Any, **flags: Any) -> fer_search.Experiment:
    """The demo space on `data` with simulated trials of 3 epochs on 16 logical CPUs."""
    flags.setdefault("trainer", SimulatedTrainer(epoch_s=0.05, checkpoint_mib=CHECKPOINT_MIB))
    return fer_search.search(
        "demo", data=data, epochs=3, cpus=16, storage=str(storage), name=name, verbose=0, **flags
    )


def read_rows(exp: Path) -> list[dict[str, str]]:
    with (exp / "leaderboard.csv").open() as f:
        return list(csv.DictReader(f))


def optuna_trials(exp: Path) -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=exp.name, storage=f"sqlite:///{exp / 'optuna.db'}")
    return study.trials


def models_final_json_uses(final: dict[str, Any]) -> set[str]:
    """The trials whose test predictions final.json reports: the best, the top-k ensemble, the
    ensemble val chose, and any other candidate ensemble it scores on test."""
    chosen = final["selected_ensemble"]
    used = {final["best"]["trial_id"], *chosen["members"]}
    if final["ensemble"]:
        used |= set(final["ensemble"]["trial_ids"])
    for candidate in (chosen["selection"], chosen["bagged"]):
        if candidate.get("test_acc") is not None:
            used |= set(candidate["members"])
    return used


def checkpoint_dir(exp: Path, row: dict[str, str]) -> Path:
    """The trial's latest checkpoint: the one its leaderboard row and the final evaluation read."""
    return sorted((exp / row["trial_dir"]).glob("checkpoint_*"))[-1]


def check_final_reads(exp: Path, trials: int) -> dict[str, Any]:
    """final.json's `reads`: every trial's val probabilities, and the whole checkpoints of the
    models final.json uses and of no other trial, byte for byte. Returns `reads`."""
    final = json.loads((exp / "final.json").read_text())
    reads, rows = final["reads"], {r["trial_id"]: r for r in read_rows(exp)}
    assert reads["pool"] == reads["val_prob_files"] == trials, reads
    used = models_final_json_uses(final)
    assert reads["checkpoints_loaded"] == len(used) < trials, (reads, sorted(used))
    loaded = [checkpoint_dir(exp, rows[trial_id]) for trial_id in used]
    for directory in loaded:
        assert (directory / "weights.bin").stat().st_size == CHECKPOINT_MIB * MIB
    files = [path for directory in loaded for path in directory.iterdir()]
    assert reads["checkpoint_bytes"] == sum(path.stat().st_size for path in files)
    stored = [checkpoint_dir(exp, row) / VAL_PROBS_FILE for row in rows.values()]
    val_prob_bytes = sum(path.stat().st_size for path in stored)
    assert reads["bytes_read"] == reads["checkpoint_bytes"] + val_prob_bytes
    assert reads["checkpoint_bytes"] < len(used) * (CHECKPOINT_MIB * MIB + 2**14)
    return reads


SPEEDUP = 200.0


def timed_curve() -> LearningCurve:
    """LearningCurve whose configurations take their own time an epoch, as recorded curves do
    (tuning.surrogate): 10 to 18 s by dropout. Made here, so that Ray ships the class by value."""

    class Timed(LearningCurve):
        def epoch_seconds(self, config: dict[str, Any]) -> float:
            return 10.0 + 20.0 * float(config["dropout"])

    return Timed()


@pytest.fixture(scope="module")
def fifty(tmp_path_factory, demo):
    """50 trials, 16 at a time (the demo space sets no max_concurrent; one CPU a trial); each
    epoch waits its configuration's time over SPEEDUP (0.05 to 0.09 s)."""
    storage = tmp_path_factory.mktemp("fifty")
    trainer = SimulatedTrainer(checkpoint_mib=CHECKPOINT_MIB, curve=timed_curve(), speedup=SPEEDUP)
    return simulated_search(
        storage, "fifty", demo, num_samples=50, max_concurrent=16, trainer=trainer
    )


def test_a_50_trial_search_16_at_once_records_every_trial(fifty):
    assert not fifty.interrupted
    record = fifty.record
    assert record["resources"]["max_concurrent"] == 16 and record["finished"]
    assert record["trainer"]["kind"] == "simulated"
    rows = read_rows(fifty.path)
    assert len(rows) == 50 and len({r["trial_id"] for r in rows}) == 50
    assert {r["status"] for r in rows} == {"completed", "pruned"}  # ASHA stopped some
    for row in rows:
        epochs = int(row["epochs"])
        assert (epochs == 3) if row["status"] == "completed" else (1 <= epochs < 3), row
        assert 0.0 < float(row["val_acc"]) < 1.0 and row["precision"] == "simulated"
    accs = [float(r["val_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert len(list(fifty.path.glob("trial_*"))) == 50


def test_each_epoch_waits_its_configurations_time_and_says_what_it_stands_for(fifty):
    # what a benchmark counts its budget by (benchmarks/strategies_sim.py)
    for row in read_rows(fifty.path):
        lines = (fifty.path / row["trial_dir"] / "result.json").read_text().splitlines()
        results = [json.loads(line) for line in lines if line.strip()]
        expected = 10.0 + 20.0 * float(results[0]["config"]["dropout"])
        assert [r["sim_epoch_s"] for r in results] == [expected] * len(results), row
        assert all(r["epoch_time"] >= expected / SPEEDUP for r in results)
        times = [r["reported_at"] for r in results]
        assert times == sorted(times) and len(set(times)) == len(times)


def test_the_50_trial_study_holds_every_trial_in_its_final_state(fifty):
    rows = {r["trial_id"]: r for r in read_rows(fifty.path)}
    trials = optuna_trials(fifty.path)
    assert len(trials) == 50 and "RUNNING" not in {t.state.name for t in trials}
    assert {t.user_attrs["ray_trial_id"] for t in trials} == set(rows)
    for trial in trials:
        status = rows[trial.user_attrs["ray_trial_id"]]["status"]
        assert trial.state.name == {"completed": "COMPLETE", "pruned": "PRUNED"}[status]


def test_the_50_trial_report_names_the_best_trial(fifty):
    best = read_rows(fifty.path)[0]["trial_id"]
    assert fifty.final["best"]["trial_id"] == best
    assert f"`{best}`" in (fifty.path / "report.md").read_text()


def test_the_50_trial_final_evaluation_loads_only_the_checkpoints_it_uses(fifty):
    check_final_reads(fifty.path, trials=50)


def test_tensorboard_and_optuna_dashboard_show_every_one_of_the_50_trials(fifty):
    # started as the README starts them, asked what their pages ask (bench.viewers)
    from fer_search.bench.viewers import time_optuna_dashboard, time_tensorboard

    hparams = time_tensorboard(fifty.path / "tensorboard", 50, limit_s=120)
    dashboard = time_optuna_dashboard(fifty.path / "optuna.db", 50, limit_s=120)
    assert hparams["items"] == 50 and hparams["s"] is not None, hparams  # a row per trial
    assert dashboard["items"] == 50 and dashboard["s"] is not None, dashboard


def test_a_20_trial_search_loads_only_what_it_uses(tmp_path, demo):
    # one trial at a time: the seeded TPE and ASHA then see the same results in the same
    # order on every run, so the trials, their val probabilities, the ensembles selected from
    # them and the checkpoints the final evaluation loads are the same every run
    exp = simulated_search(tmp_path, "twenty", demo, num_samples=20, max_concurrent=1)
    assert not exp.interrupted and len(read_rows(exp.path)) == 20
    check_final_reads(exp.path, trials=20)


def interrupting(driver: int, marker: Path, at_trial: int) -> Callable[[dict, int, int], float]:
    """LearningCurve's values; the first trial numbered `at_trial` or later to run an epoch
    sends the driver SIGINT (the user's Ctrl-C), once: `marker` records that it was sent."""
    curve = LearningCurve()

    def interrupt_then_follow(trial: dict[str, Any], epoch: int, classes: int) -> float:
        if int(trial["trial_number"]) >= at_trial:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:  # a trial is running, so Tune's own SIGINT handler is installed
                os.kill(driver, signal.SIGINT)
        return curve(trial, epoch, classes)

    return interrupt_then_follow


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, demo):
    """8 trials, 2 at a time, interrupted by the fifth in its first epoch (by then at least 3
    have ended), then finished by fer_search.resume with the trainer experiment.json
    describes (LearningCurve's, without the interruption)."""
    storage = tmp_path_factory.mktemp("resume")
    marker = storage / "interrupted"
    curve = interrupting(os.getpid(), marker, at_trial=4)
    trainer = SimulatedTrainer(epoch_s=0.2, checkpoint_mib=CHECKPOINT_MIB, curve=curve)
    first = simulated_search(
        storage, "resume", demo, num_samples=8, max_concurrent=2, trainer=trainer
    )
    assert marker.exists() and first.interrupted, first.note
    before = SimpleNamespace(
        rows={r["trial_id"]: r for r in read_rows(first.path)},
        trials=optuna_trials(first.path),
    )
    return before, fer_search.resume(first.path, cpus=16, verbose=0)


def test_an_interrupted_search_resumes_with_no_trial_run_twice(resumed):
    before, exp = resumed
    done_before = {t for t, r in before.rows.items() if r["status"] in ("completed", "pruned")}
    assert 3 <= len(done_before) < 8, before.rows  # stopped partway
    assert "RUNNING" not in {t.state.name for t in before.trials}  # closed as unfinished

    assert not exp.interrupted and exp.final is not None
    rows = read_rows(exp.path)
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 8 and set(before.rows) <= set(ids)
    assert len(list(exp.path.glob("trial_*"))) == 8
    numbers = [
        json.loads((exp.path / r["trial_dir"] / "params.json").read_text())["trial_number"]
        for r in rows
    ]
    assert len(set(numbers)) == 8  # each Optuna trial ran in one Tune trial
    for row in rows:
        assert row["status"] in ("completed", "pruned") and row["precision"] == "simulated"
        with (exp.path / row["trial_dir"] / "progress.csv").open() as f:
            epochs = [int(line["epoch"]) for line in csv.DictReader(f)]
        # every epoch logged (an epoch the interruption cut before Tune registered its
        # checkpoint is run again: the trial restarts from the checkpoint before it)
        assert sorted(set(epochs)) == list(range(1, int(row["epochs"]) + 1)), row
    for trial_id in done_before:  # finished trials kept their results and were not rerun
        again = next(r for r in rows if r["trial_id"] == trial_id)
        assert again["epochs"] == before.rows[trial_id]["epochs"]
        assert math.isclose(float(again["time_s"]), float(before.rows[trial_id]["time_s"]))


def test_the_resumed_study_holds_each_trial_once_in_its_final_state(resumed):
    before, exp = resumed
    rows = {r["trial_id"]: r for r in read_rows(exp.path)}
    trials = optuna_trials(exp.path)
    assert "RUNNING" not in {t.state.name for t in trials}
    # Optuna cannot reopen a trial: one the interruption left unfinished is recorded again
    # when it ends, pointing back; the latest record of each Tune trial is its outcome
    latest = {t.user_attrs["ray_trial_id"]: t for t in sorted(trials, key=lambda t: t.number)}
    assert set(latest) == set(rows)
    for trial_id, trial in latest.items():
        status = rows[trial_id]["status"]
        assert trial.state.name == {"completed": "COMPLETE", "pruned": "PRUNED"}[status]
    again = [t for t in trials if "resumed_from" in t.user_attrs]
    ran = [t for t in trials if t.user_attrs.get("status") != "not started"]
    assert len(ran) == 8 + len(again)
    unfinished = {t for t, r in before.rows.items() if r["status"] == "unfinished"}
    assert {t.user_attrs["ray_trial_id"] for t in again} == unfinished
    assert exp.record["trainer"]["kind"] == "simulated"


def test_the_bench_s_bare_ray_floor_brings_nothing_of_fer_search_into_its_workers(tmp_path):
    # Ray's floor must cost what Ray costs: its trainable unpickles without fer_search or torch
    import subprocess
    import sys

    from ray import cloudpickle

    from fer_search.bench.floor import bare_trainable

    blob = tmp_path / "trainable.pkl"
    blob.write_bytes(cloudpickle.dumps(bare_trainable(epochs=3, epoch_s=0.0)))
    check = (
        "import pickle, sys; f = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fer_search', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", check, str(blob)], cwd=tmp_path,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout
