"""The Python API (fer_search.api) as a notebook user calls it: load, train, evaluate, search,
and the same one-line UserError the CLI prints."""

from __future__ import annotations

import ast
import contextlib
import io
import math

import pytest
from helpers import one_line_error, run_fer_search, run_python, tiny_space

import fer_search
from fer_search import UserError


@pytest.fixture(scope="module")
def demo():
    return fer_search.load_data("demo", demo_size=0.1)


def test_load_data_remembers_how_it_was_loaded(demo):
    assert demo.source == "demo" and set(demo.splits) == {"train", "val", "test"}
    again = fer_search.load_data(**{"source": demo.load_args["path"], "demo_size": 0.1})
    assert (again.splits["train"].images == demo.splits["train"].images).all()


def test_train_then_evaluate_a_checkpoint(tmp_path, demo, one_torch_thread):
    config = {"model": "simple_cnn", "width": 8, "epochs": 2, "batch_size": 32, "threads": 1}
    seen = []
    result = fer_search.train(config, data=demo, out=tmp_path / "one", on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2] and result.epochs_run == 2
    for name in ("config.yaml", "best.pt", "last.pt", "metrics.json"):
        assert (tmp_path / "one" / name).is_file(), name
    metrics = fer_search.evaluate(tmp_path / "one" / "best.pt", data=demo, split="val")
    assert metrics["accuracy"] == pytest.approx(result.best_val_acc, abs=1e-6)  # same weights
    assert metrics["n"] == len(demo.splits["val"])
    with pytest.raises(UserError, match="not empty"):  # results are never overwritten
        fer_search.train(config, data=demo, out=tmp_path / "one")


def test_bad_arguments_raise_the_cli_s_one_line(tmp_path):
    with pytest.raises(UserError, match="did you mean 'num_samples'") as api_error:
        fer_search.search("demo", num_sample=2, storage=str(tmp_path))
    with pytest.raises(UserError) as space_error:
        fer_search.search("densnet", storage=str(tmp_path))
    proc = run_fer_search("--space", "densnet", "--storage", str(tmp_path), "--data", "demo")
    assert one_line_error(proc) == f"fer-search: error: {space_error.value}"
    assert "\n" not in str(api_error.value) and not any(tmp_path.iterdir())
    with pytest.raises(UserError, match="epochs must be > 0, got 0"):
        fer_search.train({"model": "simple_cnn", "epochs": 0})


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, demo):
    storage = tmp_path_factory.mktemp("api-search")
    space = tmp_path_factory.mktemp("space") / "tiny.yaml"
    space.write_text(tiny_space("tiny", trials=2, epochs=1))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # as in a notebook: the API's defaults
        experiment = fer_search.search(str(space), data=demo, storage=str(storage), name="api")
    experiment.printed = printed.getvalue()
    yield experiment
    import ray

    ray.shutdown()  # the search started Ray in this process; later modules start their own


def test_a_search_from_python_prints_nothing_it_was_not_asked_for(experiment):
    assert experiment.printed == ""  # verbose=1 asks for the live table; logging for messages


def test_search_returns_an_experiment_with_its_leaderboard(experiment):
    board = experiment.leaderboard
    assert len(board) == 2 and set(board["status"]) == {"completed"}
    assert list(board["val_acc"]) == sorted(board["val_acc"], reverse=True)  # best first
    assert {"lr", "dropout", "optimizer", "precision"} <= set(board.columns)
    assert not experiment.interrupted and experiment.path.name == "api"


def test_experiment_json_records_the_api_call_that_started_the_search(experiment):
    # the call a user can copy to repeat the search: fer_search.search, the API function
    command = experiment.record["command"]
    call = ast.parse(command, mode="eval").body
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "fer_search.search", command
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords}["name"] == "api", command


def test_the_best_model_and_the_final_figures(experiment):
    best, final = experiment.best, experiment.final
    assert best["trial_id"] == experiment.leaderboard["trial_id"][0]
    assert best["checkpoint"].endswith("best/best.pt")
    assert 0.0 <= final["best"]["test_acc"] <= 1.0 and not math.isnan(best["val_acc"])
    assert final["evaluated_on"]["device"] == "cpu"
    tta = final["tta"]  # the TTA mode val picks, then read on test once
    assert set(tta["val_acc"]) == {"none", "flip", "tencrop"}
    assert tta["val_acc"][tta["chosen"]] == max(tta["val_acc"].values())
    chosen = final["selected_ensemble"]  # chosen on val from every trial with a checkpoint
    assert chosen["chosen"] in ("selection", "bagged", "top_k")
    candidates = (chosen["selection"]["val_acc"], chosen["bagged"]["val_acc"])
    assert chosen["val_acc"] == max(chosen["top_k_val_acc"], *candidates)  # on val only
    assert sum(chosen["bagged"]["weights"]) == pytest.approx(1.0, abs=1e-3)
    assert sum(chosen["weights"]) == pytest.approx(1.0, abs=1e-3)
    assert set(chosen["members"]) <= set(experiment.leaderboard["trial_id"])
    assert set(chosen["vs_top_k"]) >= {"difference", "difference_ci95", "p_value"}
    report = (experiment.path / "report.md").read_text()
    assert "Test-time augmentation chosen on val" in report and "Ensemble from all trials" in report
    reopened = fer_search.Experiment.open(experiment.path)
    assert reopened.best == best and "2 trials: 2 completed" in reopened.summary()


def test_the_search_function_survives_its_own_package_being_imported(experiment):
    # the search layer is the subpackage fer_search.tuning, so importing it never replaces the
    # API function fer_search.search
    import fer_search.tuning  # noqa: F401

    assert callable(fer_search.search)


def test_predict_is_the_api_function_in_a_fresh_process_and_after_the_cli(tmp_path):
    # the image-prediction layer is fer_search.prediction (not .predict), so neither the API's
    # own import of it nor the CLI's replaces the function fer_search.predict on the package
    code = (
        "import fer_search\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        fer_search.predict('missing.pt', ['face.png'])\n"
        "    except fer_search.UserError as exc:\n"
        "        print(exc)\n"
        "    import fer_search.prediction  # as `fer-search predict` does\n"
    )
    done = run_python("-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["checkpoint 'missing.pt' does not exist"] * 2


def test_the_package_offers_exactly_the_api_functions():
    # fer_search keeps its own list so that `import fer_search` does not import the API
    from fer_search import api

    assert set(fer_search._API) == set(api.__all__)
    assert all(getattr(fer_search, name) is getattr(api, name) for name in api.__all__)
    assert {"TrainConfig", "UserError"} < set(fer_search.__all__)
