"""benchmarks/curves.py: the recorded learning curves a surrogate is fitted on. The design and
the training subset must be the same on every run (the collection resumes in chunks); one test
runs the script for real on the demo data, twice, and reads the table it writes."""

from __future__ import annotations

import csv

import numpy as np
from helpers import REPO, load_script, run_python

from fer_search.config import TrainConfig
from fer_search.tuning import curve_space

SCRIPT = REPO / "benchmarks" / "curves.py"
curves = load_script("curves")


def test_the_design_is_the_same_every_run_and_every_point_is_a_train_config() -> None:
    first, again = curve_space.design(32), curve_space.design(32)
    assert first == again and len({tuple(sorted(c.items())) for c in first}) == 32
    for config in first:
        TrainConfig.from_dict({**config, "model": "simple_cnn"})  # a valid configuration
    for name, choices in (("width", curve_space.WIDTHS), ("optimizer", curve_space.OPTIMIZERS)):
        assert {c[name] for c in first} == set(choices)  # space-filling: every choice is used
    sgd = [c["lr"] for c in first if c["optimizer"] == "sgd"]
    adamw = [c["lr"] for c in first if c["optimizer"] == "adamw"]
    assert np.median(sgd) > 5 * np.median(adamw)  # each optimiser's own learning-rate range


def test_the_training_subset_keeps_each_class_share() -> None:
    labels = np.repeat(np.arange(7), [4000, 400, 4000, 7000, 5000, 3000, 5000])
    keep = curves.stratified(labels, 2000)
    assert np.array_equal(keep, curves.stratified(labels, 2000))  # the same images every run
    shares = np.bincount(labels[keep], minlength=7) / len(keep)
    assert np.allclose(shares, np.bincount(labels) / len(labels), atol=0.002)


def test_the_collection_resumes_where_it_stopped(tmp_path) -> None:
    out = tmp_path / "curves.csv"
    args = [str(SCRIPT), "--data", "demo", "--out", str(out), "--configs", "1", "--epochs", "1",
            "--train-size", "200", "--repeats", "1", "--repeat-seeds", "2"]  # fmt: skip
    first = run_python(*args, "--budget-min", "0")  # one run, then its budget is spent
    assert first.returncode == 0, first.stderr[-2000:]
    assert "budget spent: 1 of 3 runs" in first.stdout
    again = run_python(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    with out.open() as file:
        rows = list(csv.DictReader(file))
    runs = [(r["config"], r["seed"]) for r in rows if r["epoch"] == "1"]
    assert sorted(runs) == [("0", "0"), ("0", "1"), ("0", "2")]  # each once, seeds 1, 2 too
    assert all(0.0 <= float(r["val_acc"]) <= 1.0 and float(r["epoch_s"]) > 0 for r in rows)
