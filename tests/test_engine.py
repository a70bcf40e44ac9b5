"""fer_search.engine (train loop, schedules, checkpoints, prediction) and fer_search.evaluation.

Tiny demo data (210 train / 70 val images), simple_cnn at width 8, one or two epochs, CPU.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_search import engine
from fer_search.config import EMOTIONS, EpochStats, TrainConfig
from fer_search.data import FERSplit, make_demo
from fer_search.engine import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    lr_factor,
    mirror_balance,
    model_from_checkpoint,
    predict_probs,
    save_checkpoint,
    train,
)
from fer_search.errors import UserError
from fer_search.evaluation import classification_metrics, format_metrics, plot_confusion
from fer_search.models import create_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# the numbers of an epoch that must repeat exactly under one seed (timings never do)
LEARNED = ("train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "lr")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits() -> tuple[FERSplit, FERSplit]:
    demo = make_demo(size=0.2)
    full = demo.splits["train"]
    train_split = FERSplit("train", full.images[:210], full.labels[:210], full.class_names)
    return train_split, demo.splits["val"]


def config(**overrides) -> TrainConfig:
    values = dict(epochs=1, width=8, batch_size=32, device="cpu", eval_batch_size=128)
    values.update(overrides)
    return TrainConfig(**values)


def learned(history: list[EpochStats]) -> list[tuple[float, ...]]:
    return [tuple(getattr(h, name) for name in LEARNED) for h in history]


def assert_sane(stats: EpochStats) -> None:
    for f in dataclasses.fields(EpochStats):
        value = getattr(stats, f.name)
        if f.name not in ("extra", "precision"):
            assert math.isfinite(value), f"{f.name}={value!r}"
    assert stats.precision in ("bf16", "fp16", "fp32")
    assert 0.0 <= stats.train_acc <= 1.0 and 0.0 <= stats.val_acc <= 1.0
    assert 0.0 <= stats.val_f1 <= 1.0
    assert stats.train_loss > 0 and stats.val_loss > 0
    assert stats.lr > 0 and stats.images_per_s > 0 and stats.epoch_time > 0


# --------------------------------------------------------------------------- train


def test_train_reports_every_epoch_and_keeps_the_best(splits):
    train_split, val_split = splits
    result = train(config(epochs=2), train_split, val_split)

    assert result.status == "completed"
    assert result.epochs_run == 2
    assert [h.epoch for h in result.history] == [1, 2]
    for stats in result.history:
        assert_sane(stats)
    accs = [h.val_acc for h in result.history]
    assert result.best_epoch == accs.index(max(accs)) + 1  # the first epoch reaching the best
    assert result.best_val_acc == max(accs)
    assert result.model_args["name"] == "simple_cnn" and result.model_args["width"] == 8
    # the returned model holds the best epoch's weights, not the last epoch's
    probs = predict_probs(result.model, val_split.images)
    assert float((probs.argmax(1) == val_split.labels).mean()) == pytest.approx(result.best_val_acc)


def test_on_epoch_returning_true_stops_training(splits):
    seen: list[int] = []

    def stop_now(stats, save):
        seen.append(stats.epoch)
        return True

    result = train(config(epochs=3), *splits, on_epoch=stop_now)
    assert result.status == "stopped"
    assert "stopped after epoch 1" in result.message
    assert seen == [1]
    assert result.epochs_run == 1 and len(result.history) == 1
    assert result.best_epoch == 1


def test_save_callback_checkpoint_rebuilds_the_same_model(splits, tmp_path):
    train_split, val_split = splits
    path = tmp_path / "now.pt"
    result = train(config(), train_split, val_split, on_epoch=lambda stats, save: save(path))

    payload = load_checkpoint(path)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["epoch"] == 1 and payload["best_epoch"] == 1
    assert payload["class_names"] == list(EMOTIONS)
    assert payload["config"]["width"] == 8
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write cleaned up after itself
    rebuilt = model_from_checkpoint(payload)
    assert not rebuilt.training
    # one epoch: "now" is also the best, which is what result.model holds (trained in
    # channels_last where bf16 runs natively: another conv kernel, equal to float rounding)
    np.testing.assert_allclose(
        predict_probs(rebuilt, val_split.images),
        predict_probs(result.model, val_split.images),
        rtol=1e-5,
        atol=1e-6,
    )


def test_best_payload_round_trips_through_save_and_load(splits, tmp_path):
    train_split, val_split = splits
    cfg = config()
    result = train(cfg, train_split, val_split)
    path = tmp_path / "best.pt"
    save_checkpoint(path, engine.best_payload(result, cfg, train_split.class_names))

    payload = load_checkpoint(tmp_path)  # a run directory finds its best.pt
    assert payload["best_val_acc"] == result.best_val_acc
    assert [h["epoch"] for h in payload["history"]] == [1]
    np.testing.assert_allclose(  # equal to float rounding (see the test above)
        predict_probs(model_from_checkpoint(payload), val_split.images),
        predict_probs(result.model, val_split.images),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["plain", "ema"])
def test_resume_continues_after_the_saved_epoch(splits, tmp_path, ema):
    cfg = config(epochs=2, ema=ema)
    path = tmp_path / "epoch1.pt"

    def save_first(stats, save):
        if stats.epoch == 1:
            save(path)

    first = train(cfg, *splits, on_epoch=save_first)
    payload = load_checkpoint(path)
    assert payload["epoch"] == 1 and len(payload["history"]) == 1

    epochs_seen: list[int] = []
    resumed = train(
        cfg, *splits, resume=payload, on_epoch=lambda stats, save: epochs_seen.append(stats.epoch)
    )
    assert epochs_seen == [2]  # epoch 1 is not trained again
    assert resumed.status == "completed"
    assert [h.epoch for h in resumed.history] == [1, 2]
    # exactly the uninterrupted run: weights, optimiser, EMA and both random streams restored
    assert learned(resumed.history) == learned(first.history)
    assert_sane(resumed.history[1])
    assert resumed.best_val_acc == max(h.val_acc for h in resumed.history)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_run_resumed_with_new_settings_trains_with_them(splits, tmp_path, optimizer):
    """PBT resumes a trial from another's checkpoint with a perturbed lr, weight decay and
    augmentation: the optimiser state comes back, the checkpoint's lr and weight decay do not,
    and the schedule scales the new lr from the step it reached."""
    old = config(epochs=3, optimizer=optimizer, lr=0.01, weight_decay=1e-4, schedule="cosine")
    path = tmp_path / "epoch1.pt"
    train(old, *splits, on_epoch=lambda stats, save: save(path) if stats.epoch == 1 else None)
    payload = load_checkpoint(path)
    assert payload["optimizer"]["param_groups"][0]["lr"] != 0.05

    new = dataclasses.replace(old, lr=0.05, weight_decay=3e-3, rotation=10.0)
    seen: list[tuple[int, float, dict]] = []

    def record(stats, save):
        save(tmp_path / f"resumed{stats.epoch}.pt")
        groups = load_checkpoint(tmp_path / f"resumed{stats.epoch}.pt")["optimizer"]["param_groups"]
        seen.append((stats.epoch, stats.lr, groups))

    train(new, *splits, resume=payload, on_epoch=record)
    steps = len(splits[0]) // new.batch_size
    assert [epoch for epoch, _, _ in seen] == [2, 3]
    for epoch, lr, groups in seen:  # the last step's lr on the new cosine schedule
        assert lr == pytest.approx(0.05 * lr_factor(new, epoch * steps - 1, 3 * steps, steps))
        assert [g["weight_decay"] for g in groups] == [3e-3, 0.0]


def test_resume_from_a_finished_run_trains_nothing(splits, tmp_path):
    cfg = config()
    path = tmp_path / "last.pt"
    first = train(cfg, *splits, on_epoch=lambda stats, save: save(path))
    again = train(cfg, *splits, resume=load_checkpoint(path))
    assert again.status == "completed"
    assert learned(again.history) == learned(first.history)
    assert again.best_epoch == first.best_epoch and again.best_val_acc == first.best_val_acc


def test_same_seed_gives_the_same_history(splits):
    cfg = config(epochs=2, rotation=10.0, erasing=0.5, mixup=0.2)
    first = train(cfg, *splits)
    second = train(cfg, *splits)
    other = train(dataclasses.replace(cfg, seed=1), *splits)
    assert learned(first.history) == learned(second.history)
    assert learned(first.history) != learned(other.history)


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["plain", "ema"])
def test_checkpoints_keep_the_best_epochs_val_probabilities(splits, tmp_path, ema):
    """What the final evaluation reads instead of predicting val again: every checkpoint holds
    the best epoch's val probabilities, those its best weights predict, in float16."""
    train_split, val_split = splits
    cfg = config(epochs=3, ema=ema, lr=0.05)
    seen: list[tuple[int, int, torch.Tensor]] = []

    def save_each(stats, save):
        path = tmp_path / f"epoch{stats.epoch}.pt"
        save(path)
        payload = load_checkpoint(path)
        seen.append((stats.epoch, payload["best_epoch"], payload["best_val_probs"]))
        best = engine.best_state_dict(payload)
        predicted = predict_probs(
            model_from_checkpoint({**payload, "state_dict": best}), val_split.images
        )
        stored = payload["best_val_probs"]
        assert stored.dtype == torch.float16 and tuple(stored.shape) == predicted.shape
        np.testing.assert_allclose(stored.float().numpy(), predicted, atol=1e-3, rtol=1e-3)
        assert (stored.float().numpy().argmax(1) == predicted.argmax(1)).all()

    result = train(cfg, train_split, val_split, on_epoch=save_each)
    # an epoch that did not improve carries the earlier best epoch's probabilities on
    assert [best for _, best, _ in seen][-1] == result.best_epoch
    for epoch, best, probs in seen:
        assert torch.equal(probs, seen[best - 1][2]), epoch
    resumed = train(cfg, *splits, resume=load_checkpoint(tmp_path / "epoch3.pt"))
    assert resumed.epochs_run == 3  # nothing left to train; the probabilities were restored


def test_compact_probs_keep_each_images_predicted_class():
    probs = np.array([[0.30004, 0.30006, 0.1], [0.9, 0.05, 0.05], [0.2, 0.4, 0.4]], np.float32)
    assert probs[0, 0].astype(np.float16) == probs[0, 1].astype(np.float16)  # a rounding tie
    half = engine.compact_probs(probs)
    assert half.dtype == torch.float16
    assert half.float().numpy().argmax(1).tolist() == probs.argmax(1).tolist() == [1, 0, 1]
    np.testing.assert_allclose(half.float().numpy(), probs, atol=1e-3)


def test_every_epochs_val_acc_has_its_interval(splits):
    result = train(config(epochs=2), *splits)
    for stats in result.history:
        assert stats.val_acc_ci95_lo <= stats.val_acc <= stats.val_acc_ci95_hi
        assert stats.val_acc_ci95_hi - stats.val_acc_ci95_lo > 0.05  # 70 images: wide
    best = result.history[result.best_epoch - 1]
    assert result.best_val_acc_ci95 == [best.val_acc_ci95_lo, best.val_acc_ci95_hi]


def test_ema_decay_warms_up_to_the_configured_decay():
    cfg = config(ema=0.999)
    decays = [engine.ema_decay(cfg, step) for step in range(20000)]
    assert decays[0] == pytest.approx(0.1)  # the first average mostly takes the new weights
    assert all(a <= b for a, b in zip(decays, decays[1:], strict=False))
    assert decays[-1] == pytest.approx(0.999)


def test_ema_is_what_is_validated_and_kept(splits, tmp_path):
    train_split, val_split = splits
    path = tmp_path / "last.pt"
    cfg = config(epochs=2, ema=0.9)
    result = train(cfg, train_split, val_split, on_epoch=lambda stats, save: save(path))
    payload = load_checkpoint(path)
    raw, ema = payload["state_dict"], payload["ema_state_dict"]
    assert ema is not None and ema.keys() == raw.keys()
    weight = "body.0.weight"
    assert not torch.equal(raw[weight], ema[weight])  # an average, not a copy
    counter = "body.1.num_batches_tracked"
    assert int(ema[counter]) == int(raw[counter]) == 2 * (len(train_split) // 32)
    # the returned model is the best epoch's average, and its val accuracy is the reported one
    probs = predict_probs(result.model, val_split.images)
    assert float((probs.argmax(1) == val_split.labels).mean()) == pytest.approx(result.best_val_acc)
    best = engine.best_state_dict(payload)  # the best epoch's average
    if result.best_epoch == 2:  # written at the best epoch: stored once, as the EMA
        assert payload["best_state_dict"] is None and payload["best_is"] == "ema"
        assert torch.equal(best[weight], ema[weight])
    model = engine.model_from_checkpoint({**payload, "state_dict": best})
    kept = predict_probs(model, val_split.images)
    assert float((kept.argmax(1) == val_split.labels).mean()) == pytest.approx(result.best_val_acc)


def test_ema_must_be_below_one():
    with pytest.raises(UserError, match=r"ema must be in \[0, 1\)"):
        TrainConfig(ema=1.0).validate()


@pytest.mark.parametrize("batch_size", [32, 512], ids=["many-steps", "one-step-per-epoch"])
def test_divergence_stops_with_status_nan(splits, batch_size):
    # batch 512 > 210 images: one step per epoch, so the training loss of that step is still
    # finite and only the validation outputs show the blow-up
    result = train(config(epochs=2, lr=1e6, batch_size=batch_size, schedule="constant"), *splits)
    assert result.status == "nan"
    assert "non-finite" in result.message and "epoch 1" in result.message
    assert result.history == [] and result.epochs_run == 0
    assert result.best_val_acc == 0.0


def test_nan_forward_stops_with_status_nan(splits, monkeypatch):
    def nan_model(*args, **kwargs):
        model = create_model(*args, **kwargs)
        forward = model.forward
        model.forward = lambda x: forward(x) * float("nan")
        return model

    monkeypatch.setattr(engine.prepare, "create_model", nan_model)
    result = train(config(epochs=2), *splits)
    assert result.status == "nan"
    assert "non-finite training loss at epoch 1" in result.message


def test_user_errors_before_training(splits):
    train_split, val_split = splits
    empty = FERSplit("val", val_split.images[:0], val_split.labels[:0], val_split.class_names)
    with pytest.raises(UserError, match="non-empty"):
        train(config(), train_split, empty)
    with pytest.raises(UserError, match="schedule"):
        train(config(schedule="cosin"), train_split, val_split)
    with pytest.raises(UserError, match="did you mean 'densenet169'"):
        train(config(model="densnet169"), train_split, val_split)


@pytest.mark.parametrize("balance", ["mirror", "weighted"])
def test_balancing_trains_on_imbalanced_data(splits, balance):
    train_split, val_split = splits
    # keep a third of "angry" only, so balancing has something to do
    angry = np.flatnonzero(train_split.labels == 0)
    keep = np.setdiff1d(np.arange(len(train_split)), angry[len(angry) // 3 :])
    skewed = FERSplit(
        "train", train_split.images[keep], train_split.labels[keep], train_split.class_names
    )
    result = train(config(balance=balance), skewed, val_split)
    assert result.status == "completed"
    assert_sane(result.history[0])


def test_soft_labels_train(splits):
    train_split, val_split = splits
    rng = np.random.default_rng(0)
    votes = rng.dirichlet(np.ones(len(EMOTIONS)), size=len(train_split)).astype(np.float32)
    votes[np.arange(len(train_split)), train_split.labels] += 1.0
    soft = votes / votes.sum(1, keepdims=True)
    soft_split = FERSplit(
        "train", train_split.images, train_split.labels, train_split.class_names, soft
    )
    result = train(config(label_smoothing=0.1), soft_split, val_split)
    assert result.status == "completed"
    assert_sane(result.history[0])


@pytest.mark.parametrize(
    "knobs",
    [
        {"mixup": 0.4},
        {"cutmix": 1.0},
        {"erasing": 0.5, "rotation": 15.0},
        {"scale": 0.1, "brightness": 0.2, "contrast": 0.2, "grad_clip": 1.0, "warmup_epochs": 0.5},
    ],
    ids=["mixup", "cutmix", "erasing+rotation", "affine+photometric+clip+warmup"],
)
def test_augmentation_knobs_train(splits, knobs):
    result = train(config(optimizer="adamw", lr=1e-3, **knobs), *splits)
    assert result.status == "completed"
    assert_sane(result.history[0])


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "plateau", "constant"])
def test_schedules_set_the_reported_learning_rate(splits, schedule):
    cfg = config(epochs=2, schedule=schedule, lr=0.01)
    result = train(cfg, *splits)
    assert result.status == "completed"
    first, last = (h.lr for h in result.history)
    if schedule in ("constant", "plateau"):  # plateau halves only after 3 epochs without gain
        assert first == last == pytest.approx(cfg.lr)
    else:
        assert 0 < last < first <= cfg.lr
        assert last < 0.05 * cfg.lr  # the last step of a cosine tail is close to 0


# --------------------------------------------------------------------------- lr schedule


def factors(cfg: TrainConfig, total: int = 100, per_epoch: int = 10) -> list[float]:
    return [lr_factor(cfg, step, total, per_epoch) for step in range(total)]


def test_lr_factor_warmup_rises_to_the_peak():
    values = factors(config(schedule="cosine", warmup_epochs=2))
    warm = values[:20]
    assert warm[0] == pytest.approx(1 / 20)
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False))
    assert warm[-1] == pytest.approx(1.0)
    assert values[20] == pytest.approx(1.0)  # cosine starts at the peak


def test_lr_factor_cosine_falls_to_near_zero():
    values = factors(config(schedule="cosine"))
    assert values[0] == pytest.approx(1.0)
    assert values[50] == pytest.approx(0.5)
    assert values[-1] < 0.01
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_lr_factor_onecycle_ramps_up_for_a_quarter_then_anneals():
    values = factors(config(schedule="onecycle"))
    assert 0.04 < values[0] < 0.1
    assert values[23] < values[24] == pytest.approx(1.0)  # the peak after a quarter
    assert values[25] == pytest.approx(1.0) and values[26] < 1.0
    assert values[-1] < 0.01


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_lr_factor_constant_stays_one(schedule):
    assert factors(config(schedule=schedule)) == [1.0] * 100
    warm = factors(config(schedule=schedule, warmup_epochs=1))
    assert warm[0] == pytest.approx(0.1) and warm[9:] == [1.0] * 91


def test_plateau_halves_after_patience_epochs_without_gain():
    plateau = engine.Plateau(patience=2)
    for acc in (0.3, 0.4, 0.4, 0.4):
        plateau.step(acc)
    assert plateau.scale == 1.0
    plateau.step(0.39)
    assert plateau.scale == 0.5
    plateau.step(0.5)
    assert plateau.scale == 0.5 and plateau.best == 0.5


# --------------------------------------------------------------------------- mirror_balance


def test_mirror_balance_tops_every_class_up_with_mirrored_copies():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1 + [3] * 6, dtype=np.int64)
    rng = np.random.default_rng(1)
    labels = rng.permutation(labels)
    index, mirror = mirror_balance(labels, 4, seed=0)

    assert np.bincount(labels[index], minlength=4).tolist() == [10, 10, 10, 10]
    assert index[: len(labels)].tolist() == list(range(len(labels)))  # originals first, unflipped
    assert not mirror[: len(labels)].any()
    assert mirror[len(labels) :].all()
    assert mirror.sum() == 40 - len(labels)
    # added copies come from their own class
    added = labels[index[len(labels) :]]
    assert np.bincount(added, minlength=4).tolist() == [0, 7, 9, 4]


def test_mirror_balance_is_deterministic_and_skips_absent_classes():
    labels = np.array([0] * 8 + [1] * 2, dtype=np.int64)
    first = mirror_balance(labels, 3, seed=5)
    second = mirror_balance(labels, 3, seed=5)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # class 2 has no image to mirror: it stays empty
    assert np.bincount(labels[first[0]], minlength=3).tolist() == [8, 8, 0]


def test_mirror_balance_of_balanced_labels_adds_nothing():
    labels = np.repeat(np.arange(3, dtype=np.int64), 4)
    index, mirror = mirror_balance(labels, 3, seed=0)
    assert index.tolist() == list(range(12)) and not mirror.any()


# --------------------------------------------------------------------------- load_checkpoint


class _Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def assert_one_line(error: pytest.ExceptionInfo[UserError]) -> str:
    text = str(error.value)
    assert text and "\n" not in text
    return text


def test_load_checkpoint_refuses_code_in_a_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": _Payload(marker)}, path)

    with pytest.raises(UserError, match="cannot be read safely") as error:
        load_checkpoint(path)
    assert_one_line(error)
    assert not marker.exists()
    # control: the file really does run code when loaded unsafely
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_another_programs_file(tmp_path):
    for i, thing in enumerate(({"a": 1}, [1, 2, 3], {"format": "something-else"})):
        path = tmp_path / f"other{i}.pt"
        torch.save(thing, path)
        with pytest.raises(UserError, match="not a fer-search checkpoint") as error:
            load_checkpoint(path)
        assert_one_line(error)


def test_load_checkpoint_missing_and_garbage_files(tmp_path):
    with pytest.raises(UserError, match="does not exist") as error:
        load_checkpoint(tmp_path / "nope.pt")
    assert_one_line(error)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path)  # a directory without best.pt / checkpoint.pt / last.pt
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UserError, match="cannot be read safely") as error:
        load_checkpoint(garbage)
    assert_one_line(error)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UserError):
        load_checkpoint(empty)


# --------------------------------------------------------------------------- predict_probs


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("simple_cnn", len(EMOTIONS), width=8).eval()


@pytest.mark.parametrize("tta", ["none", "flip", "crops"])
def test_predict_probs_gives_a_distribution_per_image(net, splits, tta):
    images = splits[1].images[:20]
    probs = predict_probs(net, images, tta=tta, batch_size=8)
    assert probs.shape == (20, len(EMOTIONS)) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # batching and the input type change nothing
    np.testing.assert_allclose(
        predict_probs(net, torch.from_numpy(images), tta=tta, batch_size=512), probs, atol=1e-6
    )


def test_predict_probs_flip_is_mirror_invariant(net, splits):
    images = splits[1].images[:10]
    np.testing.assert_allclose(
        predict_probs(net, images, tta="flip"),
        predict_probs(net, images[:, :, ::-1].copy(), tta="flip"),
        atol=1e-5,
    )


def test_predict_probs_unknown_tta(net, splits):
    with pytest.raises(UserError, match="unknown tta 'flop'"):
        predict_probs(net, splits[1].images[:2], tta="flop")


def test_amp_on_cpu_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(engine.precision, "cpu_has_bf16", lambda: True)
    assert engine.amp_dtype(TrainConfig(), cpu) == torch.bfloat16
    assert engine.use_channels_last(TrainConfig(), cpu)
    assert engine.amp_dtype(TrainConfig(amp="off"), cpu) is None
    assert not engine.use_channels_last(TrainConfig(amp="off"), cpu)
    assert not engine.use_channels_last(TrainConfig(channels_last=False), cpu)
    monkeypatch.setattr(engine.precision, "cpu_has_bf16", lambda: False)
    assert engine.amp_dtype(TrainConfig(), cpu) is None  # emulated bf16 would be slower
    assert engine.amp_dtype(TrainConfig(amp="bf16"), cpu) == torch.bfloat16  # asked for
    assert engine.amp_dtype(TrainConfig(amp="fp16"), cpu) == torch.float16  # asked for
    assert not engine.use_channels_last(TrainConfig(amp="fp16"), cpu)
    assert engine.amp_dtype(TrainConfig(amp="fp16"), torch.device("cuda")) == torch.float16


@pytest.mark.parametrize("amp", ["bf16", "off"])
def test_cpu_training_in_bf16_and_fp32_learns(splits, amp):
    cfg = config(amp=amp, depth=4, convs=1, epochs=3, lr=0.05, schedule="constant")
    result = train(cfg, *splits)
    assert result.status == "completed"
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < losses[0] and all(math.isfinite(x) for x in losses)
    model = model_from_checkpoint(engine.best_payload(result, cfg, splits[0].class_names))
    probs = predict_probs(model, splits[1].images[:8])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_resolve_device():
    assert engine.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="unknown device 'gpu'"):
        engine.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cpu"):
            engine.resolve_device("cuda")


# --------------------------------------------------------------------------- evaluation


def test_classification_metrics_on_known_predictions():
    names = ("a", "b", "c")
    labels = np.array([0, 0, 1, 2])
    probs = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]] * 0.8 + 0.05
    metrics = classification_metrics(probs, labels, names)

    assert metrics["n"] == 4
    assert metrics["accuracy"] == 0.75
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert metrics["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert metrics["per_class"]["b"]["precision"] == 0.5
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert metrics["class_names"] == list(names)
    table = format_metrics(metrics, "title")
    assert table.splitlines()[0] == "title"
    assert "accuracy 75.00 %" in table and "n=4" in table
    assert all(name in table for name in names)


def test_classification_metrics_with_an_absent_class():
    metrics = classification_metrics(np.eye(3)[[0, 0]], np.array([0, 0]), ("a", "b", "c"))
    assert metrics["accuracy"] == 1.0
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_plot_confusion_writes_a_png(tmp_path):
    matrix = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # an empty row must not divide by 0
    path = plot_confusion(matrix, ("a", "b", "c"), tmp_path / "cm.png", title="test")
    assert path == tmp_path / "cm.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
