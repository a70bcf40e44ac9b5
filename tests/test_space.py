"""Search spaces: shipped files load, sampling honours bounds and conditionals, bad input is a
one-line UserError that names the culprit."""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

import fer_search
from fer_search.config import MODEL_NAMES, TrainConfig
from fer_search.errors import UserError
from fer_search.space import (
    ExperimentSettings,
    Param,
    SearchSpace,
    apply_overrides,
    define_by_run,
    load_space,
    load_space_dict,
    resolve_space_path,
    sample_config,
    shipped_dir,
    shipped_spaces,
    train_values,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# every space the package ships, as `--space NAME` finds it: a new file is tested here unasked
SHIPPED = shipped_spaces()


def _study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed))


def _trials(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[dict, dict, dict]]:
    """(sampled params, returned constants, sample_config) for n trials of a fresh study."""
    study, fn, out = _study(seed), define_by_run(space), []
    for _ in range(n):
        trial = study.ask()
        constants = fn(trial)
        out.append((dict(trial.params), constants, sample_config(space, trial)))
        study.tell(trial, 0.5)
    return out


def _in_bounds(param: Param, value: Any) -> bool:
    if param.kind == "categorical":
        return value in param.choices
    if param.kind == "fixed":
        return value == param.value
    assert param.low is not None and param.high is not None
    return param.low <= value <= param.high


# --- shipped spaces -------------------------------------------------------------------------------


def test_every_shipped_space_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    """`--space NAME` and `--space NAME.yaml` reach every shipped space wherever the user
    stands; an installed package (fer_search/_spaces) ships the same ones; the spaces the
    examples in `fer-search --help` name are shipped."""
    assert SHIPPED, f"no shipped spaces found in {shipped_dir()}"
    monkeypatch.chdir(tmp_path)  # no file of that name here
    for name in SHIPPED:
        path = resolve_space_path(name)
        assert path.is_file() and resolve_space_path(f"{name}.yaml") == path
    packaged = Path(fer_search.__file__).parent / "_spaces"
    assert sorted(p.stem for p in packaged.glob("*.yaml")) == SHIPPED
    from fer_search.cli import build_parser

    examples = re.findall(r"--space ([\w-]+)\.yaml\s", build_parser().format_help())
    assert examples and set(examples) <= set(SHIPPED), examples


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_and_samples_valid_configs(name):
    space = load_space(name)
    assert space.name == name and space.description
    exp = space.experiment
    assert 1 <= exp.grace_period <= exp.epochs and exp.mode == "max"
    by_name = {p.name: p for p in space.params}
    for sampled, constants, config in _trials(space, 25):
        for key, value in sampled.items():
            assert _in_bounds(by_name[key], value), (key, value)
        assert constants == {
            p.name: p.value for p in space.params if p.kind == "fixed" and not p.when
        }
        assert set(sampled) | set(constants) == set(
            k for k in by_name if k in sampled or k in constants
        )
        cfg = TrainConfig.from_dict({**config, "epochs": exp.epochs}, source=name)
        assert cfg.model in MODEL_NAMES


def test_all_space_conditionals_follow_the_model_and_optimizer():
    space = load_space("all")
    seen_models = set()
    for sampled, _, config in _trials(space, 120):
        model, optimizer = sampled["model"], sampled["optimizer"]
        seen_models.add(model)
        assert ("width" in sampled) == ("batch_norm" in sampled) == (model == "simple_cnn")
        assert ("input_size" in sampled) == (model != "simple_cnn")
        assert ("momentum" in sampled) == (optimizer == "sgd")
        lr_keys = [k for k in sampled if k.startswith("lr@")]
        assert len(lr_keys) == 1 and config["lr"] == sampled[lr_keys[0]]
        if optimizer == "adamw":
            assert lr_keys == ["lr@adamw"] and 1e-4 <= config["lr"] <= 3e-3
        elif model == "vgg16":
            assert lr_keys == ["lr@sgd_vgg"] and 0.005 <= config["lr"] <= 0.05
        else:
            assert lr_keys == ["lr@sgd"] and 0.01 <= config["lr"] <= 0.2
        assert not any("@" in k for k in config)
    assert seen_models == set(MODEL_NAMES)


def test_define_by_run_returns_only_active_constants():
    space = load_space_dict(
        {
            "params": {
                "model": "simple_cnn",
                "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
                "momentum": {"type": "fixed", "value": 0.8, "when": {"optimizer": "sgd"}},
                "lr": {"type": "loguniform", "low": "1e-5", "high": "1e-1"},
            }
        }
    )
    optimizers = set()
    for sampled, constants, config in _trials(space, 20):
        optimizers.add(sampled["optimizer"])
        expected = {"model": "simple_cnn"}
        if sampled["optimizer"] == "sgd":
            expected["momentum"] = 0.8
        assert constants == expected
        assert set(sampled) == {"optimizer", "lr"}
        assert config == {**sampled, **constants}
    assert optimizers == {"sgd", "adamw"}


def test_string_numbers_parse():
    space = load_space_dict(
        {
            "params": {
                "lr": {"type": "loguniform", "low": "1e-5", "high": "1e-1"},
                "batch_size": {"type": "categorical", "choices": ["64", 128.0]},
                "crop_pad": {"type": "int", "low": "0", "high": "6", "step": "2"},
            },
            "experiment": {"epochs": "5", "time_budget": "3.6e3"},
        }
    )
    lr, batch, crop = space.params
    assert (lr.low, lr.high) == (1e-5, 0.1) and isinstance(lr.low, float)
    assert batch.choices == (64, 128) and all(type(c) is int for c in batch.choices)
    assert (crop.low, crop.high, crop.step) == (0, 6, 2)
    assert space.experiment.epochs == 5 and space.experiment.time_budget == 3600.0


def test_int_log_and_step_sample_on_the_grid():
    space = load_space_dict(
        {
            "params": {
                "width": {"type": "int", "low": 8, "high": 64, "log": True},
                "crop_pad": {"type": "int", "low": 0, "high": 6, "step": 3},
                "dropout": {"type": "uniform", "low": 0.1, "high": 0.4, "step": 0.1},
            }
        }
    )
    for sampled, _, _ in _trials(space, 30):
        assert 8 <= sampled["width"] <= 64 and isinstance(sampled["width"], int)
        assert sampled["crop_pad"] in (0, 3, 6)
        assert min(abs(sampled["dropout"] - v) for v in (0.1, 0.2, 0.3, 0.4)) < 1e-9


def test_a_step_equal_to_the_range_in_decimal_is_accepted():
    # 0.15 - 0.1 is 0.04999... in binary floating point: the check reads the numbers as written
    space = load_space_dict(
        {"params": {"label_smoothing": {"type": "uniform", "low": 0.1, "high": 0.15, "step": 0.05}}}
    )
    (smoothing,) = space.params
    assert smoothing.step == 0.05
    for sampled, _, _ in _trials(space, 10):
        assert min(abs(sampled["label_smoothing"] - v) for v in (0.1, 0.15)) < 1e-9


def test_train_values_folds_tags():
    assert train_values({"lr@sgd": 0.1, "model": "vgg16", "extra@x": 1}) == {
        "lr": 0.1,
        "model": "vgg16",
        "extra@x": 1,
    }


# --- locating and reading files ---------------------------------------------------------------


def test_resolve_space_path(tmp_path, monkeypatch):
    assert resolve_space_path("densenet") == shipped_dir() / "densenet.yaml"
    assert resolve_space_path("densenet.yaml") == shipped_dir() / "densenet.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("params: {lr: 0.1}\n")
    assert resolve_space_path(str(own)) == own
    monkeypatch.chdir(tmp_path)
    assert resolve_space_path("mine.yaml") == own.relative_to(tmp_path)  # a file beats a name
    assert load_space("mine.yaml").name == "mine"
    with pytest.raises(UserError, match="did you mean 'densenet'") as err:
        resolve_space_path("densnet")
    assert "all, demo, demo_latency, densenet" in str(err.value)
    with pytest.raises(UserError, match="directory"):
        resolve_space_path(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["empty"]),
        ("# only a comment\n", ["empty"]),
        ("- lr\n- dropout\n", ["mapping", "list"]),
        ("params:\n  lr: {type: uniform, low: 0.1\n  dropout: 0.2\n", ["invalid YAML", ":3:"]),
        ("params:\n  lr: 0.1\n  dropout: 0.2\n  lr: 0.2\n", ["duplicate key 'lr'", ":4:"]),
        ("params:\n\tlr: 0.1\n", ["invalid YAML", ":2:"]),
    ],
)
def test_bad_files(tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_space(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "params:\n"
        "  lr: &base {type: loguniform, low: 1e-4, high: 0.1}\n"
        "  weight_decay: {<<: *base, low: 1e-5}\n"
    )
    space = load_space(str(path))
    assert space.params[1].low == 1e-5 and space.params[1].high == 0.1


# --- overrides and round trip -----------------------------------------------------------------


def test_apply_overrides():
    space = load_space("simple_cnn")
    before = space.experiment.num_samples
    assert apply_overrides(space, epochs=None, seed=None) is space
    changed = apply_overrides(space, num_samples=3, seed=7, metric="val_loss", gpus_per_trial=0.5)
    assert changed.experiment.num_samples == 3 and changed.experiment.seed == 7
    assert changed.experiment.mode == "min" and changed.experiment.gpus_per_trial == 0.5
    assert changed.experiment.epochs == space.experiment.epochs
    assert space.experiment.num_samples == before != 3  # the original is untouched
    short = apply_overrides(space, epochs=1)
    assert (short.experiment.epochs, short.experiment.grace_period) == (1, 1)
    with pytest.raises(UserError, match="--grace-period=5 must be <= epochs=1"):
        apply_overrides(space, epochs=1, grace_period=5)
    with pytest.raises(UserError, match="--epochs must be >= 1, got 0"):
        apply_overrides(space, epochs=0)
    with pytest.raises(UserError, match="--metric='acc'"):
        apply_overrides(space, metric="acc")
    with pytest.raises(UserError, match="--gpus-per-trial"):
        apply_overrides(space, gpus_per_trial=1.5)
    with pytest.raises(TypeError):
        apply_overrides(space, epochz=3)


@pytest.mark.parametrize("name", SHIPPED)
def test_to_dict_round_trips(name, tmp_path):
    space = load_space(name)
    assert load_space_dict(space.to_dict(), source=space.source) == space
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    again = load_space(str(path))
    assert again.params == space.params and again.experiment == space.experiment


def test_experiment_defaults_and_mode():
    space = load_space_dict({"params": {"lr": 0.1}})
    assert space.experiment == ExperimentSettings() and space.experiment.mode == "max"
    assert space.name == "space" and space.description == ""


# --- validation -------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "name": "t",
    "experiment": {"epochs": 4, "grace_period": 1},
    "params": {
        "model": "simple_cnn",
        "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
    },
}


def _with(path: str, value: Any) -> dict:
    """BASE with the dotted key set (value None deletes it)."""
    d = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = d
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return d


def _param(spec: Any, name: str = "x") -> dict:
    return _with(f"params.{name}", spec)


U = "uniform"
BAD_SPACES = [
    ("top-level key", {**BASE, "parms": {}}, ["'parms'", "did you mean 'params'"]),
    ("not a mapping", ["lr"], ["mapping", "list"]),
    ("no params", _with("params", None), ["params"]),
    ("bad name", _with("name", "my space"), ["'my space'"]),
    ("experiment key", _with("experiment.epoch", 3), ["experiment.epoch", "'epochs'"]),
    ("experiment list", _with("experiment", [1]), ["experiment", "[1]"]),
    ("epochs 0", _with("experiment.epochs", 0), ["experiment.epochs", "0"]),
    ("epochs text", _with("experiment.epochs", "abc"), ["experiment.epochs", "'abc'"]),
    ("epochs fraction", _with("experiment.epochs", 2.5), ["experiment.epochs", "2.5"]),
    ("grace > epochs", _with("experiment.grace_period", 9), ["grace_period=9", "epochs=4"]),
    ("grace 0", _with("experiment.grace_period", 0), ["grace_period", "0"]),
    ("reduction 1", _with("experiment.reduction_factor", 1), ["reduction_factor", "1"]),
    ("samples 0", _with("experiment.num_samples", 0), ["num_samples", "0"]),
    ("metric", _with("experiment.metric", "val_accuracy"), ["val_accuracy", "'val_acc'"]),
    ("gpus 0", _with("experiment.gpus_per_trial", 0), ["gpus_per_trial", "0"]),
    ("gpus 1.5", _with("experiment.gpus_per_trial", 1.5), ["gpus_per_trial", "1.5"]),
    ("cpus 0", _with("experiment.cpus_per_trial", 0), ["cpus_per_trial", "0"]),
    ("top_k 0", _with("experiment.top_k", 0), ["top_k", "0"]),
    ("time_budget", _with("experiment.time_budget", -1), ["time_budget", "-1"]),
    ("max_concurrent", _with("experiment.max_concurrent", -2), ["max_concurrent", "-2"]),
    ("params list", _with("params", ["lr"]), ["params", "list"]),
    ("params empty", _with("params", {}), ["params", "empty"]),
    ("unknown param", _param(0.1, "lrr"), ["'lrr'", "did you mean 'lr'"]),
    ("experiment param", _param(5, "epochs"), ["params.epochs", "experiment.epochs"]),
    ("bad tag", _param(0.1, "lr@a-b"), ["params.lr@a-b", "'a-b'"]),
    ("bare list", _param([64, 128], "batch_size"), ["params.batch_size", "categorical"]),
    (
        "param key",
        _param({"type": U, "lowe": 0, "high": 0.5}, "dropout"),
        ["params.dropout", "'lowe'", "did you mean 'low'"],
    ),
    (
        "step on loguniform",
        _param({"type": "loguniform", "low": 1e-4, "high": 1, "step": 0.1}, "lr"),
        ["params.lr", "'step'"],
    ),
    ("missing type", _param({"low": 0, "high": 0.5}, "dropout"), ["params.dropout", "'type'"]),
    (
        "unknown type",
        _param({"type": "loguniforn", "low": 1e-4, "high": 1}, "lr"),
        ["'loguniforn'", "did you mean 'loguniform'"],
    ),
    ("missing high", _param({"type": U, "low": 0}, "dropout"), ["params.dropout", "'high'"]),
    ("missing choices", _param({"type": "categorical"}, "balance"), ["balance", "'choices'"]),
    ("missing value", _param({"type": "fixed"}, "balance"), ["balance", "'value'"]),
    (
        "text bound",
        _param({"type": U, "low": "abc", "high": 0.5}, "dropout"),
        ["params.dropout.low", "'abc'"],
    ),
    (
        "low >= high",
        _param({"type": U, "low": 0.5, "high": 0.5}, "dropout"),
        ["params.dropout", "low=0.5", "high=0.5"],
    ),
    (
        "log range <= 0",
        _param({"type": "loguniform", "low": 0, "high": 0.1}, "weight_decay"),
        ["params.weight_decay", "low=0"],
    ),
    (
        "int log low 0",
        _param({"type": "int", "low": 0, "high": 64, "log": True}, "width"),
        ["params.width", "low=0"],
    ),
    (
        "int step with log",
        _param({"type": "int", "low": 8, "high": 64, "step": 8, "log": True}, "width"),
        ["params.width", "step=8"],
    ),
    (
        "float in int",
        _param({"type": "int", "low": 0.5, "high": 6}, "crop_pad"),
        ["params.crop_pad.low", "0.5"],
    ),
    (
        "uniform on int",
        _param({"type": U, "low": 16, "high": 64}, "batch_size"),
        ["params.batch_size", "int"],
    ),
    (
        "uniform on str",
        _param({"type": "int", "low": 1, "high": 3}, "balance"),
        ["params.balance", "str"],
    ),
    (
        "empty choices",
        _param({"type": "categorical", "choices": []}, "balance"),
        ["params.balance", "empty"],
    ),
    (
        "choices text",
        _param({"type": "categorical", "choices": "none"}, "balance"),
        ["params.balance", "'none'"],
    ),
    (
        "duplicate choice",
        _param({"type": "categorical", "choices": [64, "64"]}, "batch_size"),
        ["params.batch_size", "duplicate", "'64'"],
    ),
    (
        "step 0",
        _param({"type": U, "low": 0, "high": 0.5, "step": 0}, "dropout"),
        ["params.dropout.step", "0"],
    ),
    (
        "step too big",
        _param({"type": U, "low": 0, "high": 0.5, "step": 0.75}, "dropout"),
        ["params.dropout.step", "0.75"],
    ),
    (
        "step not dividing",
        _param({"type": U, "low": 0, "high": 0.5, "step": 0.15}, "dropout"),
        ["params.dropout", "step=0.15"],
    ),
    (
        "int step not dividing",
        _param({"type": "int", "low": 16, "high": 60, "step": 16}, "width"),
        ["params.width", "step=16"],
    ),
    (
        "when unknown",
        _param({"type": U, "low": 0.8, "high": 0.9, "when": {"optimiser": "sgd"}}, "momentum"),
        ["params.momentum.when", "'optimiser'", "'optimizer'"],
    ),
    (
        "when later",
        _with(
            "params",
            {
                "momentum": {"type": "fixed", "value": 0.9, "when": {"optimizer": "sgd"}},
                "optimizer": "sgd",
            },
        ),
        ["params.momentum.when", "'optimizer'", "after"],
    ),
    (
        "when self",
        _param({"type": "fixed", "value": 0.9, "when": {"momentum": 0.9}}, "momentum"),
        ["params.momentum.when", "itself"],
    ),
    (
        "when never",
        _param({"type": "fixed", "value": 0.9, "when": {"optimizer": "sgdd"}}, "momentum"),
        ["params.momentum.when", "'sgdd'", "did you mean 'sgd'"],
    ),
    (
        "when out of range",
        _param({"type": "fixed", "value": 0.9, "when": {"lr": 0.5}}, "momentum"),
        ["params.momentum.when", "lr=0.5"],
    ),
    (
        "when empty",
        _param({"type": "fixed", "value": 0.9, "when": {}}, "momentum"),
        ["params.momentum.when"],
    ),
    ("unknown model", _with("params.model", "densnet169"), ["'densnet169'", "'densenet169'"]),
    (
        "unknown model choice",
        _with("params.model", {"type": "categorical", "choices": ["vgg16", "resnet50"]}),
        ["params.model", "'resnet50'"],
    ),
    (
        "wrong choice type",
        _param({"type": "categorical", "choices": ["abc"]}, "batch_size"),
        ["params.batch_size", "'abc'"],
    ),
    (
        "bad optimizer",
        _with("params.optimizer", {"type": "categorical", "choices": ["sgd", "adam"]}),
        ["optimizer", "'adam'", "did you mean 'adamw'"],
    ),
    (
        "dropout >= 1",
        _param({"type": U, "low": 0.0, "high": 1.0}, "dropout"),
        ["params.dropout.high", "dropout", "1.0"],
    ),
    ("probability > 1", _param(1.5, "hflip"), ["params.hflip", "1.5"]),
    (
        "negative lr",
        _with("params.lr", {"type": U, "low": -0.1, "high": 0.1}),
        ["params.lr.low", "-0.1"],
    ),
    (
        "bool as int",
        _param({"type": "fixed", "value": True}, "batch_size"),
        ["params.batch_size", "True"],
    ),
    (
        "both active",
        _with("params", {"lr@a": 0.1, "lr@b": 0.2}),
        ["params.lr@a", "params.lr@b", "lr"],
    ),
    (
        "plain and tagged",
        _with(
            "params",
            {
                "optimizer": "sgd",
                "lr": 0.1,
                "lr@sgd": {"type": "fixed", "value": 0.2, "when": {"optimizer": "sgd"}},
            },
        ),
        ["params.lr", "params.lr@sgd"],
    ),
]


BAD_SPACES += [
    ("points not a list", {**BASE, "points_to_evaluate": {"lr": 0.01}}, ["points_to_evaluate"]),
    (
        "point names a fixed param",
        {**BASE, "points_to_evaluate": [{"model": "simple_cnn"}]},
        ["points_to_evaluate[0].model", "not a sampled parameter"],
    ),
    (
        "point names an unknown param",
        {**BASE, "points_to_evaluate": [{"lrr": 0.01}]},
        ["points_to_evaluate[0].lrr", "did you mean 'lr'"],
    ),
    (
        "point outside the range",
        {**BASE, "points_to_evaluate": [{"lr": 0.5}]},
        ["points_to_evaluate[0].lr=0.5", "outside"],
    ),
    (
        "point not a choice",
        {**BASE, "points_to_evaluate": [{"optimizer": "adam"}]},
        ["points_to_evaluate[0].optimizer='adam'", "sgd, adamw"],
    ),
    (
        "refit budget not below the time budget",
        _with("experiment", {"epochs": 4, "time_budget": 60, "refit_budget": 60}),
        ["experiment.refit_budget=60", "time_budget=60"],
    ),
    (
        "refit of no configuration",
        _with("experiment", {"epochs": 4, "refit_top_k": 0}),
        ["experiment.refit_top_k must be >= 1", "got 0"],
    ),
]


def test_points_to_evaluate_parse_and_round_trip(tmp_path):
    space = load_space_dict(
        {**BASE, "points_to_evaluate": [{"lr": "1e-3", "optimizer": "sgd"}, {}]}, source="p.yaml"
    )
    assert space.points == ({"lr": 0.001, "optimizer": "sgd"}, {})
    again = load_space_dict(space.to_dict(), source="again")
    assert again.points == space.points
    assert "points_to_evaluate" not in load_space_dict(BASE).to_dict()


def test_search_budget_is_the_time_budget_less_the_refit():
    space = load_space_dict(_with("experiment", {"time_budget": 100, "refit_budget": 40}))
    assert space.experiment.search_budget == 60
    assert load_space_dict(_with("experiment", {"refit_budget": 40})).experiment.search_budget == 0


@pytest.mark.parametrize(
    ("space", "fragments"), [c[1:] for c in BAD_SPACES], ids=[c[0] for c in BAD_SPACES]
)
def test_validation_errors(space, fragments):
    with pytest.raises(UserError) as err:
        load_space_dict(space, source="bad.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("bad.yaml")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_exclusive_tags_are_accepted():
    ok = _with("params.lr", None)
    ok["params"]["lr@sgd"] = {
        "type": "uniform",
        "low": 0.01,
        "high": 0.2,
        "when": {"optimizer": "sgd"},
    }
    ok["params"]["lr@adamw"] = {
        "type": "uniform",
        "low": 1e-4,
        "high": 3e-3,
        "when": {"optimizer": ["adamw"]},
    }
    assert [p.setting for p in load_space_dict(ok).params][-2:] == ["lr", "lr"]


# --- Ray --------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_optuna_search_gets_full_configs():
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("all")
    search = OptunaSearch(space=define_by_run(space), metric="val_acc", mode="max", seed=0)
    first = search.suggest("t1")
    assert search.suggest("t1") == first  # the same trial asks again: same values
    second = search.suggest("t2")
    for config in (first, second):
        assert {"model", "optimizer", "dropout", "batch_size", "hflip"} <= set(config)
        TrainConfig.from_dict({**train_values(config), "epochs": space.experiment.epochs})
    fixed = load_space("densenet")
    config = OptunaSearch(space=define_by_run(fixed), metric="val_acc", mode="max", seed=0).suggest(
        "t1"
    )
    assert config["model"] == "densenet169"  # a constant returned by the define-by-run function
    assert TrainConfig.from_dict(train_values(config)).model == "densenet169"
