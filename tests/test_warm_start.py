"""`--warm-start`: earlier experiments' finished trials seed a new search's Optuna study, as
history for TPE, never as trials of the new search."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from helpers import tiny_space
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from fer_search.config import EMOTIONS
from fer_search.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)

# the earlier experiment's space: lr@adamw reached 0.1 there (the tiny space stops at 1e-2)
OLD = {
    "optimizer": CategoricalDistribution(["sgd", "adamw"]),
    "lr@sgd": FloatDistribution(0.003, 0.3, log=True),
    "lr@adamw": FloatDistribution(1e-4, 0.1, log=True),
    "dropout": FloatDistribution(0.0, 0.4),
    "momentum": FloatDistribution(0.8, 0.99),
}


def old_trial(state, value, params, curve=None, ray_id="t"):
    return create_trial(
        params=params,
        distributions={name: OLD[name] for name in params},
        value=value,
        state=state,
        intermediate_values=curve or {},
        user_attrs={"ray_trial_id": ray_id, "status": state.name.lower()},
    )


def experiment(tmp_path: Path, name: str, trials: list, **record) -> Path:
    """An earlier experiment's folder: optuna.db with `trials`, and its experiment.json."""
    exp = tmp_path / name
    exp.mkdir()
    study = optuna.create_study(
        study_name=name, storage=f"sqlite:///{exp / 'optuna.db'}", direction="maximize"
    )
    study.add_trials(trials)
    record = {"name": name, "metric": "val_acc", "mode": "max", "class_names": list(EMOTIONS),
              "data": "demo", "max_t": 3, **record}  # fmt: skip
    (exp / "experiment.json").write_text(json.dumps(record))
    return exp


def new_space(tmp_path: Path):
    from fer_search.space import load_space

    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space("tiny", trials=4))
    return load_space(str(path))


DATA = SimpleNamespace(class_names=EMOTIONS, source="demo")
ADAMW = {"optimizer": "adamw", "lr@adamw": 1e-3, "dropout": 0.1}
SGD = {"optimizer": "sgd", "lr@sgd": 0.01, "dropout": 0.2}


def seeded(tmp_path: Path, *sources: Path, name: str = "new") -> tuple[dict, optuna.Study, object]:
    """A new experiment `results/<name>` of the tiny space whose study `sources` seeded."""
    from fer_search.tuning.warm_start import check_sources, seed_study

    space = new_space(tmp_path)
    exp = tmp_path / "results" / name
    exp.mkdir(parents=True)
    summary = seed_study(exp, space, check_sources([str(s) for s in sources], space, DATA))
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{exp / 'optuna.db'}")
    return summary, study, space


def test_finished_trials_that_fit_the_space_are_copied_with_their_state_and_curve(tmp_path):
    exp1 = experiment(tmp_path, "exp1", [
        old_trial(TrialState.COMPLETE, 0.5, ADAMW, {1: 0.3, 2: 0.4, 3: 0.5}, "a"),
        old_trial(TrialState.PRUNED, 0.3, SGD, {1: 0.25, 2: 0.3}, "b"),
        old_trial(TrialState.FAIL, None, SGD, ray_id="c"),
        old_trial(TrialState.COMPLETE, 0.6, {**ADAMW, "lr@adamw": 0.05}, ray_id="d"),
        old_trial(TrialState.COMPLETE, 0.4, {**SGD, "momentum": 0.9}, ray_id="e"),
    ])  # fmt: skip
    exp2 = experiment(tmp_path, "exp2", [old_trial(TrialState.COMPLETE, 0.45, SGD, ray_id="a")])
    summary, study, _ = seeded(tmp_path, exp1, exp2)

    assert summary["trials"] == 3 and summary["experiments"] == ["exp1", "exp2"]
    assert summary["from"] == [str(exp1), str(exp2)]
    assert summary["skipped"] == {
        "failed": 1, "lr@adamw outside [0.0001, 0.01]": 1, "momentum not in the new space": 1
    }  # fmt: skip
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    by_origin = {t.user_attrs["warm_start_from"]: t for t in study.trials}
    assert set(by_origin) == {"exp1#0", "exp1#1", "exp2#0"}
    complete, pruned = by_origin["exp1#0"], by_origin["exp1#1"]
    assert complete.state == TrialState.COMPLETE and complete.value == 0.5
    assert complete.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}
    assert pruned.state == TrialState.PRUNED and pruned.value == 0.3
    assert pruned.intermediate_values == {1: 0.25, 2: 0.3}
    # the new space's distribution, so TPE sees one parameter, not the old wider one
    assert complete.distributions["lr@adamw"] == FloatDistribution(1e-4, 1e-2, log=True)
    # no ray_trial_id: the study's bookkeeping would take it for a trial of this search
    assert "ray_trial_id" not in complete.user_attrs
    assert complete.user_attrs["warm_start_ray_trial_id"] == "a"
    assert complete.user_attrs["status"] == "complete"


def test_a_warm_started_experiment_given_again_carries_no_trial_twice(tmp_path):
    exp1 = experiment(tmp_path, "exp1", [old_trial(TrialState.COMPLETE, 0.5, ADAMW)])
    first, _, _ = seeded(tmp_path, exp1, name="exp2")
    assert first["trials"] == 1
    exp2 = tmp_path / "results" / "exp2"  # its study holds a copy of exp1#0
    record = json.loads((exp1 / "experiment.json").read_text())
    (exp2 / "experiment.json").write_text(json.dumps({**record, "name": "exp2"}))
    again, study, _ = seeded(tmp_path, exp1, exp2, name="exp3")
    assert again["trials"] == 1
    assert [t.user_attrs["warm_start_from"] for t in study.trials] == ["exp1#0"]


@pytest.mark.parametrize(
    "record, needle",
    [
        ({"mode": "min", "metric": "val_loss"}, "selected on val_loss (min)"),
        ({"class_names": ["happy", "sad"]}, "classified 2 classes"),
    ],
)
def test_an_experiment_whose_values_do_not_compare_is_refused(tmp_path, record, needle):
    from fer_search.tuning.warm_start import check_sources

    exp1 = experiment(tmp_path, "exp1", [], **record)
    with pytest.raises(UserError, match="values do not compare") as err:
        check_sources([str(exp1)], new_space(tmp_path), DATA)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_other_data_or_epochs_are_used_with_a_note(tmp_path):
    from fer_search.tuning.warm_start import summary_line

    exp1 = experiment(tmp_path, "exp1", [old_trial(TrialState.COMPLETE, 0.5, ADAMW)],
                      data="fer2013.csv", max_t=30)  # fmt: skip
    summary, _, _ = seeded(tmp_path, exp1)
    assert summary["trials"] == 1
    assert summary["notes"] == ["exp1 searched other data (fer2013.csv)", "exp1 trained 30 epochs"]
    assert "note: exp1 searched other data" in summary_line(summary)


def test_summary_line_gives_the_counts_and_the_reasons():
    from fer_search.tuning.warm_start import summary_line

    summary = {"from": ["a", "b"], "trials": 12, "skipped": {"lr outside [0.0001, 0.01]": 3}}
    assert summary_line(summary) == (
        "warm start: 12 trials from 2 experiments; 3 skipped (3 lr outside [0.0001, 0.01])"
    )


def test_the_study_bookkeeping_and_the_importances_leave_copied_trials_alone(tmp_path):
    from fer_search.report.facts import optuna_importances
    from fer_search.tuning.study import close_study

    copies = [old_trial(TrialState.COMPLETE, 0.4 + i / 100, {**ADAMW, "dropout": i / 30},
                        ray_id="a") for i in range(10)]  # fmt: skip
    _, study, _ = seeded(tmp_path, experiment(tmp_path, "exp1", copies))
    own = study.ask({"dropout": FloatDistribution(0.0, 0.4)})
    own.set_user_attr("ray_trial_id", "a")  # the same Ray id as the copies had
    counts = close_study(tmp_path / "results" / "new", [row_of("a")], "val_acc")
    assert counts == {"told": 1, "resumed": 0, "not_started": 0}
    study = optuna.load_study(study_name="new", storage=study._storage)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 11
    _, used = optuna_importances(tmp_path / "results" / "new" / "optuna.db", "new")
    assert used == 1  # its own trial only


def row_of(trial_id: str) -> dict:
    return {"trial_id": trial_id, "status": "completed", "val_acc": 0.5, "epochs": 3,
            "best_epoch": 3, "error": "", "trial_dir": f"trial_{trial_id}"}  # fmt: skip


def test_tpe_samples_from_the_carried_trials_at_once(tmp_path):
    """With the carried trials TPE skips its random start-up: its first trial takes the
    optimiser of the good ones (the same sampler on an empty study draws sgd by the third)."""
    from fer_search.space import define_by_run
    from fer_search.tuning.tuner import default_sampler

    good = [old_trial(TrialState.COMPLETE, 0.6 + i / 100, {**ADAMW, "dropout": 0.3})
            for i in range(5)]  # fmt: skip
    bad = [old_trial(TrialState.COMPLETE, 0.2 + i / 100, SGD) for i in range(5)]
    _, study, space = seeded(tmp_path, experiment(tmp_path, "exp1", good + bad))
    study.sampler = default_sampler(seed=0, num_samples=6, concurrent=1)
    for _ in range(5):
        trial = study.ask()
        define_by_run(space)(trial)
        assert trial.params["optimizer"] == "adamw"
        study.tell(trial, state=TrialState.FAIL)


@pytest.mark.slow  # two real searches (~80 s): the unit tests above cover the rules in CI
def test_a_search_warm_started_from_another_runs_its_own_trials_after_the_carried_ones(tmp_path):
    import csv

    from helpers import run_fer_search

    space, results = tmp_path / "tiny.yaml", tmp_path / "results"
    space.write_text(tiny_space("tiny", trials=3, epochs=2))

    def search(name: str, *more: str):
        args = ["--space", str(space), "--data", "demo", "--demo-size", "0.5", "--name", name,
                "--storage", str(results), "--verbose", "0", "--no-final-eval", *more]  # fmt: skip
        proc = run_fer_search(*args, env={"RAY_DEDUP_LOGS": "0"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    search("first")
    proc = search("second", "--warm-start", str(results / "first"), "--num-samples", "2")
    assert "warm start: 3 trials from 1 experiment" in proc.stderr

    first, second = results / "first", results / "second"
    study = optuna.load_study(study_name="second", storage=f"sqlite:///{second / 'optuna.db'}")
    carried = [t for t in study.trials if "warm_start_from" in t.user_attrs]
    own = [t for t in study.trials if "ray_trial_id" in t.user_attrs]
    assert sorted(t.user_attrs["warm_start_from"] for t in carried) == [
        "first#0", "first#1", "first#2"
    ]  # fmt: skip
    assert len(own) == 2 and len(study.trials) == 5  # num_samples of its own, none taken
    with (second / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["trial_id"] for r in rows} == {t.user_attrs["ray_trial_id"] for t in own}
    record = json.loads((second / "experiment.json").read_text())
    assert record["warm_start"]["from"] == [str(first)] and record["warm_start"]["trials"] == 3
    report = (second / "report.md").read_text()
    assert "Warm start: 3 finished trials carried over from" in report


def test_the_api_takes_one_folder_or_a_list_and_names_a_bad_one(tmp_path):
    from fer_search.tuning import SearchOptions

    exp1 = experiment(tmp_path, "exp1", [])
    assert SearchOptions.from_overrides({"warm_start": exp1}).warm_start == [str(exp1)]
    assert SearchOptions.from_overrides({"warm_start": [str(exp1)]}).warm_start == [str(exp1)]
    (exp1 / "optuna.db").unlink()
    with pytest.raises(
        UserError, match=r"'.*exp1' is not a fer-search experiment \(no optuna.db\)"
    ):
        SearchOptions.from_overrides({"warm_start": [str(exp1)]})


def test_one_file_reached_by_two_paths_is_the_same_data(tmp_path, monkeypatch):
    from fer_search.tuning.warm_start import same_source

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    assert same_source(str(tmp_path / "shared" / "fer2013.csv"), "../shared/fer2013.csv")
    assert not same_source(str(tmp_path / "shared" / "fer2013.csv"), "../shared/other.csv")
    assert not same_source("demo", "../shared/fer2013.csv") and same_source("demo", "demo")
