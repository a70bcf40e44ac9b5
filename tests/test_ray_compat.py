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


def test_the_pbt_log_becomes_each_trials_lineage(tmp_path):
    """A pbt_global.txt as Ray 2.60 writes it: trial 1 copies trial 0 at epoch 2 with a new lr;
    then trial 0 copies trial 1 (its tag now with @perturbed) at epoch 4, nothing changed."""
    import json

    from fer_search.tuning import _ray_compat
    from fer_search.tuning.pbt import lineage_text, trial_lineage

    donor = {"lr": 0.01, "weight_decay": 1e-4, "model": "simple_cnn", "trial_number": 0}
    lines = [
        ["1", "0", 2, 2, donor, {**donor, "lr": 0.012}],
        ["0", "1", 4, 4, {**donor, "lr": 0.012}, {**donor, "lr": 0.012}],
    ]
    (tmp_path / "pbt_global.txt").write_text("".join(json.dumps(x) + "\n" for x in lines))
    exploits = _ray_compat.pbt_exploits(tmp_path)
    assert [(e.target_tag, e.donor_tag, e.target_iteration) for e in exploits] == [
        ("1", "0", 2), ("0", "1", 4)
    ]  # fmt: skip
    saved = ["0@perturbed[lr=0.012]", "1@perturbed[lr=0.012]"]  # trials' experiment_tag
    tags = {_ray_compat.pbt_original_tag(tag): f"abc_0000{i}" for i, tag in enumerate(saved)}
    lineage = trial_lineage(exploits, tags, ["lr", "weight_decay"])
    assert lineage["abc_00001"] == [
        {"from": "abc_00000", "epoch": 2, "from_epoch": 2, "changes": {"lr": [0.01, 0.012]}}
    ]
    assert (
        lineage_text(lineage["abc_00001"])
        == "copied abc_00000 (its epoch 2) at epoch 2: lr 0.01->0.012"
    )
    assert (
        lineage_text(lineage["abc_00000"]) == "copied abc_00001 (its epoch 4) at epoch 4: no change"
    )
    assert _ray_compat.pbt_point_index("3_lr=0.1@perturbed[lr=0.12]") == 3
    (tmp_path / "pbt_global.txt").write_text('{"not": "a list"}\n')
    with pytest.raises(ValueError, match=r"pbt_global.txt:1: not Ray 2.60.0's PBT log line"):
        _ray_compat.pbt_exploits(tmp_path)
