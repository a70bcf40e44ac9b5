"""The Optuna and optuna-dashboard formats fer_search.tuning._optuna_compat relies on (Optuna
5.1, optuna-dashboard 0.21): a failure here means an upgrade changed one of them."""

from __future__ import annotations

import datetime as dt

import pytest

optuna = pytest.importorskip("optuna")


def study_with_one_running_trial(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    return study, storage, trial


def test_optuna_dashboard_reads_the_constraints_we_write(tmp_path):
    serializer = pytest.importorskip("optuna_dashboard._serializer")
    from fer_search.tuning._optuna_compat import set_constraints

    study, _, trial = study_with_one_running_trial(tmp_path)
    set_constraints(trial, {"max_params": 2e6, "max_latency_ms": -0.5})
    study.tell(trial, 0.5)
    (frozen,) = study.get_trials()
    assert list(frozen.constraints.values()) == [2e6, -0.5]  # what Optuna's samplers read, once
    serialized = serializer.serialize_frozen_trial(study._study_id, frozen, {})
    assert serialized["constraints"] == [2e6, -0.5]  # the dashboard marks it infeasible


def test_a_trial_s_end_time_can_be_set_after_it_was_told(tmp_path):
    from fer_search.tuning._optuna_compat import set_trial_end

    study, storage, trial = study_with_one_running_trial(tmp_path)
    study.tell(trial, 0.5)
    set_trial_end(storage, trial._trial_id, 1700000000.0)
    (frozen,) = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert frozen.datetime_complete == dt.datetime.fromtimestamp(1700000000.0)


def test_a_study_attribute_can_be_removed(tmp_path):
    from fer_search.tuning._optuna_compat import drop_study_attrs

    study, storage, _ = study_with_one_running_trial(tmp_path)
    study.set_user_attr("final_test_acc_tta", 0.7)
    study.set_user_attr("final_test_acc", 0.69)
    drop_study_attrs(storage, "s", ("final_test_acc_tta",))
    assert optuna.load_study(study_name="s", storage=storage).user_attrs == {"final_test_acc": 0.69}
