"""tuning.surrogate: a learning curve fitted on recorded curves. The tables here are written by
the test from a known truth (tuning.curve_space's design, curves from a formula, noise of a
known size), so the fit, the noise and the fidelity report can each be checked against it."""

from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import load_script

from fer_search.errors import UserError
from fer_search.tuning import curve_space
from fer_search.tuning.simulated import SimulatedTrainer
from fer_search.tuning.surrogate import (
    CurveSurrogate,
    CurveTable,
    Noise,
    best_family,
    fidelity,
    fit_surrogate,
)

curves = load_script("curves")
EPOCHS = 12
RUN_SD, EPOCH_SD = 0.02, 0.01


def truth(config: dict[str, Any], epoch: int) -> float:
    """A curve that rises to a ceiling set mostly by the learning rate's distance from its
    optimiser's best, and a little by dropout."""
    best = 0.03 if config["optimizer"] == "sgd" else 1e-3
    ceiling = 0.65 - 0.25 * math.log10(config["lr"] / best) ** 2 - 0.15 * config["dropout"]
    return 0.25 + (max(ceiling, 0.3) - 0.25) * (1 - math.exp(-epoch / 3))


def seconds(config: dict[str, Any]) -> float:
    return 2.0 * config["width"] / 8 * (256 / config["batch_size"]) ** 0.3


def write_table(path: Path, count: int, repeated: int, seed: int = 0) -> Path:
    """`count` design configurations with seed 0, the first `repeated` with seeds 1 and 2 too;
    each run's curve is the truth plus an offset for the run and jitter for each epoch."""
    design = curve_space.design(count)
    rng = np.random.default_rng(seed)
    with path.with_name(path.stem + "-configs.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["config", *design[0]])
        writer.writeheader()
        writer.writerows({"config": i, **c} for i, c in enumerate(design))
    runs = [(i, 0) for i in range(count)] + [(i, s) for s in (1, 2) for i in range(repeated)]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=curves.COLUMNS)
        writer.writeheader()
        for number, run_seed in runs:
            config, offset = design[number], rng.normal(0, RUN_SD)
            for epoch in range(1, EPOCHS + 1):
                value = truth(config, epoch) + offset + rng.normal(0, EPOCH_SD)
                row = {"config": number, "seed": run_seed, "epoch": epoch,
                       "val_acc": round(value, 5), "val_loss": 1.0, "train_loss": 1.0,
                       "train_acc": 0.5, "epoch_s": round(seconds(config), 3)}  # fmt: skip
                writer.writerow(row)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> CurveTable:
    return CurveTable.read(write_table(tmp_path_factory.mktemp("curves") / "c.csv", 32, 16))


@pytest.fixture(scope="module")
def report(table) -> dict[str, Any]:
    return fidelity(table, folds=4)


@pytest.fixture(scope="module")
def surrogate(table, report) -> CurveSurrogate:
    return fit_surrogate(table, report)


def test_the_noise_is_measured_from_the_repeated_configurations(table):
    noise = Noise.measure(table)
    assert noise.source.startswith("16 configurations")
    assert RUN_SD * 0.6 < noise.run_sd < RUN_SD * 1.4, noise
    assert EPOCH_SD * 0.8 < noise.epoch_sd < EPOCH_SD * 1.2, noise


def test_without_repeats_the_noise_says_what_it_could_not_measure(tmp_path):
    noise = Noise.measure(CurveTable.read(write_table(tmp_path / "c.csv", 8, 0)))
    assert noise.run_sd == 0.0 and "no repeats" in noise.source
    assert 0.3 * EPOCH_SD < noise.epoch_sd < 3 * EPOCH_SD  # the curves' roughness


def test_the_fidelity_report_ranks_held_out_configurations(report):
    families = report["families"]
    assert report["configurations"] == 32 and report["epochs"] == EPOCHS and report["folds"] == 4
    chosen = best_family(report, "accuracy")
    # 24 configurations fitted, 18 features, two of which matter: a modest ranking, far from
    # the 1.0 a model that saw the held-out configurations would show
    assert chosen != "mean" and 0.3 < families[chosen]["kendall_tau_final"] < 0.8, families
    assert families["mean"]["kendall_tau_final"] is None  # one curve for all ranks nothing
    assert families[chosen]["mae"] < families["mean"]["mae"]
    assert len(families[chosen]["mae_per_epoch"]) == EPOCHS
    assert families[best_family(report, "seconds")]["seconds_median_relative_error"] < 0.2
    floor = report["seed_to_seed"]  # two runs of one configuration differ by their noise
    assert floor["configurations"] == 16 and 0.5 * RUN_SD < floor["mae"] < 4 * RUN_SD


def test_the_surrogate_is_a_seeded_noisy_learning_curve(table, surrogate):
    config = {**table.configs[20], "seed": 0}
    first = [surrogate(config, epoch, 7) for epoch in range(1, EPOCHS + 1)]
    # what else a trial's config holds changes nothing; another seed is another run
    bookkeeping = {**config, "trial_number": 5, "device": "cpu", "epochs": 12}
    assert [surrogate(bookkeeping, e, 7) for e in range(1, EPOCHS + 1)] == first
    assert [surrogate({**config, "seed": 1}, e, 7) for e in range(1, EPOCHS + 1)] != first
    # many runs of a configuration average to its mean curve
    runs = [[surrogate({**config, "seed": s}, e, 7) for e in (1, 12)] for s in range(300)]
    mean = [surrogate.true_val_acc(config, e) for e in (1, 12)]
    assert np.allclose(np.mean(runs, axis=0), mean, atol=0.006), (np.mean(runs, axis=0), mean)
    assert math.isclose(np.std(np.array(runs)[:, 1]), math.hypot(RUN_SD, EPOCH_SD), rel_tol=0.3)
    assert surrogate.true_val_acc(config, 40) == surrogate.true_val_acc(config, EPOCHS)


def test_the_surrogate_predicts_held_out_curves_and_epoch_times(table, surrogate):
    unseen = curve_space.design(64)[32:]  # the same design's later points, never fitted
    predicted = [surrogate.true_val_acc(c, EPOCHS) for c in unseen]
    actual = [truth(c, EPOCHS) for c in unseen]
    assert np.corrcoef(predicted, actual)[0, 1] > 0.7
    assert np.mean(np.abs(np.subtract(predicted, actual))) < 0.04
    times = np.array([surrogate.epoch_seconds(c) for c in unseen])
    assert np.median(np.abs(times / [seconds(c) for c in unseen] - 1)) < 0.15


def test_a_simulated_trainer_waits_what_a_configuration_took_over_its_speedup(table, surrogate):
    trainer = SimulatedTrainer(curve=surrogate, speedup=50.0)
    config = {**table.configs[3], "seed": 0}
    wait, stands_for = trainer.epoch_wait(config)
    assert stands_for == surrogate.epoch_seconds(config) and wait == stands_for / 50.0
    assert pickle.loads(pickle.dumps(trainer)).curve(config, 4, 7) == surrogate(config, 4, 7)
    assert SimulatedTrainer(epoch_s=0.3).epoch_wait(config) == (0.3, None)
    with pytest.raises(ValueError, match="epoch_seconds"):
        SimulatedTrainer(speedup=10.0)  # LearningCurve knows no epoch times


def test_a_missing_or_empty_table_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no curve table"):
        CurveTable.read(tmp_path / "absent.csv")
    path = write_table(tmp_path / "c.csv", 2, 0)
    path.write_text(",".join(curves.COLUMNS) + "\n")
    with pytest.raises(UserError, match="no curves yet"):
        CurveTable.read(path)


def test_a_configurations_epoch_time_is_its_quickest_runs():
    """Repeats recorded on a slower (or busier) machine do not make a configuration slow: each
    run's median epoch counts (epoch 1 aside), and the quickest run's is the configuration's."""
    config = curve_space.design(1)[0]
    quick = np.array([9.0, 4.0, 4.2, 3.9])
    table = CurveTable(
        configs={0: config},
        val_acc={(0, seed): np.full(4, 0.3) for seed in range(3)},
        seconds={(0, 0): quick, (0, 1): 1.8 * quick, (0, 2): 1.7 * quick},
        epochs=4,
    )
    _ids, _x, _curves, log_seconds = table.mean_curves()
    assert math.exp(log_seconds[0]) == pytest.approx(4.0)
