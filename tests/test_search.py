"""The search: Optuna bookkeeping driven with fake results, resource planning, and real
end-to-end searches on demo data (each starts its own local Ray with 2 CPUs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import REPO, one_line_error, run_fer_search, tiny_space

from fer_search.errors import UserError


def write_space(tmp_path: Path, num_samples: int) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space("tiny", trials=num_samples))
    return path


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_fer_search(*args, env={"RAY_DEDUP_LOGS": "0"}, timeout=timeout)


# ---------------------------------------------------------------- Optuna bookkeeping
@pytest.fixture()
def searcher():
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("ray.tune.search.optuna")
    from fer_search.space import load_space
    from fer_search.tuning.optuna_searcher import PruningOptunaSearch, SpaceSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("demo")
    return PruningOptunaSearch(
        space=SpaceSampler(space),
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_t=4,
    )


def study_of(searcher):
    from fer_search.tuning._ray_compat import optuna_search_study

    return optuna_search_study(searcher)


def feed(searcher, trial_id: str, values: list[float]) -> dict:
    result = {}
    for epoch, value in enumerate(values, start=1):
        result = {"val_acc": value, "epoch": epoch, "training_iteration": epoch}
        searcher.on_trial_result(trial_id, result)
    return result


def test_asha_stopped_trial_is_pruned_with_intermediate_values(searcher):
    from optuna.trial import TrialState

    config = searcher.suggest("a")
    assert "lr" in config and not any("@" in key for key in config)  # 'lr@sgd' -> 'lr'
    last = feed(searcher, "a", [0.2, 0.3])
    searcher.on_trial_complete("a", last)  # ASHA stopped it at epoch 2 of 4
    trial = study_of(searcher).trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.2, 2: 0.3}
    assert trial.user_attrs["ray_trial_id"] == "a"


def test_finished_trial_is_complete_with_its_best_value(searcher):
    from optuna.trial import TrialState

    searcher.suggest("b")
    last = feed(searcher, "b", [0.2, 0.5, 0.4, 0.45])
    searcher.on_trial_complete("b", last)
    trial = study_of(searcher).trials[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.value == pytest.approx(0.5)


def test_failed_trial_is_fail_even_after_reporting(searcher):
    from optuna.trial import TrialState

    searcher.suggest("c")
    last = feed(searcher, "c", [0.3])
    searcher.on_trial_complete("c", last, error=True)
    assert study_of(searcher).trials[0].state == TrialState.FAIL


def test_restored_trial_repeating_an_epoch_is_not_reported_twice(searcher):
    searcher.suggest("d")
    feed(searcher, "d", [0.2, 0.3])
    searcher.on_trial_result("d", {"val_acc": 0.31, "epoch": 2})  # replayed after a restore
    assert study_of(searcher).trials[0].intermediate_values[2] == pytest.approx(0.3)


def test_searcher_pickles_for_tune_checkpoints(searcher, tmp_path):
    searcher.suggest("e")
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    assert path.stat().st_size > 0


# ---------------------------------------------------------------- resources
def plan(cluster: dict[str, float], **flags):
    from fer_search.space import ExperimentSettings
    from fer_search.tuning.resources import plan_resources

    return plan_resources(flags.pop("gpus", None), ExperimentSettings(**flags), cluster)


def test_plan_cpu_only_cluster_runs_on_cpu():
    got = plan({"CPU": 2.0}, cpus_per_trial=1, gpus_per_trial=0.5)
    assert got["device"] == "cpu" and got["gpus_per_trial"] == 0 and got["max_concurrent"] == 2


def test_plan_fractional_gpus_limit_concurrency():
    got = plan({"CPU": 16.0, "GPU": 2.0}, cpus_per_trial=2, gpus_per_trial=0.25)
    assert got["device"] == "cuda" and got["max_concurrent"] == 8
    got = plan({"CPU": 16.0, "GPU": 4.0}, gpus=1, cpus_per_trial=2, gpus_per_trial=0.5)
    assert got["max_concurrent"] == 2  # --gpus 1 uses one of the four


def test_plan_refuses_more_gpus_than_the_cluster_has():
    with pytest.raises(UserError, match="--gpus 4 .* has 0"):
        plan({"CPU": 2.0}, gpus=4)
    with pytest.raises(UserError, match="cpus_per_trial=8"):
        plan({"CPU": 2.0}, cpus_per_trial=8)


# ---------------------------------------------------------------- CLI errors before any work
def test_gpus_on_a_machine_without_them_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = cli(
        "--space", "densenet.yaml", "--gpus", "4", "--storage", str(tmp_path), "--data", "demo"
    )
    line = one_line_error(proc)
    assert "--gpus 4" in line and "has 0" in line
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--space", "densnet"], "did you mean 'densenet'"),
        (["--space", "demo", "--num-samples", "0"], "--num-samples"),
        (["--space", "demo", "--gpus-per-trial", "1.5"], "--gpus-per-trial"),
        (["--resume", "."], "not a fer-search experiment"),
        (["--space", "demo", "--refit-budget", "-1"], "--refit-budget must be >= 0"),
        (["--space", "demo", "--refit-top-k", "0"], "--refit-top-k must be >= 1"),
        (
            ["--space", "demo", "--time-budget", "50", "--refit-budget", "60"],
            "--refit-budget=60 must be less than time_budget=50",
        ),
        ([], "no search space"),
        (["--space", "demo", "--warm-start", "no-such-dir"], "'no-such-dir' does not exist"),
        (["--space", "demo", "--warm-start", "."], "not a fer-search experiment (no optuna.db"),
        (["--resume", ".", "--warm-start", "."], "--warm-start seeds a new search"),
        (["--space", "demo", "--scheduler", "hyperbnd"], "did you mean 'hyperband'"),
        (["--space", "demo", "--no-asha", "--scheduler", "median"], "--no-asha means"),
        (
            ["--space", "demo", "--scheduler", "hyperband", "--reduction-factor", "1"],
            "--reduction-factor must be >= 2, got 1",
        ),
    ],
)
def test_search_bad_input_is_one_line(tmp_path, args, needle):
    proc = cli(*(args or ["--data", "demo"]), "--storage", str(tmp_path))
    assert needle in one_line_error(proc)


# ---------------------------------------------------------------- the refit
def refit_candidate(epoch_s=10.0, **overrides):
    from fer_search.tuning.results import LeaderboardRow

    columns = {"trial_id": "t1", "status": "completed", "val_acc": 0.6, "epochs": 4}
    config = {"lr": 0.05, "epochs": 4, "trial_number": 0}
    return LeaderboardRow({**columns, **overrides}, config=config, epoch_s=epoch_s)


def test_refit_epochs_fill_the_time_at_the_measured_pace():
    from fer_search.tuning.refit import refit_epochs

    assert refit_epochs(refit_candidate(), 95.0) == 9
    assert refit_epochs(refit_candidate(), 45.0) == 0  # no longer than the trial was
    assert refit_epochs(refit_candidate(epoch_s=float("nan")), 95.0) == 0


def test_plan_refit_takes_the_best_selectable_trial_and_the_time_left(caplog):
    from fer_search.space import load_space_dict
    from fer_search.tuning.refit import plan_refit

    caplog.set_level("INFO", logger="fer_search")  # it logs (the CLI shows INFO records)

    space = load_space_dict(
        {"experiment": {"time_budget": 200, "refit_budget": 100}, "params": {"lr": 0.1}}
    )
    rows = [
        refit_candidate(trial_id="bad", status="failed", val_acc=0.9),
        refit_candidate(),
        refit_candidate(trial_id="t2", val_acc=0.5),
    ]
    plan = plan_refit(rows, space, elapsed=80.0)
    assert plan == {
        "members": [
            {"id": "refit", "from_trial": "t1", "epochs": 12,
             "config": {"lr": 0.05, "epochs": 4}},
        ],
        "resources": None,
        "done": False,
    }  # fmt: skip
    assert "refit: training trial t1's configuration again for 12 epochs" in caplog.text
    caplog.clear()
    assert plan_refit(rows, space, elapsed=170.0) is None  # 30 s left: 3 epochs, not > 4
    assert "no refit" in caplog.text
    no_refit = load_space_dict({"experiment": {"time_budget": 200}, "params": {"lr": 0.1}})
    assert plan_refit(rows, no_refit, elapsed=0.0) is None


def test_plan_refit_of_the_top_two_shares_the_search_resources():
    from fer_search.space import load_space_dict
    from fer_search.tuning.refit import plan_refit

    experiment = {"time_budget": 300, "refit_budget": 200, "refit_top_k": 2}
    space = load_space_dict({"experiment": experiment, "params": {"lr": 0.1}})
    rows = [refit_candidate(), refit_candidate(trial_id="t2", val_acc=0.5, epoch_s=5.0)]
    one_at_a_time = {"cpus_per_trial": 2, "gpus_per_trial": 0, "max_concurrent": 1}
    plan = plan_refit(rows, space, elapsed=100.0, plan=one_at_a_time)
    assert plan is not None and plan["resources"] == {"cpu": 1.0, "gpu": 0.0}
    members = plan["members"]
    assert [m["id"] for m in members] == ["refit", "refit2"]
    assert [m["from_trial"] for m in members] == ["t1", "t2"]
    # 200 s at twice each trial's measured pace (half the CPUs each)
    assert [m["epochs"] for m in members] == [10, 20]
    assert all(m["config"]["threads"] == 1 for m in members)


def test_refit_share_gives_each_refit_a_trial_when_there_is_room():
    from fer_search.tuning.refit import refit_share

    four_gpus = {"cpus_per_trial": 4, "gpus_per_trial": 1, "max_concurrent": 4}
    assert refit_share(four_gpus, 2) == ({"cpu": 4.0, "gpu": 1.0}, 1.0)
    one_gpu = {"cpus_per_trial": 4, "gpus_per_trial": 1, "max_concurrent": 1}
    assert refit_share(one_gpu, 2) == ({"cpu": 2.0, "gpu": 0.5}, 2.0)
    two_cpus = {"cpus_per_trial": 2, "gpus_per_trial": 0, "max_concurrent": 1}
    assert refit_share(two_cpus, 3) == ({"cpu": 1.0, "gpu": 0.0}, 2.0)  # never below one CPU


def test_a_lone_cpu_refit_gets_the_cpus_of_all_the_concurrent_trials():
    from fer_search.tuning.refit import THREAD_SCALING, refit_share

    two_one_cpu_trials = {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent": 2}
    resources, slowdown = refit_share(two_one_cpu_trials, 1)
    assert resources == {"cpu": 2.0, "gpu": 0.0}
    assert slowdown == pytest.approx(2**-THREAD_SCALING) and 0.5 < slowdown < 1.0
    three_two_cpu_trials = {"cpus_per_trial": 2, "gpus_per_trial": 0, "max_concurrent": 3}
    assert refit_share(three_two_cpu_trials, 2)[0] == {"cpu": 3.0, "gpu": 0.0}
    two_gpu_trials = {"cpus_per_trial": 4, "gpus_per_trial": 1, "max_concurrent": 2}
    assert refit_share(two_gpu_trials, 1) == ({"cpu": 4.0, "gpu": 1.0}, 1.0)


def test_refit_members_reads_an_experiment_from_before_refit_top_k():
    from fer_search.tuning.refit import refit_members

    old = {"from_trial": "t1", "epochs": 9, "config": {"lr": 0.1}, "done": True}
    assert refit_members(old) == [{"id": "refit", "from_trial": "t1", "epochs": 9,
                                   "config": {"lr": 0.1}}]  # fmt: skip


# ---------------------------------------------------------------- end to end
def demo_search_args(space: Path, results: Path, name: str, demo_size: str) -> list[str]:
    """`fer-search` arguments for a quiet search of `space` on demo data into results/name."""
    return [
        "--space",
        str(space),
        "--data",
        "demo",
        "--demo-size",
        demo_size,
        "--storage",
        str(results),
        "--name",
        name,
        "--verbose",
        "0",
    ]


def read_rows(exp: Path) -> list[dict[str, str]]:
    import csv

    with (exp / "leaderboard.csv").open() as f:
        return list(csv.DictReader(f))


def test_search_end_to_end_on_demo_data(tmp_path):
    space = write_space(tmp_path, num_samples=6)
    proc = cli(*demo_search_args(space, tmp_path / "results", "e2e", "0.5"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "results" / "e2e"
    rows = read_rows(exp)
    assert len(rows) == 6 and len({r["trial_id"] for r in rows}) == 6
    statuses = {r["status"] for r in rows}
    assert statuses <= {"completed", "pruned"} and "completed" in statuses
    assert sum(int(r["epochs"]) for r in rows) <= 6 * 3
    accs = [float(r["val_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    for row in rows:  # each trial's best epoch with its interval (the engine's, reported)
        assert float(row["val_acc_ci95_lo"]) <= float(row["val_acc"])
        assert float(row["val_acc"]) <= float(row["val_acc_ci95_hi"])

    # Optuna's view agrees with the leaderboard: PRUNED exactly where ASHA stopped a trial
    import optuna

    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{exp / 'optuna.db'}")
    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(by_ray_id) == {r["trial_id"] for r in rows}
    for row in rows:
        state = by_ray_id[row["trial_id"]].state.name
        assert state == {"completed": "COMPLETE", "pruned": "PRUNED"}[row["status"]]

    # fer-search's own TensorBoard runs (Ray's are off), per-trial progress; the final
    # evaluation and the report
    from tensorboard_logs import read_runs

    runs = read_runs(exp / "tensorboard")
    assert {run.rsplit("_", 1)[-1] for run in runs if run != "."} == {r["trial_id"] for r in rows}
    assert not list(exp.glob("trial_*/events.out.tfevents.*"))
    for row in rows:
        assert (exp / row["trial_dir"] / "progress.csv").is_file()
    final = json.loads((exp / "final.json").read_text())
    assert final["best"]["trial_id"] == rows[0]["trial_id"]
    assert final["best"]["val_acc"] == pytest.approx(float(rows[0]["val_acc"]), abs=1e-6)
    # read from the val probabilities the trial stored: the same images right as it reported
    ci = [float(rows[0]["val_acc_ci95_lo"]), float(rows[0]["val_acc_ci95_hi"])]
    assert final["best"]["val_acc_ci95"] == pytest.approx(ci, abs=1e-9)
    assert "PublicTest" in final["selection"] and final["ensemble"]["k"] == 2
    assert (exp / "best" / "best.pt").is_file() and (exp / "confusion_test.png").is_file()
    report = (exp / "report.md").read_text()
    assert rows[0]["trial_id"] in report
    number = json.loads((exp / rows[0]["trial_dir"] / "params.json").read_text())["trial_number"]
    assert f"| 1 | `{rows[0]['trial_id']}` #{number} |" in report and "% (95 % CI " in report
    assert "best" in proc.stdout and "report:" in proc.stdout
    assert f"best {rows[0]['trial_id']} at epoch " in proc.stdout
    assert "] (95 % interval); results in" in proc.stdout

    # the best checkpoint is a plain fer-search checkpoint: `evaluate` reads it
    evaluated = cli(
        "evaluate",
        "--checkpoint",
        str(exp / "best" / "best.pt"),
        "--data",
        "demo",
        "--demo-size",
        "0.5",
        "--split",
        "val",
        "--out",
        str(tmp_path / "ev"),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "ev" / "eval-val.json").read_text())
    assert metrics["accuracy"] == pytest.approx(final["best"]["val_acc"], abs=1e-6)

    # an existing experiment is never overwritten
    again = cli(
        "--space",
        str(space),
        "--data",
        "demo",
        "--storage",
        str(tmp_path / "results"),
        "--name",
        "e2e",
    )
    assert "already exists" in one_line_error(again)
    assert read_rows(exp) == rows


def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path):
    space = write_space(tmp_path, num_samples=5)
    exp = tmp_path / "results" / "resume"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fer_search",
            *demo_search_args(space, tmp_path / "results", "resume", "0.5"),
            "--max-concurrent",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(exp.glob("trial_*"))) < 2:
        time.sleep(0.5)  # one trial at a time: a second trial directory means the first ended
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "--resume" in err
    first = {r["trial_id"]: r for r in read_rows(exp)}
    done_before = {t for t, r in first.items() if r["status"] in ("completed", "pruned")}
    assert done_before and len(done_before) < 5
    import optuna

    storage = f"sqlite:///{exp / 'optuna.db'}"
    interrupted = optuna.load_study(study_name="resume", storage=storage).trials
    assert "RUNNING" not in {t.state.name for t in interrupted}  # closed as unfinished
    unfinished = {t.user_attrs["ray_trial_id"] for t in interrupted
                  if t.user_attrs.get("status") == "unfinished"}  # fmt: skip
    assert unfinished == {t for t, r in first.items() if r["status"] == "unfinished"}

    resumed = cli("--resume", str(exp), "--verbose", "0")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_rows(exp)
    assert len(rows) == 5 and len({r["trial_id"] for r in rows}) == 5
    for trial_id in done_before:  # finished trials kept their results and were not rerun
        again = next(r for r in rows if r["trial_id"] == trial_id)
        assert again["epochs"] == first[trial_id]["epochs"]
        assert float(again["time_s"]) == pytest.approx(float(first[trial_id]["time_s"]))
    # every trial in its final state; one an interrupted search left unfinished and the
    # resumed one finished is recorded again, pointing back (Optuna cannot reopen a trial)
    trials = optuna.load_study(study_name="resume", storage=storage).trials
    assert "RUNNING" not in {t.state.name for t in trials}
    latest = {t.user_attrs["ray_trial_id"]: t for t in sorted(trials, key=lambda t: t.number)}
    assert set(latest) == {r["trial_id"] for r in rows}
    for row in rows:
        state = latest[row["trial_id"]].state.name
        assert state == {"completed": "COMPLETE", "pruned": "PRUNED"}[row["status"]]
    again = [t for t in trials if "resumed_from" in t.user_attrs]
    assert len(trials) == 5 + len(again)
    assert {t.user_attrs["ray_trial_id"] for t in again} == unfinished & set(latest)
    assert (exp / "final.json").is_file()


STARTED = "2026-01-01T00:00:00"


def fake_trials(statuses: list[str], *, elapsed: float) -> list[SimpleNamespace]:
    """Tune's saved trials as ExperimentAnalysis gives them: ids, states, last results."""
    import datetime as dt

    end = dt.datetime.fromisoformat(STARTED).timestamp() + elapsed
    return [
        SimpleNamespace(trial_id=f"t{i}", status=s, last_result={"timestamp": end - i})
        for i, s in enumerate(statuses)
    ]


def test_a_search_that_ended_before_its_report_is_only_finalised_on_resume(tmp_path, monkeypatch):
    from fer_search.space import apply_overrides, load_space
    from fer_search.tuning import results

    space = apply_overrides(load_space(str(write_space(tmp_path, 4))), time_budget=100)
    saved: dict[str, list] = {
        "a": fake_trials(["TERMINATED"] * 4, elapsed=50),  # every sample ran
        "b": fake_trials(["TERMINATED"] * 2, elapsed=99),  # the time budget was spent
        "c": fake_trials(["TERMINATED"] * 2, elapsed=30),  # interrupted early
        "d": fake_trials(["TERMINATED", "RUNNING", "TERMINATED", "PENDING"], elapsed=99),
    }
    monkeypatch.setattr(results, "saved_trials", lambda where: saved.get(Path(where).name, []))
    assert results.saved_search_complete(tmp_path / "a", space, STARTED) == pytest.approx(50)
    assert results.saved_search_complete(tmp_path / "b", space, STARTED) == pytest.approx(99)
    assert results.saved_search_complete(tmp_path / "c", space, STARTED) is None
    assert results.saved_search_complete(tmp_path / "d", space, STARTED) is None
    assert results.saved_search_complete(tmp_path / "empty", space, STARTED) is None


def test_a_lone_refit_after_two_one_cpu_trials_at_a_time_trains_on_both_cpus(tmp_path):
    space = tmp_path / "lone.yaml"
    space.write_text(tiny_space("tiny", trials=2, refit_budget=8))
    proc = cli(*demo_search_args(space, tmp_path / "results", "lone", "0.3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "results" / "lone"
    record = json.loads((exp / "experiment.json").read_text())
    assert record["resources"]["max_concurrent"] == 2 and record["refit"]["done"]
    assert record["refit"]["resources"] == {"cpu": 2.0, "gpu": 0.0}
    (member,) = record["refit"]["members"]
    assert member["config"]["threads"] == 2
    (refit,) = [r for r in read_rows(exp) if r["trial_id"] == "refit"]
    assert refit["status"] == "completed" and int(refit["epochs"]) == member["epochs"] > 3


def check_one_truth(exp: Path, study: Any, rows: list[dict[str, str]], members: list) -> None:
    """The refits are trials of the study (and TensorBoard runs beside their sources), and
    optuna-dashboard's best trial is the leaderboard's best when Optuna can know it (a
    COMPLETE trial: Optuna never names a pruned one best)."""
    from tensorboard_logs import read_runs

    from fer_search.bench.viewers import ask, executable, free_port, server, until

    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert "RUNNING" not in {t.state.name for t in study.trials}
    for member in members:
        refit, source = by_ray_id[member["id"]], by_ray_id[member["from_trial"]]
        assert refit.user_attrs["refit_of"] == source.number and refit.params == source.params
        assert refit.state.name == "COMPLETE"
    if rows[0]["status"] == "completed":  # ranked by val_acc: best/ (checked below)
        assert study.best_trial.user_attrs["ray_trial_id"] == rows[0]["trial_id"]
    port = free_port()
    command = [executable("optuna-dashboard"), f"sqlite:///{exp / 'optuna.db'}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    def detail() -> dict[str, Any]:
        studies = json.loads(ask(port, "/api/studies"))["study_summaries"]
        return json.loads(ask(port, f"/api/studies/{studies[0]['study_id']}?after=0"))

    with server(command, exp / "optuna-dashboard.log") as process:
        until(process, lambda: (len(detail()["trials"]), 0), len(study.trials), 120)
        (shown,) = detail()["best_trials"]  # its Best Trial card
    assert shown["number"] == study.best_trial.number
    runs = read_runs(exp / "tensorboard")
    assert "." not in runs and sum(run["experiment"] is not None for run in runs.values()) == 1
    (types,) = [run["types"] for run in runs.values() if run["types"]]
    assert types["refit_of"][0] == "DATA_TYPE_STRING"
    assert all(run["hparams"]["refit_of"] for run in runs.values())  # "-" or the source's run


def test_search_runs_its_start_point_first_then_refits_the_best_two(tmp_path):
    text = tiny_space("tiny", trials=3, refit_budget=12, refit_top_k=2, params="  ema: 0.9\n")
    text += "points_to_evaluate:\n  - {optimizer: sgd, lr@sgd: 0.05, dropout: 0.1}\n"
    space = tmp_path / "refit.yaml"
    space.write_text(text)
    proc = cli(*demo_search_args(space, tmp_path / "results", "rf", "0.3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "results" / "rf"
    rows = read_rows(exp)
    assert len(rows) == 5  # three searched trials and two refits
    record = json.loads((exp / "experiment.json").read_text())
    assert record["refit"]["done"]
    members = record["refit"]["members"]
    searched = [r for r in rows if not r["trial_id"].startswith("refit")]
    top_two = sorted(searched, key=lambda r: -float(r["val_acc"]))[:2]
    assert [m["from_trial"] for m in members] == [r["trial_id"] for r in top_two]
    for member, source in zip(members, top_two, strict=True):
        (refit,) = [r for r in rows if r["trial_id"] == member["id"]]
        assert int(refit["epochs"]) == member["epochs"] > 3
        assert refit["status"] == "completed"
        assert refit["trial_dir"] == f"refit/trial_{member['id']}"
        assert (exp / refit["trial_dir"] / "progress.csv").is_file()
        for name in ("optimizer", "dropout"):  # the refit trained its source's configuration
            assert refit[name] == source[name]
    assert "refit: training trial" in proc.stderr  # the CLI's log handler (cli/logs.py)

    import optuna

    study = optuna.load_study(study_name="rf", storage=f"sqlite:///{exp / 'optuna.db'}")
    first = min(study.trials, key=lambda t: t.number)
    assert first.params == {"optimizer": "sgd", "lr@sgd": 0.05, "dropout": 0.1}
    check_one_truth(exp, study, rows, members)

    final = json.loads((exp / "final.json").read_text())  # selection still on val only
    assert final["best"]["trial_id"] == rows[0]["trial_id"]
    assert final["best"]["val_acc"] == pytest.approx(float(rows[0]["val_acc"]), abs=1e-6)
    # read from the val probabilities the trial stored: the same images right as it reported
    ci = [float(rows[0]["val_acc_ci95_lo"]), float(rows[0]["val_acc_ci95_hi"])]
    assert final["best"]["val_acc_ci95"] == pytest.approx(ci, abs=1e-9)
    import torch

    kept = torch.load(exp / "best" / "best.pt", weights_only=True)  # the selected weights only
    assert kept["config"]["ema"] == 0.9 and "state_dict" in kept
    assert not {"optimizer", "best_state_dict", "ema_state_dict"} & kept.keys()


def fake_result(trial_id: str, val_accs: list[float], intervals: bool) -> SimpleNamespace:
    """A Tune result of a trial that reported `val_accs`, with the engine's per-epoch
    intervals or (a trial from before them) without."""
    import pandas as pd

    frame = pd.DataFrame({"epoch": range(1, len(val_accs) + 1), "val_acc": val_accs})
    frame["val_f1"] = frame["val_acc"] - 0.05
    if intervals:
        frame["val_acc_ci95_lo"] = frame["val_acc"] - 0.02
        frame["val_acc_ci95_hi"] = frame["val_acc"] + 0.03
    return SimpleNamespace(
        metrics_dataframe=frame,
        metrics={"trial_id": trial_id, "time_total_s": 9.0},
        error=None,
        path=f"/runs/exp/trial_{trial_id}",
        config={},
        checkpoint=None,
    )


def test_the_leaderboard_holds_each_trials_best_epoch_interval(tmp_path):
    import pandas as pd

    from fer_search.tuning.results import summary_line, trial_row, write_leaderboard

    space = SimpleNamespace(params=(), experiment=SimpleNamespace(epochs=3), measures_cost=False)
    new = trial_row(fake_result("new", [0.40, 0.55, 0.50], True), space, tmp_path, {}, {})
    old = trial_row(fake_result("old", [0.30, 0.45, 0.41], False), space, tmp_path, {}, {})
    assert (new["val_acc"], new["best_epoch"]) == (0.55, 2)
    assert (new["val_acc_ci95_lo"], new["val_acc_ci95_hi"]) == pytest.approx((0.53, 0.58))
    assert old["val_acc"] == 0.45 and pd.isna(old["val_acc_ci95_lo"])

    write_leaderboard([new, old], tmp_path)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    at = list(board.columns).index("val_acc")
    assert list(board.columns[at : at + 3]) == ["val_acc", "val_acc_ci95_lo", "val_acc_ci95_hi"]
    line = summary_line([new, old], tmp_path, 12.0)
    assert "best new at epoch 2: val_acc 55.00 % [53.00, 58.00] (95 % interval);" in line
    # a search from before the intervals (or reread from its CSV) still says its best
    reread = board.iloc[::-1].to_dict("records")
    assert "best old at epoch 2: val_acc 45.00 %;" in summary_line(reread[:1], tmp_path, 1.0)
