"""The private Ray and Optuna internals fer-search still uses (fer_search/tuning/_ray_compat.py)
are still there in the installed releases; when one goes, this says which and where to fix."""

from __future__ import annotations

import pytest


def test_the_ray_and_optuna_internals_we_use_still_exist():
    pytest.importorskip("ray.tune.search.optuna")
    import optuna
    import ray

    from fer_search.tuning import _ray_compat

    missing = _ray_compat.missing_internals()
    assert not missing, (
        f"ray {ray.__version__} / optuna {optuna.__version__} changed what "
        f"fer_search/tuning/_ray_compat.py relies on (checked on {_ray_compat.CHECKED_ON}): "
        + "; ".join(missing)
    )


def test_the_searcher_reaches_its_study_and_trials_through_the_compat_layer():
    optuna = pytest.importorskip("optuna")
    from fer_search.space import load_space
    from fer_search.tuning import _ray_compat
    from fer_search.tuning.optuna_searcher import PruningOptunaSearch, SpaceSampler

    searcher = PruningOptunaSearch(
        space=SpaceSampler(load_space("demo")),
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_t=2,
    )
    config = searcher.suggest("t1")
    trials = _ray_compat.optuna_search_trials(searcher)
    assert config["trial_number"] == trials["t1"].number == 0
    assert _ray_compat.optuna_search_study(searcher).trials[0].number == 0
    searcher.on_trial_complete("t1", {"val_acc": 0.5, "epoch": 2})
    assert "t1" in _ray_compat.optuna_search_completed(searcher)
