"""A learning-curve surrogate fitted on recorded curves, honest about how well it fits.

The table is benchmarks/curves.py's: one row per (configuration, seed, epoch) of real training
on FER2013 (val_acc on PublicTest, the epoch's seconds), and the design beside it, one row per
configuration of the simple_cnn family (width, blocks, optimiser, lr, weight decay, schedule,
dropout, label smoothing, batch size and five augmentation strengths).

`fit_surrogate(table)` learns configuration -> mean learning curve (val_acc at every epoch,
one multi-output regressor, so a curve's epochs stay coherent) and configuration -> seconds
an epoch takes, each by the model family that predicts held-out configurations best
(`fidelity`: k-fold over configurations). The result, `CurveSurrogate`, is a learning curve
for `tuning.simulated.SimulatedTrainer`: `surrogate(config, epoch, classes)` is the mean
curve plus noise measured on the table's repeats (a per-run offset that lasts the whole run and
a per-epoch jitter, seeded by the trial's configuration and the search's seed), and
`epoch_seconds(config)` tells the trainer how long that epoch would have taken here.
`true_val_acc(config, epoch)` is the mean without noise: what a benchmark scores a search by.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_search.errors import UserError
from fer_search.tuning.curve_space import SCHEDULES, SETTINGS, lr_middle

__all__ = ["CurveSurrogate", "CurveTable", "Noise", "features", "fidelity", "fit_surrogate"]

FEATURES = ("log2 width", "stages", "convs", "adamw", "log10 lr", "lr in its range",
            "log10 weight_decay",
            *(f"schedule {s}" for s in SCHEDULES), "dropout", "label_smoothing",
            "log2 batch_size", "crop_pad", "hflip", "rotation", "scale", "erasing")  # fmt: skip
FOLDS = 8


def features(config: Mapping[str, Any]) -> np.ndarray:
    """A configuration's settings as numbers (log scale where the design samples in log)."""
    blocks = [int(b) for b in str(config["blocks"]).split(",")]
    return np.array(
        [
            math.log2(float(config["width"])),
            len(blocks),
            sum(blocks),
            1.0 if config["optimizer"] == "adamw" else 0.0,
            math.log10(float(config["lr"])),
            # where it lies in its optimiser's range: SGD's best rates are ~30x AdamW's
            math.log10(float(config["lr"]) / lr_middle(str(config["optimizer"]))),
            math.log10(float(config["weight_decay"])),
            *(1.0 if config["schedule"] == s else 0.0 for s in SCHEDULES),
            float(config["dropout"]),
            float(config["label_smoothing"]),
            math.log2(float(config["batch_size"])),
            float(config["crop_pad"]),
            float(config["hflip"]),
            float(config["rotation"]),
            float(config["scale"]),
            float(config["erasing"]),
        ]
    )


# ---------------------------------------------------------------- the table
@dataclass(frozen=True)
class CurveTable:
    """The recorded curves: `configs[id]` the settings, `val_acc[(id, seed)]` and
    `seconds[(id, seed)]` one value per epoch (complete runs only)."""

    configs: dict[int, dict[str, Any]]
    val_acc: dict[tuple[int, int], np.ndarray]
    seconds: dict[tuple[int, int], np.ndarray]
    epochs: int

    @classmethod
    def read(cls, curves: Path, configs: Path | None = None) -> CurveTable:
        """`curves` (config,seed,epoch,val_acc,...,epoch_s) and its design, by default the
        `-configs.csv` beside it."""
        configs = configs or curves.with_name(curves.stem + "-configs.csv")
        for path in (curves, configs):
            if not path.is_file():
                raise UserError(f"no curve table at {path} (benchmarks/curves.py writes it)")
        with configs.open() as file:
            design = {int(row.pop("config")): _typed(row) for row in csv.DictReader(file)}
        runs: dict[tuple[int, int], dict[int, tuple[float, float]]] = {}
        with curves.open() as file:
            for row in csv.DictReader(file):
                key = (int(row["config"]), int(row["seed"]))
                runs.setdefault(key, {})[int(row["epoch"])] = (
                    float(row["val_acc"]), float(row["epoch_s"]))  # fmt: skip
        if not runs:
            raise UserError(f"{curves} has no curves yet")
        epochs = max(len(epochs) for epochs in runs.values())
        complete = {k: v for k, v in runs.items() if sorted(v) == list(range(1, epochs + 1))}
        return cls(
            configs={k: design[k] for k in sorted({c for c, _ in complete})},
            val_acc={k: np.array([v[e][0] for e in sorted(v)]) for k, v in complete.items()},
            seconds={k: np.array([v[e][1] for e in sorted(v)]) for k, v in complete.items()},
            epochs=epochs,
        )

    def mean_curves(self) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Per configuration: its id, features, mean val_acc curve over its seeds, and the log
        of its epoch seconds: each run's median epoch (epoch 1 aside: it carries the process's
        warm-up), the quickest run's (other work on the machine, or a slower machine, only
        lengthens an epoch)."""
        ids = list(self.configs)
        x = np.stack([features(self.configs[i]) for i in ids])
        curves, seconds = [], []
        for i in ids:
            runs = [key for key in self.val_acc if key[0] == i]
            curves.append(np.mean([self.val_acc[key] for key in runs], axis=0))
            seconds.append(math.log(min(
                statistics.median(self.seconds[key][1:].tolist()) for key in runs)))  # fmt: skip
        return ids, x, np.stack(curves), np.array(seconds)

    def repeats(self) -> dict[int, np.ndarray]:
        """Configurations trained with two seeds or more: id -> (seeds, epochs) val_acc."""
        seeds: dict[int, list[np.ndarray]] = {}
        for (config, _seed), curve in sorted(self.val_acc.items()):
            seeds.setdefault(config, []).append(curve)
        return {c: np.stack(v) for c, v in seeds.items() if len(v) > 1}


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        try:
            number = float(value)
        except ValueError:
            out[key] = value  # optimizer, schedule, blocks ("1,1,2")
            continue
        out[key] = int(number) if number.is_integer() and "." not in value else number
    return out


# ---------------------------------------------------------------- noise
@dataclass(frozen=True)
class Noise:
    """A run's val_acc around its configuration's mean curve: `run_sd` an offset that lasts
    the run (a seed's luck), `epoch_sd` each epoch's own jitter; `source` how it was measured."""

    run_sd: float
    epoch_sd: float
    source: str

    @classmethod
    def measure(cls, table: CurveTable) -> Noise:
        """From the configurations trained with several seeds: the spread of each run's mean
        deviation from its configuration's mean curve (run_sd) and of what is left epoch by
        epoch (epoch_sd), each corrected for the k seeds it is measured against. Without
        repeats, epoch_sd from the curves' roughness in their second half (the difference of an
        epoch from the mean of its neighbours) and run_sd 0, said in `source`."""
        repeats = table.repeats()
        if repeats:
            offsets, jitter = [], []
            for runs in repeats.values():
                k = len(runs)
                deviation = (runs - runs.mean(axis=0)) * math.sqrt(k / (k - 1))
                offsets.extend(deviation.mean(axis=1))
                jitter.extend((deviation - deviation.mean(axis=1, keepdims=True)).ravel())
            epochs = table.epochs
            jitter_var = float(np.var(jitter)) * epochs / (epochs - 1)
            # a run's mean deviation carries a share of its epochs' jitter: take it out
            run_var = float(np.var(offsets)) - jitter_var / epochs
            runs_n = sum(len(r) for r in repeats.values())
            return cls(
                run_sd=math.sqrt(max(0.0, run_var)),
                epoch_sd=math.sqrt(jitter_var),
                source=f"{len(repeats)} configurations trained with several seeds ({runs_n} runs)",
            )
        half = table.epochs // 2
        rough = [
            curve[e] - (curve[e - 1] + curve[e + 1]) / 2
            for curve in table.val_acc.values()
            for e in range(half, table.epochs - 1)
        ]
        return cls(
            run_sd=0.0,
            epoch_sd=float(np.std(rough)) * math.sqrt(2 / 3),
            source="no repeats yet: epoch_sd from the curves' roughness, run_sd unmeasured (0)",
        )


# ---------------------------------------------------------------- model families
def _gp() -> Any:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kernel = ConstantKernel() * Matern(
        length_scale=np.ones(len(FEATURES)), length_scale_bounds=(0.1, 100.0), nu=2.5
    ) + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-5, 1.0))
    regressor = GaussianProcessRegressor(
        kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0
    )
    return make_pipeline(StandardScaler(), regressor)


def _forest() -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=0)


def _extra_trees() -> Any:
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(n_estimators=300, min_samples_leaf=2, random_state=0)


def _mean() -> Any:
    from sklearn.dummy import DummyRegressor

    return DummyRegressor()


# the families tried, each fitted on all of a configuration's epochs at once; "mean" (every
# configuration gets the average curve) is the floor a surrogate must clear to mean anything
FAMILIES: dict[str, Callable[[], Any]] = {
    "gaussian_process": _gp,
    "random_forest": _forest,
    "extra_trees": _extra_trees,
    "mean": _mean,
}


def held_out(make: Callable[[], Any], x: np.ndarray, y: np.ndarray, folds: int) -> np.ndarray:
    """Predictions for every configuration from a model fitted without it (k-fold, shuffled
    with seed 0)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold

    predicted = np.zeros_like(y)
    for train, test in KFold(min(folds, len(x)), shuffle=True, random_state=0).split(x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = make().fit(x[train], y[train])
        predicted[test] = model.predict(x[test]).reshape(predicted[test].shape)
    return predicted


def fidelity(table: CurveTable, folds: int = FOLDS) -> dict[str, Any]:
    """How well each family predicts configurations it was not fitted on: Kendall's tau of
    the final and the best val_acc (the ranking a search acts on), of epochs 1 and 3 (ASHA's
    first rungs), the mean absolute error at every epoch, and for epoch seconds the median
    relative error. Beside them, the seed-to-seed figures on the repeats: what a perfect
    surrogate could reach, given the noise."""
    _ids, x, y, log_s = table.mean_curves()
    families: dict[str, Any] = {}
    rung3 = min(2, table.epochs - 1)
    for name, make in FAMILIES.items():
        predicted = held_out(make, x, y, folds)
        seconds = held_out(make, x, log_s, folds)
        # the mean curve ranks nothing: its values differ between folds only
        ranks = name != "mean"
        families[name] = {
            "kendall_tau_final": _tau(y[:, -1], predicted[:, -1]) if ranks else None,
            "kendall_tau_best": _tau(y.max(1), predicted.max(1)) if ranks else None,
            "kendall_tau_epoch1": _tau(y[:, 0], predicted[:, 0]) if ranks else None,
            "kendall_tau_epoch3": _tau(y[:, rung3], predicted[:, rung3]) if ranks else None,
            "mae_per_epoch": [round(float(v), 4) for v in np.abs(y - predicted).mean(0)],
            "mae": round(float(np.abs(y - predicted).mean()), 4),
            "seconds_median_relative_error": round(
                float(np.median(np.abs(np.exp(seconds - log_s) - 1))), 3
            ),
        }
    return {
        "configurations": len(x),
        "epochs": table.epochs,
        "folds": min(folds, len(x)),
        "families": families,
        "seed_to_seed": seed_to_seed(table),
    }


def seed_to_seed(table: CurveTable) -> dict[str, Any]:
    """Seed 0 against another seed of the same configurations: the noise floor."""
    repeats = table.repeats()
    if not repeats:
        return {"configurations": 0}
    first = np.stack([runs[0] for runs in repeats.values()])
    other = np.stack([runs[1] for runs in repeats.values()])
    return {
        "configurations": len(repeats),
        "kendall_tau_final": _tau(first[:, -1], other[:, -1]),
        "mae_per_epoch": [round(float(v), 4) for v in np.abs(first - other).mean(0)],
        "mae": round(float(np.abs(first - other).mean()), 4),
    }


def _tau(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import kendalltau

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(float(kendalltau(a, b).statistic), 3)


def best_family(report: dict[str, Any], target: str) -> str:
    """The family with the highest held-out tau of the final val_acc ("accuracy"), or the
    lowest relative error of the epoch seconds ("seconds")."""
    families = report["families"]
    if target == "seconds":
        return min(families, key=lambda f: families[f]["seconds_median_relative_error"])
    scored = [f for f in families if families[f]["kendall_tau_final"] is not None]
    return max(scored, key=lambda f: (families[f]["kendall_tau_final"], -families[f]["mae"]))


# ---------------------------------------------------------------- the surrogate
@dataclass
class CurveSurrogate:
    """A learning curve for SimulatedTrainer, fitted on a CurveTable (`fit_surrogate`)."""

    accuracy_model: Any  # features -> val_acc at epochs 1..epochs
    seconds_model: Any  # features -> log seconds per epoch
    epochs: int
    noise: Noise
    families: tuple[str, str]  # (accuracy, seconds)
    _cache: dict[bytes, tuple[np.ndarray, float]] = field(default_factory=dict, repr=False)

    def _predict(self, config: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        x = features(config)
        key = x.tobytes()
        if key not in self._cache:
            curve = np.asarray(self.accuracy_model.predict(x[None])).reshape(-1)
            seconds = float(np.exp(np.asarray(self.seconds_model.predict(x[None])).ravel()[0]))
            self._cache[key] = (np.clip(curve, 0.0, 1.0), seconds)
        return self._cache[key]

    def mean_curve(self, config: Mapping[str, Any]) -> np.ndarray:
        return self._predict(config)[0]

    def true_val_acc(self, config: Mapping[str, Any], epoch: int) -> float:
        """The configuration's mean val_acc after `epoch` (the last recorded epoch beyond)."""
        curve = self.mean_curve(config)
        return float(curve[min(max(epoch, 1), len(curve)) - 1])

    def epoch_seconds(self, config: Mapping[str, Any]) -> float:
        """Seconds an epoch of the configuration took on the machine the table was recorded on."""
        return self._predict(config)[1]

    def __call__(self, config: dict[str, Any], epoch: int, classes: int) -> float:
        """val_acc a run of `config` reports after `epoch`: the mean curve, the run's offset
        and the epoch's jitter, seeded by the design's settings and the run's seed only (so a
        search's other config keys change nothing)."""
        from fer_search.tuning.simulated import rng_for

        run = {k: config[k] for k in SETTINGS if k in config} | {"seed": config.get("seed")}
        offset = rng_for(run, "run offset").normal(0.0, self.noise.run_sd)
        jitter = rng_for(run, f"epoch {epoch}").normal(0.0, self.noise.epoch_sd)
        return float(min(1.0, max(0.0, self.true_val_acc(config, epoch) + offset + jitter)))

    def describe(self) -> dict[str, Any]:
        return {
            "accuracy_family": self.families[0],
            "seconds_family": self.families[1],
            "epochs": self.epochs,
            "noise": {"run_sd": round(self.noise.run_sd, 4),
                      "epoch_sd": round(self.noise.epoch_sd, 4), "source": self.noise.source},
        }  # fmt: skip


def fit_surrogate(table: CurveTable, report: dict[str, Any] | None = None) -> CurveSurrogate:
    """The surrogate of the families `fidelity` found best (computed here unless given)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    report = report or fidelity(table)
    chosen = (best_family(report, "accuracy"), best_family(report, "seconds"))
    _ids, x, y, log_s = table.mean_curves()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        accuracy = FAMILIES[chosen[0]]().fit(x, y)
        seconds = FAMILIES[chosen[1]]().fit(x, log_s)
    return CurveSurrogate(accuracy, seconds, table.epochs, Noise.measure(table), chosen)
