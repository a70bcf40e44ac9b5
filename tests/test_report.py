"""report.py rebuilds report.md/report.json/figures from a synthetic results directory (no Ray)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, run_fer_search

from fer_search.errors import UserError
from fer_search.report import build_report, load_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAME = "demo-20240501-120000"
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SELECTION = (
    "best val_acc on PublicTest (val split); PrivateTest (test) used once, for this report only"
)
START = 1_714_564_800  # 2024-05-01T12:00:00+00:00
# trial_id, status, val_acc, val_f1, best_epoch, epochs, params
TRIALS = [
    ("a0001", "completed", 0.6250, 0.601, 4, 4, 3.2e-4, 0.25, "simple_cnn"),
    ("a0002", "completed", 0.5810, 0.552, 3, 4, 1.0e-2, 0.10, "vgg16"),
    ("a0003", "pruned", 0.4100, 0.380, 1, 1, 5.0e-2, 0.50, "simple_cnn"),
    ("a0004", "failed", math.nan, math.nan, math.nan, 0, 1.0e-3, 0.30, "vgg16"),
]


def write_experiment(exp: Path) -> None:
    experiment = {
        "name": NAME,
        "space": "demo.yaml",
        "command": "fer-search --space demo.yaml --num-samples 4",
        "metric": "val_acc",
        "mode": "max",
        "max_t": 4,
        "grace_period": 1,
        "reduction_factor": 2,
        "num_samples": 4,
        "asha": True,
        "started": "2024-05-01T12:00:00+00:00",
        "finished": "2024-05-01T12:05:00+00:00",
        "wall_time_s": 300.0,
        "data": "demo (synthetic)",
        "class_names": CLASSES,
        "params": ["lr", "dropout", "model"],
        "resources": {},
        "versions": {},
    }
    (exp / "experiment.json").write_text(json.dumps(experiment))


def write_trials(exp: Path, trials=TRIALS, timestamps: bool = True) -> None:
    rows = []
    for i, (tid, status, acc, f1, best_epoch, epochs, lr, dropout, model) in enumerate(trials):
        trial_dir = f"trials/{tid}"
        (exp / trial_dir).mkdir(parents=True)
        progress = exp / trial_dir / "progress.csv"
        if epochs:
            ramp = [acc * (0.7 + 0.3 * e / epochs) for e in range(1, epochs + 1)]
            curve = {
                "epoch": range(1, epochs + 1),
                "val_acc": ramp,
                "train_loss": [2.0 / e for e in range(1, epochs + 1)],
                "time_total_s": [10.0 * e for e in range(1, epochs + 1)],
                "training_iteration": range(1, epochs + 1),
            }
            if timestamps:
                curve["timestamp"] = [START + 5 + 20 * i + 10 * e for e in range(1, epochs + 1)]
            pd.DataFrame(curve).to_csv(progress, index=False)
        else:
            progress.write_text("")  # a trial that died before its first report
        rows.append(
            {
                "trial_id": tid,
                "status": status,
                "val_acc": acc,
                "val_f1": f1,
                "best_epoch": best_epoch,
                "epochs": epochs,
                "time_s": 10.0 * epochs,
                "node": "127.0.0.1",
                "trial_dir": trial_dir,
                "error": "CUDA out of memory" if status == "failed" else "",
                "lr": lr,
                "dropout": dropout,
                "model": model,
            }
        )
    pd.DataFrame(rows).to_csv(exp / "leaderboard.csv", index=False)


def write_final(exp: Path) -> None:
    per_class = {
        name: {
            "precision": 0.5 + i / 20,
            "recall": 0.4 + i / 20,
            "f1": 0.45 + i / 20,
            "support": 100 + i,
        }
        for i, name in enumerate(CLASSES)
    }
    metrics = {
        "accuracy": 0.6071,
        "macro_f1": 0.5523,
        "per_class": per_class,
        "n": 721,
        "confusion_matrix": [[1] * 7 for _ in range(7)],
        "class_names": CLASSES,
    }
    final = {
        "selection": SELECTION,
        "best": {
            "trial_id": "a0001",
            "val_acc": 0.625,
            "test_acc": 0.6071,
            "test_acc_flip": 0.6135,
            "test_f1": 0.5523,
            "checkpoint": "best/best.pt",
            "config": {"model": "simple_cnn", "lr": 3.2e-4},
            "metrics": metrics,
        },
        "ensemble": {
            "k": 2,
            "trial_ids": ["a0001", "a0002"],
            "val_acc": 0.6402,
            "test_acc": 0.6190,
            "test_acc_flip": 0.6244,
        },
    }
    (exp / "final.json").write_text(json.dumps(final))


def write_optuna_db(exp: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{exp / 'optuna.db'}",
        study_name=NAME,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        model = trial.suggest_categorical("model", ["simple_cnn", "vgg16"])
        return 0.6 - 0.05 * abs(math.log10(lr) + 3) - 0.1 * dropout + 0.01 * (model == "vgg16")

    study.optimize(objective, n_trials=8)


def failed_study(exp: Path, trials: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{exp / 'optuna.db'}", study_name=NAME)
    for _ in range(trials):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def make_results(root: Path, final: bool = True, optuna_db: bool = True) -> Path:
    exp = root / NAME
    exp.mkdir(parents=True)
    write_experiment(exp)
    write_trials(exp)
    if final:
        write_final(exp)
    if optuna_db:
        write_optuna_db(exp)
    return exp


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A full results directory with its report already built (shared; do not modify)."""
    exp = make_results(tmp_path_factory.mktemp("results"))
    (exp / "confusion_test.png").write_bytes(PNG_MAGIC + b"stand-in")
    build_report(exp)
    return exp


def test_report_md_states_best_trial_selection_rule_and_test_numbers(built):
    md = (built / "report.md").read_text()
    assert md.startswith(f"# fer-search report: {NAME}")
    assert "```sh\nfer-search --space demo.yaml --num-samples 4\n```" in md
    assert "`a0001`" in md and SELECTION in md
    assert "PublicTest, used to select" in md and "PrivateTest, used once" in md
    for number in ("62.50 %", "60.71 %", "61.35 %", "0.5523", "64.02 %", "61.90 %", "62.44 %"):
        assert number in md
    assert "4 — 2 completed, 1 pruned by ASHA, 1 failed" in md
    assert "9 trained of 16 possible" in md and "ASHA saved 43.8 %" in md
    assert "| happy |" in md  # per-class table of the best model
    assert "3.20e-04" in md  # lr, short


def add_intervals(exp: Path) -> dict:
    """final.json as a search now writes it: 95 % intervals and the paired comparisons."""
    final = json.loads((exp / "final.json").read_text())
    final["ci_method"] = "95 % percentile bootstrap over the images"
    final["best"].update(
        test_acc_ci95=[0.5902, 0.6241],
        test_acc_flip_ci95=[0.5968, 0.6302],
        test_f1_ci95=[0.5351, 0.5697],
        val_acc_ci95=[0.61, 0.64],
    )
    final["ensemble"].update(test_acc_ci95=[0.6023, 0.6357])
    within = {"difference": 0.0083, "difference_ci95": [-0.0061, 0.0214], "p_value": 0.2731}
    behind = {"difference": -0.0119, "difference_ci95": [-0.0205, -0.0036], "p_value": 0.0042}
    final["comparisons"] = {
        "best_vs_runner_up": {"a": "a0001", "b": "a0002", "test": {**within, "within_noise": True}},
        "best_vs_ensemble": {
            "a": "a0001",
            "b": ["a0001", "a0002"],
            "test": {**behind, "within_noise": False},
        },
    }
    (exp / "final.json").write_text(json.dumps(final))
    return final


def test_intervals_and_comparisons_are_stated_beside_the_test_figures(built, tmp_path):
    exp = make_results(tmp_path, optuna_db=False)
    final = add_intervals(exp)
    md = build_report(exp).read_text()
    best_row = next(line for line in md.splitlines() if line.startswith("| best trial"))
    assert "60.71 % (95 % CI 59.0–62.4)" in best_row
    assert "61.35 % (95 % CI 59.7–63.0)" in best_row
    assert "0.5523 (95 % CI 0.535–0.570)" in best_row
    assert "62.50 % |" in best_row  # val: selected on, so no interval
    ensemble_row = next(line for line in md.splitlines() if line.startswith("| top-2"))
    assert "61.90 % (95 % CI 60.2–63.6)" in ensemble_row and "62.44 % |" in ensemble_row
    assert (
        "The best trial is 0.8 pp ahead of the runner-up (`a0002`) on test, within noise "
        "(95 % CI −0.6 to 2.1 pp, McNemar p = 0.27)." in md
    )
    assert (
        "The best trial is 1.2 pp behind the top-2 ensemble on test, beyond noise "
        "(95 % CI −2.1 to −0.4 pp, McNemar p = 0.004)." in md
    )
    assert "Intervals: 95 % percentile bootstrap over the images." in md
    report = json.loads((exp / "report.json").read_text())
    assert report["final"]["comparisons"] == final["comparisons"]
    assert report["final"]["best"]["test_acc_ci95"] == [0.5902, 0.6241]
    # a final.json from before the intervals reads as it always did
    old = (built / "report.md").read_text()
    assert "95 % CI" not in old and "McNemar" not in old and "Intervals:" not in old


def test_leaderboard_is_best_first_and_limited_to_top(built, tmp_path):
    md = (built / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "`a000" in line]
    assert [r.split("`")[1] for r in rows[:4]] == ["a0001", "a0002", "a0003", "a0004"]
    exp = make_results(tmp_path, optuna_db=False)
    build_report(exp, top=2)
    report = json.loads((exp / "report.json").read_text())
    assert [r["trial_id"] for r in report["leaderboard"]] == ["a0001", "a0002"]
    with pytest.raises(UserError):
        build_report(exp, top=0)


def test_a_many_trial_leaderboard_shows_the_top_rows_and_links_the_rest(tmp_path):
    exp = tmp_path / NAME
    exp.mkdir()
    write_experiment(exp)
    trials = [(f"b{i:04d}", "pruned", 0.6 - i / 1000, 0.5, 1, 1, 1e-3, 0.1, "simple_cnn")
              for i in range(45)]  # fmt: skip
    write_trials(exp, trials)
    (exp / "trials/b0003/params.json").write_text('{"trial_number": 17}')
    md = build_report(exp).read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "`b0" in line]
    assert [r.split("`")[1] for r in rows] == [f"b{i:04d}" for i in range(20)]
    assert "## Leaderboard (top 20 of 45," in md
    assert "25 more trials are not shown: all 45 are in [leaderboard.csv](leaderboard.csv)." in md
    assert "| 4 | `b0003` #17 |" in md  # named as the figures name it
    report = json.loads((exp / "report.json").read_text())
    assert len(report["leaderboard"]) == 20 and report["leaderboard_rows"] == 45
    assert report["leaderboard"][3]["trial_number"] == 17


def test_a_simulated_search_says_so_before_anything_else(tmp_path):
    exp = make_results(tmp_path, optuna_db=False)
    md = build_report(exp).read_text()
    assert "imulated" not in md  # a record from before `trainer`: trained models
    record = json.loads((exp / "experiment.json").read_text())
    record["trainer"] = {"kind": "simulated", "epoch_s": 0.05, "checkpoint_mib": 1.0,
                         "curve": {"peak": 0.7}}  # fmt: skip
    (exp / "experiment.json").write_text(json.dumps(record))
    md = build_report(exp).read_text()
    warning = md.split("```sh")[0]  # above the command
    assert "**Simulated trials** (simulated trainer: epoch_s 0.05, checkpoint_mib 1, " in warning
    assert "curve (peak=0.7)" in warning
    assert "No model was trained" in warning and "not facial-expression recognition" in warning
    record["trainer"] = {"kind": "engine"}
    (exp / "experiment.json").write_text(json.dumps(record))
    assert "imulated" not in build_report(exp).read_text()


def test_figures_are_png_and_linked(built):
    md = (built / "report.md").read_text()
    for name in ("learning_curves.png", "best_so_far.png", "confusion_test.png"):
        assert (built / name).read_bytes().startswith(PNG_MAGIC)
        assert f"]({name})" in md


def test_report_json_holds_the_facts(built):
    report = json.loads((built / "report.json").read_text())
    assert report["experiment"]["name"] == NAME
    assert report["counts"] == {
        "trials": 4,
        "completed": 2,
        "pruned": 1,
        "failed": 1,
        "nan": 0,
        "running": 0,
        "other": 0,
        "time_budget": 0,
    }
    assert (report["epochs_consumed"], report["epochs_budget"]) == (9, 16)
    assert report["best_trial_id"] == "a0001"
    assert report["leaderboard"][0]["lr"] == pytest.approx(3.2e-4)
    assert report["leaderboard"][3]["val_acc"] is None  # failed trial: NaN -> null
    assert report["final"]["best"]["test_acc_flip"] == pytest.approx(0.6135)
    assert report["final"]["ensemble"]["trial_ids"] == ["a0001", "a0002"]
    assert set(report["importances"]) == {"lr", "dropout", "model"}
    assert sum(report["importances"].values()) == pytest.approx(1.0)
    assert report["figures"] == [
        "learning_curves.png",
        "best_so_far.png",
        "timeline.png",
        "parallel_coordinates.png",
        "param_slices.png",
        "confusion_test.png",
    ]


def test_rebuild_gives_the_same_report(built):
    md, js = (built / "report.md").read_text(), (built / "report.json").read_text()
    build_report(built)
    assert (built / "report.md").read_text() == md
    assert (built / "report.json").read_text() == js


def test_load_results(built):
    results = load_results(built)
    assert list(results["leaderboard"]["trial_id"]) == ["a0001", "a0002", "a0003", "a0004"]
    assert list(results["curves"]) == ["a0001", "a0002", "a0003"]  # a0004's progress is empty
    assert results["final"]["best"]["trial_id"] == "a0001"
    assert any("a0004" in note for note in results["notes"])


def test_a_refit_is_reported_apart_from_the_searched_trials(tmp_path):
    exp = tmp_path / NAME
    exp.mkdir()
    write_experiment(exp)
    record = json.loads((exp / "experiment.json").read_text())
    record["refit"] = {"from_trial": "a0001", "epochs": 12, "config": {}, "done": True}
    (exp / "experiment.json").write_text(json.dumps(record))
    refit = ("refit", "completed", 0.6600, 0.640, 11, 12, 3.2e-4, 0.25, "simple_cnn")
    write_trials(exp, [refit, *TRIALS])
    build_report(exp)
    report = json.loads((exp / "report.json").read_text())
    assert report["counts"]["trials"] == 4  # the searched trials
    assert (report["epochs_consumed"], report["epochs_budget"]) == (9, 16)  # ASHA's figures
    assert report["refit_epochs"] == 12
    md = (exp / "report.md").read_text()
    assert "Refit: trial `a0001`'s configuration trained again from scratch for 12 epochs" in md
    # the counts above and the table's rows add up: 4 searched trials and the refit
    assert "## Leaderboard (all 5: 4 searched trials and 1 refit," in md and "66.00 %" in md
    assert "| `refit` of `a0001` |" in md  # the trial whose configuration it retrained


def test_trials_the_time_budget_cut_are_not_asha_savings(tmp_path):
    exp = tmp_path / NAME
    exp.mkdir()
    write_experiment(exp)  # max_t 4, grace period 1, reduction factor 2: rungs at 1 and 2
    cut = [
        ("a0005", "pruned", 0.4000, 0.370, 3, 3, 1e-3, 0.2, "simple_cnn"),  # between rungs
        ("a0006", "pruned", math.nan, math.nan, math.nan, 0, 1e-3, 0.2, "simple_cnn"),  # none
    ]
    write_trials(exp, [*TRIALS, *cut])
    build_report(exp)
    report = json.loads((exp / "report.json").read_text())
    assert report["counts"]["pruned"] == 1 and report["counts"]["time_budget"] == 2
    # ASHA's figures are over the four trials it decided about; all six trained 12 epochs
    assert report["epochs_budget"] == 16 and report["epochs_saved_fraction"] == 1 - 9 / 16
    assert report["epochs_consumed"] == 12
    md = (exp / "report.md").read_text()
    assert "1 pruned by ASHA, 1 failed, 2 stopped by the time budget" in md
    assert "12 trained; the 4 trials that ran to max_t or were stopped by ASHA trained 9" in md
    assert sorted(report["time_budget_trials"]) == ["a0005", "a0006"]
    rows = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in md.splitlines()
            if line.startswith("| ") and "`a000" in line}  # fmt: skip
    assert rows["`a0005`"] == rows["`a0006`"] == "time budget"  # not "pruned": ASHA never judged
    assert "pruned" in rows.values()  # the trial ASHA did stop


def test_an_empty_experiment_record_marks_no_trial_as_cut(tmp_path):
    # without ASHA's rungs nothing tells a trial the time budget ended from one ASHA stopped:
    # the counts and the epoch figures both take every "pruned" trial as ASHA's
    exp = tmp_path / NAME
    exp.mkdir()
    (exp / "experiment.json").write_text("{}")
    write_trials(exp)
    build_report(exp)
    report = json.loads((exp / "report.json").read_text())
    assert report["counts"]["pruned"] == 1 and report["counts"]["time_budget"] == 0
    assert report["trials_decided"] == 4 and report["epochs_consumed_decided"] == 9
    assert report["epochs_budget"] is None and report["time_budget_trials"] == []


def test_asha_rungs_follow_ray_milestones():
    from fer_search.report import asha_rungs

    assert asha_rungs({"grace_period": 2, "reduction_factor": 3, "max_t": 8}) == {2, 6}
    assert asha_rungs({"grace_period": 1, "reduction_factor": 4, "max_t": 16}) == {1, 4}
    assert asha_rungs({"grace_period": 1, "reduction_factor": 3, "max_t": 27}) == {1, 3, 9}
    assert asha_rungs({}) == set()


def test_missing_final_and_optuna_db_still_report(tmp_path):
    exp = make_results(tmp_path, final=False, optuna_db=False)
    md = build_report(exp).read_text()
    assert "Not run: no final.json" in md
    assert "Not available: no optuna.db" in md
    assert "confusion_test.png" not in md
    report = json.loads((exp / "report.json").read_text())
    assert report["final"] is None and report["importances"] is None
    assert report["best_trial_id"] == "a0001"  # from the leaderboard


def test_all_failed_no_timestamps_still_report(tmp_path):
    exp = tmp_path / NAME
    exp.mkdir()
    write_experiment(exp)
    failed = [
        ("b0001", "failed", math.nan, math.nan, math.nan, 0, 1e-3, 0.1, "vgg16"),
        ("b0002", "failed", math.nan, math.nan, math.nan, 0, 1e-2, 0.2, "vgg16"),
    ]
    write_trials(exp, failed, timestamps=False)
    (exp / "trials" / "b0002" / "progress.csv").unlink()
    failed_study(exp, trials=2)
    md = build_report(exp).read_text()
    assert "2 — 0 completed, 0 pruned by ASHA, 2 failed" in md
    # a sentence each, not an empty table nor an exception
    assert "not computed: 0 searched trials have a val_acc, fewer than the 8" in md
    assert "rests on 0 trials: optuna-dashboard shows none" in md
    assert "| parameter |" not in md and "Error" not in md
    assert (exp / "best_so_far.png").read_bytes().startswith(PNG_MAGIC)
    assert json.loads((exp / "report.json").read_text())["best_trial_id"] is None


def test_progress_without_timestamps_uses_trial_time(tmp_path):
    exp = tmp_path / NAME
    exp.mkdir()
    write_experiment(exp)
    write_trials(exp, timestamps=False)
    build_report(exp)
    assert (exp / "best_so_far.png").read_bytes().startswith(PNG_MAGIC)


def test_not_a_results_dir_is_a_user_error(tmp_path):
    (tmp_path / "experiment.json").write_text("{}")
    with pytest.raises(UserError, match="missing leaderboard.csv") as info:
        build_report(tmp_path)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="does not exist"):
        load_results(tmp_path / "nope")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_fer_search(*args, env={"MPLBACKEND": "Agg"}, cwd=REPO, timeout=120)


def test_cli_report(tmp_path):
    exp = make_results(tmp_path, optuna_db=False)
    done = run_cli("report", str(exp))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and str(exp / "report.md") in done.stdout


def test_cli_report_not_a_results_dir(tmp_path):
    done = run_cli("report", str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "experiment.json" in done.stderr and "Traceback" not in done.stderr


def test_a_retried_trials_repeated_epochs_and_its_failure_row_are_read_once(tmp_path):
    from fer_search.report.load import read_progress

    (tmp_path / "progress.csv").write_text(
        "epoch,val_acc,failure\n1,0.30,\n2,0.35,\n3,0.36,\n"  # then killed; its retry resumed
        "3,0.37,\n4,0.40,\n4,,non-finite training loss at epoch 5\n"  # from epoch 2's checkpoint
    )
    curve = read_progress(tmp_path)
    assert list(curve["epoch"]) == [1, 2, 3, 4]
    assert list(curve["val_acc"]) == [0.30, 0.35, 0.37, 0.40]  # the retry's epoch 3 counts


def pruned_and_complete_study(exp: Path, complete: int, pruned: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{exp / 'optuna.db'}", study_name=NAME, direction="maximize"
    )
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    for i in range(complete + pruned):
        trial = study.ask({"lr": lr})
        trial.report(0.2 + 0.01 * i, 1)
        if i < complete:
            study.tell(trial, 0.5 + 0.01 * i)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_importances_count_pruned_trials_and_need_eight(tmp_path):
    from fer_search.report.importance import importance_facts

    board = pd.DataFrame({"trial_id": pd.Series(dtype=str)})
    exp = tmp_path / "nine"
    exp.mkdir()
    pruned_and_complete_study(exp, complete=2, pruned=7)
    found = importance_facts(exp / "optuna.db", NAME, board, [], set())
    (fanova,) = found["search"]
    assert fanova["trial_numbers"] == list(range(9)) and fanova["note"] is None
    assert (fanova["completed"], fanova["pruned"]) == (2, 7) and set(fanova["values"]) == {"lr"}
    (dashboard,) = found["dashboard"]  # optuna-dashboard's: the 2 COMPLETE trials alone
    assert dashboard["trial_numbers"] == [0, 1] and "too few" in dashboard["note"]
    few = tmp_path / "five"
    few.mkdir()
    pruned_and_complete_study(few, complete=1, pruned=4)
    (fanova,) = importance_facts(few / "optuna.db", NAME, board, [], set())["search"]
    assert fanova["values"] is None and len(fanova["trial_numbers"]) == 5
    assert "5 searched trials have a val_acc, fewer than the 8" in fanova["note"]


@pytest.mark.parametrize(
    ("scheduler", "words"),
    [
        ("hyperband", "HyperBand saved 43.8 % (reduction factor 2)"),
        ("median", "the median rule saved 43.8 % (grace period 1, min samples required 3)"),
        ("fifo", "no early stopping (FIFO)"),
    ],
)
def test_the_report_names_the_scheduler_the_search_used(tmp_path, scheduler, words):
    exp = make_results(tmp_path)
    record = json.loads((exp / "experiment.json").read_text())
    record.update(scheduler=scheduler, asha=False, min_samples_required=3)
    (exp / "experiment.json").write_text(json.dumps(record))
    build_report(exp)
    md = (exp / "report.md").read_text()
    assert words in md and "ASHA" not in md
    counts = {
        "hyperband": "1 pruned by HyperBand, 1 failed",
        "median": "1 pruned by the median rule, 1 failed",
        # FIFO stops none: a leaderboard without `stopped_by` leaves the time budget
        "fifo": "0 pruned, 1 failed, 1 stopped by the time budget",
    }
    assert counts[scheduler] in md


def test_the_leaderboard_gives_each_val_acc_its_interval(tmp_path):
    exp = make_results(tmp_path, final=False, optuna_db=False)
    board = pd.read_csv(exp / "leaderboard.csv")
    board.insert(3, "val_acc_ci95_lo", [0.601, 0.556, 0.385, math.nan])
    board.insert(4, "val_acc_ci95_hi", [0.649, 0.605, 0.436, math.nan])
    board.to_csv(exp / "leaderboard.csv", index=False)
    md = build_report(exp).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 1 | `a0001`"))
    assert "| 62.50 % (95 % CI 60.1–64.9) |" in row
    failed = next(line for line in md.splitlines() if line.startswith("| 4 | `a0004`"))
    assert "95 % CI" not in failed
    report = json.loads((exp / "report.json").read_text())
    first = report["leaderboard"][0]
    assert first["val_acc_ci95"] == [0.601, 0.649] and "val_acc_ci95_lo" not in first
    assert list(first)[list(first).index("val_acc") + 1] == "val_acc_ci95"
    assert report["leaderboard"][3]["val_acc_ci95"] is None


def test_a_large_selected_ensemble_names_its_heaviest_members_and_counts_the_rest():
    from fer_search.report.markdown_final import MAX_MEMBERS_SHOWN, choice_sentences

    members = [f"t{i:03d}" for i in range(100)]
    weights = [round(0.001 * (1 + i % 37), 3) for i in range(100)]
    chosen = {"members": members, "weights": weights, "chosen": "bagged", "method": "greedy",
              "val_acc": 0.9, "test_acc": 0.9, "top_k_val_acc": 0.8,
              "selection": {"val_acc": 0.89, "test_acc": None}}  # fmt: skip
    (sentence,) = choice_sentences({"selected_ensemble": chosen})
    named = [m for m in members if f"`{m}`" in sentence]
    heaviest = sorted(members, key=lambda m: -weights[members.index(m)])[:MAX_MEMBERS_SHOWN]
    assert sorted(named) == sorted(heaviest)
    assert f"and {100 - MAX_MEMBERS_SHOWN} more in final.json" in sentence
