"""final.json's figures from the members' predictions (final_record): 95 % intervals beside
every accuracy and macro-F1, paired comparisons of the best trial with the runner-up and the
ensemble. Driven with made-up probabilities, as the search's final evaluation hands them over."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from fer_search import stats
from fer_search.tuning.final import Member, final_record

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FIGURES = ("val_acc", "test_acc", "test_acc_flip", "test_f1")


def split(n: int, seed: int) -> SimpleNamespace:
    labels = np.random.default_rng(seed).integers(0, len(CLASSES), n)
    return SimpleNamespace(labels=labels, class_names=CLASSES)


def probs_right_on(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Probabilities whose argmax is the label on about `share` of the images."""
    rng = np.random.default_rng(seed)
    wrong = (labels + rng.integers(1, len(CLASSES), len(labels))) % len(CLASSES)
    pred = np.where(rng.random(len(labels)) < share, labels, wrong)
    probs = rng.random((len(labels), len(CLASSES))) * 0.5
    probs[np.arange(len(labels)), pred] += 1.0
    return probs / probs.sum(1, keepdims=True)


def member(index: int, val, test, share: float, seed: int) -> Member:
    return Member(
        index=index,
        config={"model": "simple_cnn", "seed": seed},
        val=probs_right_on(val.labels, share, seed),
        test=probs_right_on(test.labels, share, seed + 100),
        test_tta=probs_right_on(test.labels, share, seed + 200),
    )


def pool(*names: str) -> list[dict]:
    """The leaderboard rows of the pool, as final_record names its members."""
    return [{"trial_id": name} for name in names]


POOL = pool("t0", "t1", "t2")


@pytest.fixture(scope="module")
def splits():
    return split(400, 1), split(600, 2)


@pytest.fixture(scope="module")
def three(splits):
    val, test = splits
    return [member(i, val, test, share, i) for i, share in enumerate((0.7, 0.65, 0.6))]


def test_every_figure_has_a_seeded_interval_around_it(splits, three):
    val, test = splits
    final = final_record(three, POOL, val, test)
    assert final["ci_method"] == stats.METHOD
    for name in ("best", "ensemble"):
        for key in FIGURES:
            low, high = final[name][f"{key}_ci95"]
            assert low <= final[name][key] <= high and high - low > 0.01, (name, key)
    best = final["best"]
    # the figures are the ones final.json always held
    assert best["test_acc"] == float((three[0].test.argmax(1) == test.labels).mean())
    assert best["test_acc"] == best["metrics"]["accuracy"]
    assert best["test_f1"] == best["metrics"]["macro_f1"]
    assert final_record(three, POOL, val, test) == final  # the same numbers every time
    json.dumps(final, allow_nan=False)  # and written as they are


def test_the_best_trial_is_compared_with_the_runner_up_and_the_ensemble(splits, three):
    val, test = splits
    final = final_record(three, POOL, val, test)
    runner_up, ensemble = (
        final["comparisons"][k] for k in ("best_vs_runner_up", "best_vs_ensemble")
    )
    assert (runner_up["a"], runner_up["b"]) == ("t0", "t1")
    assert (ensemble["a"], ensemble["b"]) == ("t0", ["t0", "t1", "t2"])
    ahead = final["best"]["test_acc"] - final["ensemble"]["test_acc"]
    assert ensemble["test"]["difference"] == pytest.approx(ahead)
    for found in (runner_up, ensemble):
        for where in ("val", "test"):
            result = found[where]
            low, high = result["difference_ci95"]
            assert low <= result["difference"] <= high and 0 <= result["p_value"] <= 1
            assert result["within_noise"] == (low <= 0 <= high)


def test_a_clear_lead_is_beyond_noise_and_a_copy_is_level(splits):
    val, test = splits
    strong, weak = member(0, val, test, 0.9, 7), member(1, val, test, 0.3, 8)
    lead = final_record([strong, weak], pool("s", "w"), val, test)
    lead = lead["comparisons"]["best_vs_runner_up"]["test"]
    assert lead["difference"] > 0.4 and not lead["within_noise"] and lead["p_value"] < 1e-6
    copy = dataclasses.replace(strong, index=1)
    level = final_record([strong, copy], pool("s", "copy"), val, test)
    level = level["comparisons"]["best_vs_runner_up"]["test"]
    assert level["difference"] == 0 and level["within_noise"] and level["p_value"] == 1.0


def test_one_member_has_no_ensemble_and_nothing_to_compare(splits, three):
    val, test = splits
    final = final_record(three[:1], POOL, val, test)
    assert final["ensemble"] is None and final["comparisons"] == {}
    assert final["best"]["test_acc_ci95"][0] <= final["best"]["test_acc"]


class Saved:
    """A Ray checkpoint as the final evaluation uses one: a directory holding checkpoint.pt."""

    def __init__(self, directory):
        self.directory = directory

    def as_directory(self):
        import contextlib

        return contextlib.nullcontext(str(self.directory))


def test_members_val_probabilities_are_those_their_trial_stored(tmp_path):
    import torch

    from fer_search import engine
    from fer_search.config import TrainConfig
    from fer_search.data import make_demo
    from fer_search.tuning.engine_trainer import EngineTrainer
    from fer_search.tuning.final import evaluate_members

    demo = make_demo(size=0.2)
    train, val, test = (demo.splits[name] for name in ("train", "val", "test"))
    new, old = tmp_path / "new", tmp_path / "old"
    for where in (new, old):
        where.mkdir()
    cfg = TrainConfig(epochs=1, width=8, batch_size=32, device="cpu")
    engine.train(cfg, train, val, on_epoch=lambda _, save: save(new / "checkpoint.pt"))
    payload = engine.load_checkpoint(new / "checkpoint.pt")
    stored = payload["best_val_probs"]
    model = engine.model_from_checkpoint({**payload, "state_dict": engine.best_state_dict(payload)})
    predicted = engine.predict_probs(model, val.images)
    # a checkpoint from before they were stored: its model predicts val again
    engine.save_checkpoint(old / "checkpoint.pt", {**payload, "best_val_probs": None})

    trainer = EngineTrainer()
    members, reads = evaluate_members(trainer, {0: Saved(new), 1: Saved(old)}, val, test, "cpu", 2)
    assert reads.checkpoints == 2 and reads.checkpoint_bytes > 0
    assert np.array_equal(members[0].val, stored.float().numpy())
    np.testing.assert_allclose(members[0].val, predicted, atol=1e-3)
    np.testing.assert_array_equal(members[1].val, predicted)
    assert "best_val_probs" not in members[0].loaded.payload  # best/best.pt stays compact
    # stored probabilities are what is read: a marked copy comes back as it was stored
    marked = torch.full_like(stored, 1 / stored.shape[1])
    engine.save_checkpoint(new / "checkpoint.pt", {**payload, "best_val_probs": marked})
    again, _ = evaluate_members(trainer, {0: Saved(new)}, val, test, "cpu")
    assert np.array_equal(again[0].val, marked.float().numpy())


def test_the_selected_ensemble_compares_greedy_bagged_and_top_k_on_val(splits, three):
    from fer_search.ensemble import choose_ensemble
    from fer_search.tuning.final import selected_ensemble

    val, test = splits
    choice = choose_ensemble([m.val for m in three], val.labels, 2)
    members = dict(enumerate(three))
    # the members of the candidates val did not choose are not loaded: no test probabilities
    loaded = {i: m for i, m in members.items() if choice["weights"][i] or i < 2}
    chosen = selected_ensemble(choice, [m.val for m in three], loaded, POOL, val, test, top_k=2)
    assert "bagged form" in chosen["method"]
    on_val = {"selection": chosen["selection"]["val_acc"], "bagged": chosen["bagged"]["val_acc"]}
    on_val["top_k"] = chosen["top_k_val_acc"]
    assert chosen["val_acc"] == max(on_val.values()) == on_val[chosen["chosen"]]
    for name in ("selection", "bagged"):  # on val each; on test only the one val chose
        assert set(chosen[name]["members"]) <= {"t0", "t1", "t2"}
        tested = chosen[name]["test_acc"]
        assert (tested is not None) == (name == chosen["chosen"])
        assert tested is None or 0 <= tested <= 1
    json.dumps(chosen, allow_nan=False)
