"""What a user watches: the Optuna study left in final states (optuna-dashboard), fer-search's
own TensorBoard runs read back with TensorBoard's reader, and a time-budget-cut search."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import run_fer_search, tiny_space
from tensorboard_logs import read_runs

optuna = pytest.importorskip("optuna")
pytest.importorskip("ray.tune")


# ---------------------------------------------------------------- the study
def study_with(tmp_path: Path, ray_ids: list[str]):
    """optuna.db in an experiment folder named `exp`, one RUNNING trial per Ray id, each with
    two reported epochs (as the searcher leaves trials the time budget cuts)."""
    exp = tmp_path / "exp"
    exp.mkdir()
    study = optuna.create_study(
        study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}", direction="maximize"
    )
    for ray_id in ray_ids:
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        trial.set_user_attr("ray_trial_id", ray_id)
        trial.report(0.3, 1)
        trial.report(0.4, 2)
    return exp


def row(trial_id: str, status: str, val_acc: float = 0.4, epochs: int = 2) -> dict:
    return {"trial_id": trial_id, "status": status, "val_acc": val_acc, "epochs": epochs,
            "best_epoch": epochs, "error": "", "trial_dir": f"trial_{trial_id}"}  # fmt: skip


def test_close_study_leaves_every_trial_in_the_state_the_leaderboard_gives(tmp_path):
    from fer_search.tuning.study import close_study

    exp = study_with(tmp_path, ["a", "b", "c", "d", "e"])
    rows = [
        row("a", "completed", 0.5),
        row("b", "pruned"),
        row("c", "failed"),
        row("d", "unfinished"),
    ]  # fmt: skip  ("e": asked by the searcher, never run)
    counts = close_study(exp, rows, "val_acc")
    assert counts == {"told": 4, "resumed": 0, "not_started": 1}
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert study.metric_names == ["val_acc"]
    states = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert {k: t.state.name for k, t in states.items()} == {
        "a": "COMPLETE", "b": "PRUNED", "c": "FAIL", "d": "FAIL", "e": "FAIL"
    }  # fmt: skip
    assert states["a"].value == 0.5 and states["b"].value == 0.4  # PRUNED: its last epoch
    assert states["b"].user_attrs["stopped_by"] == "time budget"
    assert rows[1]["stopped_by"] == "time budget"  # the leaderboard learns it too
    assert states["d"].user_attrs["status"] == "unfinished"
    assert states["e"].user_attrs["status"] == "not started"


def test_a_trial_finished_after_a_resume_is_recorded_again(tmp_path):
    from fer_search.tuning.study import close_study

    exp = study_with(tmp_path, ["a"])
    close_study(exp, [row("a", "unfinished")], "val_acc")  # the search was interrupted
    (exp / "trial_a").mkdir()
    (exp / "trial_a" / "progress.csv").write_text("epoch,val_acc\n1,0.3\n2,0.4\n3,0.6\n")
    again = row("a", "completed", 0.6, epochs=3)
    assert close_study(exp, [again], "val_acc")["resumed"] == 1
    assert close_study(exp, [again], "val_acc")["resumed"] == 0  # only once
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}")
    first, second = study.trials
    assert first.state.name == "FAIL" and second.state.name == "COMPLETE"
    assert second.value == 0.6 and second.params == first.params
    assert second.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.6}
    assert second.user_attrs["resumed_from"] == first.number


def test_the_study_records_the_refits_and_the_test_figures(tmp_path):
    from fer_search.tuning.study import close_study, record_outcome

    exp = study_with(tmp_path, ["a"])
    close_study(exp, [row("a", "completed", 0.5)], "val_acc")
    refit = {"members": [{"id": "refit", "from_trial": "a", "epochs": 9, "config": {}}]}
    final = {"best": {"trial_id": "refit", "val_acc": 0.55, "test_acc": 0.52,
                      "test_acc_ci95": [0.5, 0.54]}}  # fmt: skip
    record_outcome(exp, [row("refit", "completed", 0.55, 9), row("a", "completed")], refit, final)
    attrs = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}").user_attrs
    assert attrs["refit"] == [
        {"id": "refit", "from_trial": "a", "from_number": 0, "epochs": 9, "val_acc": 0.55}
    ]
    assert attrs["final_model"] == "refit" and attrs["final_test_acc"] == 0.52
    assert attrs["final_test_acc_ci95"] == [0.5, 0.54]


def progress(exp: Path, trial_id: str, rows: str) -> None:
    (exp / f"trial_{trial_id}").mkdir(parents=True)
    (exp / f"trial_{trial_id}" / "progress.csv").write_text(rows)


def test_a_trial_closed_after_the_fact_ends_when_its_last_result_came(tmp_path):
    import datetime as dt

    from fer_search.tuning.study import close_study

    exp = study_with(tmp_path, ["a"])
    progress(exp, "a", "epoch,val_acc,timestamp,time_total_s\n1,0.3,1700000000,60\n")
    close_study(exp, [row("a", "pruned", 0.3, epochs=1)], "val_acc")  # cut by a time budget
    (trial,) = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}").trials
    assert trial.datetime_complete == dt.datetime.fromtimestamp(1700000000)  # not the close's


def test_a_refit_is_a_trial_of_its_own_that_the_study_names_best(tmp_path):
    from fer_search.tuning.study import REFIT_OF, close_study, record_outcome

    exp = study_with(tmp_path, ["a", "b"])
    close_study(exp, [row("a", "completed", 0.5), row("b", "completed", 0.45)], "val_acc")
    refit = {"members": [{"id": "refit", "from_trial": "b", "epochs": 4, "config": {}}]}
    refit_row = {**row("refit", "completed", 0.6, epochs=4), "trial_dir": "refit/trial_refit"}
    (exp / "refit").mkdir()
    progress(exp / "refit", "refit", "epoch,val_acc,timestamp,time_total_s\n"
             "1,0.5,1700000010,5\n4,0.6,1700000040,35\n")  # fmt: skip
    for _ in range(2):  # an upgrade records the outcome again: the refit is added once
        record_outcome(exp, [refit_row, row("a", "completed", 0.5)], refit, {"best": {}})
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}")
    (added,) = [t for t in study.trials if REFIT_OF in t.user_attrs]
    source = next(t for t in study.trials if t.user_attrs["ray_trial_id"] == "b")
    assert study.best_trial.number == added.number and added.value == 0.6
    assert added.user_attrs[REFIT_OF] == source.number and added.params == source.params
    assert added.intermediate_values == {1: 0.5, 4: 0.6}
    assert added.duration is not None and added.duration.total_seconds() == 35


def test_constraints_and_costs_are_where_optuna_dashboard_reads_them(tmp_path):
    from fer_search.tuning._optuna_compat import DASHBOARD_CONSTRAINTS
    from fer_search.tuning.study import Objectives, close_study

    exp = study_with(tmp_path, ["big", "small"])
    limits = Objectives(("val_acc",), (("max_params", 1e6),))
    rows = [{**row("big", "completed"), "params": 3e6}, {**row("small", "pruned"), "params": 5e5}]
    close_study(exp, rows, "val_acc", objectives=limits)
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}")
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert by_id["big"].system_attrs[DASHBOARD_CONSTRAINTS] == [2e6]  # over the cap
    assert by_id["small"].system_attrs[DASHBOARD_CONSTRAINTS] == [-5e5]
    assert by_id["small"].user_attrs["params"] == 5e5  # a pruned trial keeps its cost too


# ---------------------------------------------------------------- TensorBoard
def test_tensorboard_runs_hold_short_tags_and_only_the_sampled_parameters(tmp_path):
    from fer_search.space import load_space
    from fer_search.tuning import tensorboard as tb

    space = load_space("demo")
    sampled = {p.setting for p in space.params if p.kind != "fixed"}
    root = tmp_path / "tensorboard"
    tb.write_experiment_config(root, space)
    names = tb.RunNames(space)
    logger = tb.TensorBoardLogger(root, names)
    config = {"trial_number": 3, "optimizer": "sgd", "lr@sgd": 0.05, "dropout": 0.2,
              "width": 8, "hflip": 0.5, "crop_pad": 2, "epochs": 5}  # fmt: skip
    trial = SimpleNamespace(trial_id="abc123", config=config)
    for epoch, acc in ((1, 0.3), (2, 0.5)):
        result = {"epoch": epoch, "val_acc": acc, "best_val_acc": acc, "val_loss": 1.0 / epoch,
                  "train_loss": 1.5, "train_acc": 0.4, "lr": 0.05, "images_per_s": 900.0,
                  "done": False, "time_this_iter_s": 1.0}  # fmt: skip
        logger.on_trial_result(epoch, [], trial, result)
    runs = read_runs(root)
    run = runs["trial_003_abc123"]
    assert set(run["scalars"]) == set(tb.SCALARS.values())  # no Ray bookkeeping
    assert {s.split("/")[0] for s in run["scalars"]} == {"train", "val"}
    assert run["scalars"]["val/acc"] == [(1, pytest.approx(0.3)), (2, pytest.approx(0.5))]
    assert run["hparams"]["status"] == "running"  # live: a row from the first epoch
    assert set(run["hparams"]) - {"status"} <= sampled
    assert run["hparams"]["lr"] == pytest.approx(0.05) and run["hparams"]["optimizer"] == "sgd"
    assert "." not in runs  # the columns sit in the first trial's run, not an empty one
    hparam_names, metrics = run["experiment"]
    assert metrics[0] == "val/best_acc" and "status" in hparam_names
    assert set(hparam_names) - {"status"} == sampled
    integers = {p.setting for p in space.params if p.kind == "int"}
    assert integers and all(run["types"][name][1][0] == "interval" for name in integers)
    assert run["status"] == "STATUS_RUNNING"  # what TensorBoard's Status filter reads

    logger.on_experiment_end([])
    from fer_search.tuning.results import LeaderboardRow

    end = LeaderboardRow({**row("abc123", "pruned"), "stopped_by": "time budget"}, config=config)
    assert tb.finish_runs(root, [end], names) == 1
    again = read_runs(root)["trial_003_abc123"]
    assert again["hparams"]["status"] == "time budget"  # the final status replaced it
    assert again["status"] == "STATUS_SUCCESS" and again["experiment"] == run["experiment"]
    assert len(list((root / "trial_003_abc123").glob("*.hparams"))) == 1


def test_refit_runs_sit_beside_their_trial_and_name_it():
    from fer_search.space import load_space
    from fer_search.tuning.refit import refit_run_names

    space = load_space("demo")
    from fer_search.tuning.results import LeaderboardRow

    rows = [LeaderboardRow({"trial_id": "abc"}, config={"trial_number": 7})]
    member = {"id": "refit2", "from_trial": "abc", "epochs": 4, "config": {"dropout": 0.1}}
    names = refit_run_names(space, {"members": [member]}, rows)
    run, hparams = names("refit2", {"refit_member": 0})
    assert run == "trial_007_abc_refit2"
    assert hparams == {"dropout": 0.1, "refit_of": "trial_007_abc"}


# ---------------------------------------------------------------- end to end
def test_a_search_cut_by_its_time_budget_leaves_no_trial_running(tmp_path):
    space = tmp_path / "cut.yaml"
    space.write_text(tiny_space("cut", trials=4, epochs=60, time_budget=25, grace_period=30))
    proc = run_fer_search(
        "--space", str(space), "--data", "demo", "--demo-size", "0.5",
        "--storage", str(tmp_path), "--name", "cut", "--verbose", "0", "--no-final-eval",
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "cut"
    import pandas as pd

    board = pd.read_csv(exp / "leaderboard.csv").fillna("")
    cut = board[board["stopped_by"] == "time budget"]
    assert len(cut) >= 1 and set(cut["status"]) == {"pruned"}
    study = optuna.load_study(study_name="cut", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert study.metric_names == ["val_acc"]
    assert "RUNNING" not in {t.state.name for t in study.trials}
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    for trial_id in cut["trial_id"]:
        assert by_id[trial_id].state.name == "PRUNED"
        assert by_id[trial_id].user_attrs["stopped_by"] == "time budget"
    runs = read_runs(exp / "tensorboard")
    statuses = {name.rsplit("_", 1)[-1]: r["hparams"]["status"] for name, r in runs.items()
                if r["hparams"]}  # fmt: skip
    assert {statuses[t] for t in cut["trial_id"]} == {"time budget"}
    assert json.loads((exp / "experiment.json").read_text())["name"] == "cut"


def test_upgrade_closes_an_old_study_and_rebuilds_tensorboard(tmp_path):
    """An experiment written before fer-search logged its own TensorBoard runs and closed
    its study: `report --upgrade` brings it up to date (the committed reference run)."""
    import shutil

    source = Path(__file__).resolve().parents[1] / "results" / "reference"
    if not (source / "optuna.db").is_file():
        pytest.skip("results/reference is not in this checkout")
    exp = tmp_path / "reference-run4"
    shutil.copytree(source, exp, ignore=shutil.ignore_patterns("tensorboard", "*.png", "best"))
    proc = run_fer_search("report", str(exp), "--upgrade", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((exp / "experiment.json").read_text())
    study = optuna.load_study(study_name=record["name"], storage=f"sqlite:///{exp / 'optuna.db'}")
    assert "RUNNING" not in {t.state.name for t in study.trials}
    runs = read_runs(exp / "tensorboard")
    import pandas as pd

    board = pd.read_csv(exp / "leaderboard.csv")
    assert len([r for r in runs if r != "."]) == len(board)
    assert all(r["scalars"].get("val/acc") for name, r in runs.items() if name != ".")
