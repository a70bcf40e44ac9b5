"""Faults injected into real searches on demo data: the search goes on and nothing is lost.

tuning.faults.FaultyTrainer makes chosen trials raise, diverge to NaN or have their worker
process killed mid-trial (the `fer-search` command run here builds one from FER_SEARCH_FAULT);
the searches here are small (simple_cnn width 8, a quarter of the demo data, 2-4 trials of 2-3
epochs, each starting its own local Ray with 2 CPUs).

The driver interrupted with SIGINT and finished with `--resume` is covered by
tests/test_search.py::test_interrupted_search_resumes_without_rerunning_finished_trials; an
unwritable results directory by tests/test_bad_input.py ("results root under a file",
"results root in /proc"); a full disk is here.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from helpers import one_line_error, run_fer_search, tiny_space

from fer_search.tuning.faults import FaultyTrainer, parse_faults
from fer_search.tuning.run import trainer_from_record


def search(tmp_path: Path, name: str, fault: str, *, trials: int, epochs: int, timeout=600):
    space = tmp_path / f"{name}.yaml"
    space.write_text(tiny_space("faults", trials=trials, epochs=epochs))
    argv = ["--space", str(space), "--data", "demo", "--demo-size", "0.25", "--no-asha"]
    argv += ["--storage", str(tmp_path / "results"), "--name", name, "--verbose", "0"]
    env = {"FER_SEARCH_FAULT": fault, "RAY_DEDUP_LOGS": "0"}
    proc = run_fer_search(*argv, env=env, drop_env=["RAY_"], timeout=timeout)
    return proc, tmp_path / "results" / name


def leaderboard(exp: Path) -> list[dict[str, str]]:
    with (exp / "leaderboard.csv").open() as f:
        return list(csv.DictReader(f))


def optuna_trials(exp: Path) -> dict[int, object]:
    """Optuna trial number -> FrozenTrial (the number is the fault's `trial=`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=exp.name, storage=f"sqlite:///{exp / 'optuna.db'}")
    return {t.number: t for t in study.trials}


def progress_epochs(trial_dir: Path) -> list[int]:
    with (trial_dir / "progress.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_fault_specs_parse_and_bad_ones_are_refused():
    spec = "raise:trial=0:epoch=2, nan:trial=1,kill:trial=2:epoch=2,raise:epoch=1"
    assert parse_faults(spec) == [
        ("raise", 0, 2),
        ("nan", 1, 0),
        ("kill", 2, 2),
        ("raise", None, 1),
    ]
    assert parse_faults("") == []
    for bad in ("explode:trial=1:epoch=1", "raise:trial=1", "nan:epoch=2", "kill:trial=x:epoch=1"):
        with pytest.raises(ValueError, match="fault spec"):
            parse_faults(bad)
        with pytest.raises(ValueError, match="fault spec"):  # in the driver, before any trial
            FaultyTrainer(bad)


def test_a_faulty_trainer_is_recorded_and_rebuilt_with_its_faults():
    trainer = FaultyTrainer("raise:trial=0:epoch=2,nan:trial=1")
    described = trainer.describe()
    assert described == {"kind": "engine", "faults": "raise:trial=0:epoch=2,nan:trial=1"}
    assert trainer_from_record({"trainer": described}) == trainer  # what resume() does


def test_failed_nan_and_killed_trials_do_not_stop_the_search(tmp_path):
    """Optuna trial 0 raises in epoch 2, trial 1 diverges, trial 2's worker is killed after
    epoch 2; trial 3 is clean. The search finishes, exits 0 and warns about two failures."""
    fault = "raise:trial=0:epoch=2,nan:trial=1,kill:trial=2:epoch=2"
    proc, exp = search(tmp_path, "faults", fault, trials=4, epochs=3)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "warning: 2 trial(s) failed" in proc.stderr
    assert "2 completed" in proc.stdout and "2 failed" in proc.stdout

    rows = {row["trial_id"]: row for row in leaderboard(exp)}
    trials = optuna_trials(exp)
    assert len(rows) == 4 and len(trials) == 4
    by_number = {n: rows[t.user_attrs["ray_trial_id"]] for n, t in trials.items()}

    # a trial whose training raises: failed, with the error; Optuna FAIL
    raised = by_number[0]
    assert raised["status"] == "failed"
    assert "RuntimeError: injected fault: raise at epoch 2" in raised["error"]
    assert int(raised["epochs"]) == 1  # epoch 1 was reported; the retry raised again
    assert trials[0].state.name == "FAIL"

    # a NaN loss: stopped as "nan" with the reason; Optuna FAIL; not retried (it would
    # diverge again): its trial ran once and reported only the failure
    diverged = by_number[1]
    assert diverged["status"] == "nan"
    assert diverged["error"].startswith("non-finite training loss at epoch 1")
    assert trials[1].state.name == "FAIL"
    lines = (exp / diverged["trial_dir"] / "result.json").read_text().splitlines()
    assert [json.loads(line)["failure"] for line in lines] == [diverged["error"]]

    # a killed worker: retried from its epoch-2 checkpoint; every epoch counted once
    killed = by_number[2]
    trial_dir = exp / killed["trial_dir"]
    # the worker's death is on record (Tune's error file: the retry started after it)
    assert "The actor died" in (trial_dir / "error.txt").read_text()
    assert killed["status"] == "completed" and killed["error"] == ""
    assert int(killed["epochs"]) == 3
    assert progress_epochs(trial_dir) == [1, 2, 3]  # a restart from scratch would repeat 1, 2
    results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in results] == [1, 2, 3]
    assert [r["training_iteration"] for r in results] == [1, 2, 3]
    assert trials[2].state.name == "COMPLETE"
    assert sorted(trials[2].intermediate_values) == [1, 2, 3]

    # the clean trial is untouched by the others' faults
    assert by_number[3]["status"] == "completed" and progress_epochs(
        exp / by_number[3]["trial_dir"]
    ) == [1, 2, 3]
    assert trials[3].state.name == "COMPLETE"

    # the search finished: final evaluation and report, on trials that reported epochs
    final = json.loads((exp / "final.json").read_text())
    assert final["best"]["trial_id"] in rows
    assert (exp / "report.md").is_file()
    assert f"tensorboard --logdir {exp / 'tensorboard'} --host 127.0.0.1" in proc.stdout
    assert json.loads((exp / "experiment.json").read_text())["finished"]


def test_every_trial_failing_exits_non_zero_with_the_reason(tmp_path):
    proc, exp = search(tmp_path, "allfail", "raise:epoch=1", trials=2, epochs=2)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "every trial failed" in proc.stderr
    rows = leaderboard(exp)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"failed"}
    assert all("injected fault: raise at epoch 1" in r["error"] for r in rows)
    assert {t.state.name for t in optuna_trials(exp).values()} == {"FAIL"}
    assert not (exp / "final.json").exists()  # nothing to evaluate, and nothing pretends


@pytest.fixture()
def full_disk(tmp_path):
    """A 1 MiB tmpfs holding a finished experiment, then filled to the last byte."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()[:200]}")
    try:
        old = mount / "results" / "old"
        old.mkdir(parents=True)
        (old / "leaderboard.csv").write_text("trial_id,status,val_acc\nabc,completed,0.61\n")
        try:
            with (mount / "filler").open("wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 65536)
        except OSError:  # ENOSPC: full
            pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_a_clear_error_before_the_search_starts(full_disk, tmp_path):
    results = full_disk / "results"
    before = sorted(p.name for p in results.rglob("*"))
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space("faults", trials=2, epochs=2))
    proc = run_fer_search(
        *["--space", str(space), "--data", "demo", "--demo-size", "0.25"],
        *["--storage", str(results), "--name", "new"],
        drop_env=["RAY_"],
        timeout=120,
    )
    error = one_line_error(proc)
    assert "MiB free" in error and str(results) in error
    assert sorted(p.name for p in results.rglob("*")) == before  # no half-made experiment
    assert "searching" not in proc.stdout + proc.stderr  # refused before Ray or any trial
