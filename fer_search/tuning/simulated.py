"""A simulated trial: everything a real trial does for the search except the training.

`SimulatedTrainer` is passed to a search as an argument (`fer_search.search(space,
trainer=SimulatedTrainer(epoch_s=1))`), the way Ray's own scalability tests run a trainable
that only sleeps and reports. Each epoch it waits `epoch_s` seconds and reports val_acc from a
learning curve of its sampled configuration (`LearningCurve`, below) with seeded noise; it
checkpoints by the real trials' policy (tuning.trainable.should_checkpoint), each checkpoint a
file of `checkpoint_mib` MiB beside a small state file, and the best epoch's val probabilities
beside them as a real trial does. For the final evaluation it loads a checkpoint (reading all
its bytes) and answers the model's inference with probabilities drawn to match its accuracy.

Everything else is the real thing: Ray Tune, the Optuna searcher and its SQLite study, the
scheduler, the callbacks, the leaderboard, study closing, the final evaluation's selection,
statistics and report, and `--resume`. It imports neither torch nor the engine, so a trial
process holds only Ray and numpy. A search run with it says so: experiment.json's `trainer`
is `{"kind": "simulated", ...}`, and the report calls its trials simulated.

The curve. For a configuration c, after epoch e (1-based):

    val_acc(c, e) = chance + (ceiling(c) - chance) * (1 - exp(-e / tau(c))) + noise

    ceiling(c) = peak - lr_penalty * log10(lr / lr_best)^2
                      - dropout_penalty * (dropout - dropout_best)^2
                      - wd_penalty * |log10(weight_decay / wd_best)|
                      + width_gain * log2(width / 32)       (each term where c sets it)
    tau(c)     = tau0 * (1 + |log10(lr / lr_best)|)        (a poor lr learns slowly too)
    noise      ~ N(0, noise_sd), seeded by (the search seed, the configuration, the epoch)

with chance = 1 / classes, clipped to [chance, 0.95]. The defaults put the best configuration
near 70 % (FER2013's range) and make lr the parameter that matters most, then dropout, then
weight decay, as the project's real searches found. Any other callable
`curve(config, epoch, classes) -> val_acc` may replace it (a surrogate fitted on recorded
curves, for instance).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_search.tuning.trainers import VAL_PROBS_FILE, LoadedModel, write_val_probs

__all__ = ["LearningCurve", "SimulatedTrainer", "simulated_probs"]

STATE_FILE = "simulated.json"  # the trial's state in a checkpoint (epoch, best, its curve)
SIMULATED_PRECISION = "simulated"  # a simulated trial's `precision` in its results
WEIGHTS_FILE = "weights.bin"  # `checkpoint_mib` MiB standing in for a model's weights
CORRELATION = 0.8  # how much two models' mistakes share (a hard image is hard for every model)
# a wrong model picks the image's one confusable class this often (sad for fear, as real FER
# models confuse), else a class of its own. With CORRELATION, the mean of 100 simulated models
# of about 70.5 % scores 74.9 % on 3,500 images (+4 pp: real FER2013 ensembles gain a few pp,
# Pramerdorfer & Kampel 2016: 72.7 % -> 75.2 %); with 0.6 and mistakes of their own, 92.5 %
SHARED_CONFUSION = 0.7
# what test-time augmentation adds to a simulated model's accuracy (real models gain about this)
TTA_GAIN = {"none": 0.0, "flip": 0.006, "crops": 0.007, "tencrop": 0.009}


@dataclass(frozen=True)
class LearningCurve:
    """val_acc of a configuration after an epoch (the module docstring's formula)."""

    peak: float = 0.70
    lr_best: float = 3e-3
    lr_penalty: float = 0.06
    dropout_best: float = 0.3
    dropout_penalty: float = 0.25
    wd_best: float = 5e-4
    wd_penalty: float = 0.01
    width_gain: float = 0.01
    tau0: float = 2.0
    noise_sd: float = 0.006  # about a val_acc's sampling noise on PublicTest (3,589 images)

    def ceiling(self, config: dict[str, Any], classes: int) -> float:
        chance = 1.0 / classes
        value = self.peak
        if _positive(config.get("lr")):
            value -= self.lr_penalty * math.log10(float(config["lr"]) / self.lr_best) ** 2
        if isinstance(config.get("dropout"), int | float):
            value -= self.dropout_penalty * (float(config["dropout"]) - self.dropout_best) ** 2
        if _positive(config.get("weight_decay")):
            value -= self.wd_penalty * abs(math.log10(float(config["weight_decay"]) / self.wd_best))
        if _positive(config.get("width")):
            value += self.width_gain * math.log2(float(config["width"]) / 32)
        return min(0.95, max(chance, value))

    def tau(self, config: dict[str, Any]) -> float:
        lr: Any = config.get("lr")
        off = abs(math.log10(float(lr) / self.lr_best)) if _positive(lr) else 0.0
        return self.tau0 * (1.0 + off)

    def __call__(self, config: dict[str, Any], epoch: int, classes: int) -> float:
        chance = 1.0 / classes
        mean = chance + (self.ceiling(config, classes) - chance) * (
            1.0 - math.exp(-epoch / self.tau(config))
        )
        noise = rng_for(config, f"epoch {epoch}").normal(0.0, self.noise_sd)
        return min(0.99, max(0.0, mean + noise))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def config_key(config: dict[str, Any]) -> str:
    """A stable name for a configuration: its sampled values and seed (not bookkeeping such as
    the epochs a refit trains, so a refit continues its trial's curve)."""
    ignored = {"epochs", "trial_number", "threads", "device", "checkpoint_every", "checkpoint_at",
               "anneal_at", "refit_member"}  # fmt: skip
    kept = {k: v for k, v in sorted(config.items()) if k not in ignored}
    return json.dumps(kept, sort_keys=True, default=str)


def rng_for(config: dict[str, Any], what: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{config_key(config)}|{what}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def simulated_probs(
    labels: np.ndarray, classes: int, accuracy: float, rng: np.random.Generator, split: str
) -> np.ndarray:
    """Probabilities (N, C) whose argmax is right on round(accuracy * N) images exactly. Which
    images a model gets wrong follows a difficulty shared by every model on `split` (seeded by
    the split's name) plus the model's own draw (`rng`), and a wrong model mostly picks the
    image's shared confusable class (SHARED_CONFUSION), so models err on partly the same images
    in partly the same way, as real ones do, and an ensemble gains what real ensembles gain."""
    n = len(labels)
    digest = hashlib.sha256(f"difficulty|{split}|{n}".encode()).digest()
    shared = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    difficulty = shared.normal(size=n)
    confusable = (labels + shared.integers(1, classes, size=n)) % classes
    score = math.sqrt(CORRELATION) * difficulty + math.sqrt(1 - CORRELATION) * rng.normal(size=n)
    right = np.zeros(n, dtype=bool)
    right[np.argsort(score)[: int(round(min(1.0, max(0.0, accuracy)) * n))]] = True
    own = (labels + rng.integers(1, classes, size=n)) % classes
    wrong = np.where(rng.random(n) < SHARED_CONFUSION, confusable, own)
    predicted = np.where(right, labels, wrong)
    logits = rng.normal(0.0, 0.5, size=(n, classes))
    # the predicted class above every other, by a margin of its own (the model's confidence)
    logits[np.arange(n), predicted] = logits.max(1) + rng.uniform(0.2, 2.5, size=n)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class SimulatedTrainer:
    """Trials that wait `epoch_s` per epoch and follow `curve`; checkpoints of `checkpoint_mib`
    MiB. `test_gap`: the simulated models' test accuracy minus their val accuracy (mean; each
    model draws its own around it).

    `speedup`: for a curve that knows how long its configurations' epochs take
    (`curve.epoch_seconds(config)`, e.g. a surrogate of recorded curves), each epoch waits that
    many seconds divided by `speedup` instead of `epoch_s`, so slow configurations stay slow;
    every result then carries `sim_epoch_s`, the epoch's seconds before the speedup, and
    `reported_at`, the Unix time of the report, for a benchmark to count the budget spent."""

    epoch_s: float = 1.0
    checkpoint_mib: float = 1.0
    curve: Callable[[dict[str, Any], int, int], float] = field(default_factory=LearningCurve)
    test_gap: float = 0.005
    kind: str = "simulated"
    speedup: float | None = None

    def __post_init__(self) -> None:
        if self.epoch_s < 0 or self.checkpoint_mib < 0:
            raise ValueError(f"epoch_s and checkpoint_mib must be >= 0, got {self}")
        if self.speedup is not None and (
            self.speedup <= 0 or not callable(getattr(self.curve, "epoch_seconds", None))
        ):
            raise ValueError(
                f"{self.speedup=} needs a curve with epoch_seconds(config) and a value > 0"
            )

    def epoch_wait(self, config: dict[str, Any]) -> tuple[float, float | None]:
        """(seconds this epoch waits, the seconds it stands for; None without a speedup)."""
        if self.speedup is None:
            return self.epoch_s, None
        seconds = float(self.curve.epoch_seconds(config))  # type: ignore[attr-defined]
        return seconds / self.speedup, seconds

    # ---------------------------------------------------------------- the trial
    def run_trial(self, config: dict[str, Any], data: Any) -> None:
        from ray import tune

        from fer_search.tuning.trainable import should_checkpoint

        labels = data.labels("val")
        classes = len(data.class_names)
        epochs = int(config["epochs"])
        every = int(config.get("checkpoint_every", 1))
        pause_at = {int(epoch) for epoch in config.get("checkpoint_at") or ()}
        state = {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0}
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                state.update(json.loads((Path(directory) / STATE_FILE).read_text())["state"])
        node = _node_id()
        best_probs: np.ndarray | None = None
        wait, stands_for = self.epoch_wait(config)
        for epoch in range(int(state["epoch"]) + 1, epochs + 1):
            started = time.perf_counter()
            time.sleep(wait)
            val_acc = float(self.curve(config, epoch, classes))
            new_best = val_acc > state["best_val_acc"]
            if new_best:
                state.update(best_val_acc=val_acc, best_epoch=epoch)
                best_probs = None  # drawn when a checkpoint is written
            state["epoch"] = epoch
            metrics = self.epoch_metrics(epoch, val_acc, state, epochs, len(labels))
            metrics.update(node=node, gpu_ids="", epoch_time=time.perf_counter() - started)
            if stands_for is not None:
                metrics.update(sim_epoch_s=stands_for, reported_at=time.time())
            if not should_checkpoint(epoch, every, epochs, new_best, pause_at):
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as directory:
                if best_probs is None:
                    best_probs = self.val_probs(config, labels, classes, state)
                self.write_checkpoint(Path(directory), config, state, best_probs)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    def epoch_metrics(
        self, epoch: int, val_acc: float, state: dict[str, Any], epochs: int, n_val: int
    ) -> dict[str, Any]:
        """What a real trial reports each epoch (EpochStats' fields), simulated."""
        half = 1.96 * math.sqrt(max(val_acc * (1 - val_acc), 1e-6) / max(1, n_val))
        train_acc = min(0.99, val_acc + 0.02 * epoch)
        return {
            "epoch": epoch,
            "train_loss": -math.log(max(train_acc, 1e-3)),
            "train_acc": train_acc,
            "val_loss": -math.log(max(val_acc, 1e-3)),
            "val_acc": val_acc,
            "val_f1": val_acc * 0.95,
            "lr": 0.0,
            "images_per_s": 0.0,
            "precision": SIMULATED_PRECISION,
            "val_acc_ci95_lo": max(0.0, val_acc - half),
            "val_acc_ci95_hi": min(1.0, val_acc + half),
            "best_val_acc": state["best_val_acc"],
            "max_epochs": epochs,
        }

    def val_probs(
        self, config: dict[str, Any], labels: np.ndarray, classes: int, state: dict[str, Any]
    ) -> np.ndarray:
        rng = rng_for(config, f"val probs at {state['best_epoch']}")
        return simulated_probs(labels, classes, state["best_val_acc"], rng, "val")

    def write_checkpoint(
        self, directory: Path, config: dict[str, Any], state: dict[str, Any], probs: np.ndarray
    ) -> None:
        size = int(self.checkpoint_mib * 2**20)
        with open(directory / WEIGHTS_FILE, "wb") as handle:
            handle.write(np.random.default_rng(state["epoch"]).bytes(size))
        payload = {"state": state, "config": config, "trainer": self.describe()}
        (directory / STATE_FILE).write_text(json.dumps(payload, default=str))
        write_val_probs(directory, probs)

    # ---------------------------------------------------------------- the final evaluation
    def describe(self) -> dict[str, Any]:
        curve = self.curve
        described: dict[str, Any] = {
            "kind": self.kind,
            "epoch_s": self.epoch_s,
            "checkpoint_mib": self.checkpoint_mib,
            "test_gap": self.test_gap,
        }
        if self.speedup is not None:  # waits the curve's epoch seconds over it
            described["speedup"] = self.speedup
        if isinstance(curve, LearningCurve):
            described["curve"] = dataclasses.asdict(curve)
        else:
            described["curve"] = f"{type(curve).__module__}.{type(curve).__qualname__}"
        return described

    @classmethod
    def from_description(cls, described: dict[str, Any]) -> SimulatedTrainer:
        """The trainer experiment.json's `trainer` describes (a custom curve is not rebuilt:
        pass the trainer again to resume such a search)."""
        curve = described.get("curve")
        return cls(
            epoch_s=float(described.get("epoch_s", 1.0)),
            checkpoint_mib=float(described.get("checkpoint_mib", 1.0)),
            test_gap=float(described.get("test_gap", 0.005)),
            curve=LearningCurve(**curve) if isinstance(curve, dict) else LearningCurve(),
        )

    def evaluation_device(self) -> str:
        return "cpu"

    def load(self, checkpoint: Any, device: str) -> LoadedModel:
        with checkpoint.as_directory() as directory:
            size = 0
            for path in Path(directory).iterdir():  # read as a real load reads the weights
                if path.is_file():
                    size += len(path.read_bytes())
            payload = json.loads((Path(directory) / STATE_FILE).read_text())
            stored = Path(directory) / VAL_PROBS_FILE
            probs = np.load(stored).astype(np.float32) if stored.is_file() else None
        return LoadedModel(payload=payload, model=payload, stored_val_probs=probs, bytes_read=size)

    def predict(self, loaded: LoadedModel, split: Any, device: str, tta: str = "none") -> Any:
        """The model's probabilities on `split`: its best val_acc on val, that plus its own
        test gap on any other split; test-time augmentation adds TTA_GAIN."""
        payload, labels = loaded.payload, np.asarray(split.labels)
        config, state = payload["config"], payload["state"]
        accuracy = float(state["best_val_acc"])
        name = getattr(split, "name", "test")
        if name != "val":
            accuracy += rng_for(config, "test gap").normal(self.test_gap, 0.01)
        accuracy += TTA_GAIN.get(tta, 0.0)
        rng = rng_for(config, f"{name} probs at {state['best_epoch']} {tta}")
        return simulated_probs(labels, len(split.class_names), accuracy, rng, name)

    def save_best(self, loaded: LoadedModel, directory: Path) -> str:
        """best/simulated.json: the simulated model's state and config (there are no weights)."""
        (directory / STATE_FILE).write_text(json.dumps(loaded.payload, indent=1, default=str))
        return STATE_FILE


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()
