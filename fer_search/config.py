"""Constants and the run configuration. One place for class names, the metric and its mode."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from fer_search.errors import UserError, did_you_mean

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CLASS_SETS: tuple[str, ...] = ("all", "drop-disgust", "merge-disgust")
SPLITS: tuple[str, ...] = ("train", "val", "test")
REFIT_ID = "refit"  # the leaderboard's trial_id for the best configuration retrained (a refit)
METRIC = "val_acc"  # PublicTest accuracy: the only number used to select models
MODE = "max"
# the user attribute of an Optuna trial copied from an earlier experiment (search --warm-start)
WARM_START_ATTR = "warm_start_from"
# Ray Tune's trial schedulers a search can use (the space's experiment.scheduler, --scheduler),
# and how the console and the report name the one that stopped a trial ("" = none stops any)
SCHEDULERS: dict[str, str] = {
    "asha": "ASHA",
    "hyperband": "HyperBand",
    "median": "the median rule",
    "pbt": "PBT",
    "fifo": "",
}
IMAGE_SIZE = 48
SMOOTH = 0.6  # predict --video: weight of a tracked face's past probabilities (0 = off)
MODEL_NAMES: tuple[str, ...] = ("simple_cnn", "vgg16", "resnet101", "mobilenet_v2", "densenet169")
# FER2013 training-set pixel statistics (0..1 scale); the engine normalises with these
PIXEL_MEAN = 0.5077
PIXEL_STD = 0.2550

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "plateau", "constant")
BALANCE = ("none", "mirror", "weighted")
AMP = ("auto", "off", "bf16", "fp16")


@dataclass
class AugmentConfig:
    """Per-sample batch augmentation. Every knob at its zero value is the identity."""

    hflip: float = 0.0  # probability of a horizontal flip
    crop_pad: int = 0  # random shift by up to this many pixels (pad + crop)
    rotation: float = 0.0  # max rotation in degrees
    scale: float = 0.0  # max relative zoom in/out (0.1 = 0.9..1.1)
    brightness: float = 0.0  # max additive brightness shift (fraction of range)
    contrast: float = 0.0  # max relative contrast change
    erasing: float = 0.0  # probability of random erasing
    mixup: float = 0.0  # mixup Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0  # cutmix Beta(alpha, alpha); 0 = off


@dataclass
class TrainConfig:
    """Everything one training run (one trial) needs. Flat, so a search space can set any field."""

    model: str = "simple_cnn"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    # epochs after which the cosine or one-cycle schedule has run its course and starts again
    # ("1,3": annealed by the end of epochs 1, 3 and `epochs`), e.g. a search's ASHA rungs
    # (experiment.rung_anneal); "" = one schedule over all the epochs
    anneal_at: str = ""
    warmup_epochs: float = 0.0
    grad_clip: float = 0.0  # 0 = off
    label_smoothing: float = 0.0
    ema: float = 0.0  # per-step decay of an exponential moving average of the weights; 0 = off
    balance: str = "none"  # none | mirror (the study's mirrored copies) | weighted (loss weights)
    # model
    dropout: float = 0.3
    batch_norm: bool = True  # simple_cnn only
    width: int = 32  # simple_cnn: channels of the first block (doubles per block)
    depth: int = 3  # simple_cnn: conv blocks (each halves the side)
    convs: int = 2  # simple_cnn: 3x3 convs per block
    blocks: str = ""  # simple_cnn: convs per block, e.g. "1,1,2,2" (overrides depth and convs)
    pool_before_norm: bool = False  # simple_cnn: max-pool right after a block's last conv
    input_size: int = 48  # torchvision models: resize 48 -> input_size on the device
    pretrained: bool = False
    weights_path: str = ""  # local ImageNet weights file; "" = torch hub cache
    # augmentation (see AugmentConfig)
    hflip: float = 0.5
    crop_pad: int = 4
    rotation: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    # data
    class_set: str = "all"
    # runtime
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 where it is native (CUDA >= 8.0, CPUs with AVX512-BF16 or AMX), fp16 with a
    # GradScaler on older GPUs (T4, V100), fp32 on other CPUs | off | bf16 | fp16
    amp: str = "auto"
    channels_last: bool = True  # CUDA, and CPU under bf16 (where oneDNN's fast kernels need it)
    compile: bool = False  # torch.compile (CUDA)
    threads: int = 0  # torch CPU threads; 0 = leave as is
    eval_batch_size: int = 512

    def augment(self) -> AugmentConfig:
        return AugmentConfig(**{f.name: getattr(self, f.name) for f in fields(AugmentConfig)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping, coercing strings such as '1e-5' and rejecting unknown names."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise UserError(f"{source}: unknown setting {name!r}{did_you_mean(name, known)}")
            kwargs[name] = coerce(name, value, known[name].type, source=source)
        cfg = cls(**kwargs)
        cfg.validate(source=source)
        return cfg

    def validate(self, *, source: str = "config") -> None:
        choices = {
            "model": MODEL_NAMES,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "balance": BALANCE,
            "amp": AMP,
            "class_set": CLASS_SETS,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if name == "model" and value not in allowed:
                raise UserError(f"{source}: unknown model {value!r}{did_you_mean(value, allowed)}")
            if value not in allowed:
                raise UserError(
                    f"{source}: {name}={value!r} is not one of {', '.join(allowed)}"
                    f"{did_you_mean(value, allowed)}"
                )
        positive = (
            "epochs",
            "batch_size",
            "lr",
            "eval_batch_size",
            "input_size",
            "width",
            "depth",
            "convs",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise UserError(f"{source}: {name} must be > 0, got {getattr(self, name)!r}")
        unit = ("dropout", "hflip", "erasing", "label_smoothing", "momentum", "ema")
        for name in unit:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0 or (name in ("dropout", "ema") and value >= 1.0):
                interval = "[0, 1)" if name in ("dropout", "ema") else "[0, 1]"
                raise UserError(f"{source}: {name} must be in {interval}, got {value!r}")
        non_negative = (
            "weight_decay",
            "warmup_epochs",
            "grad_clip",
            "crop_pad",
            "rotation",
            "scale",
            "brightness",
            "contrast",
            "mixup",
            "cutmix",
            "threads",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise UserError(f"{source}: {name} must be >= 0, got {getattr(self, name)!r}")
        if self.blocks:
            parse_blocks(self.blocks, source=source)
        parse_anneal_at(self.anneal_at, self.epochs, source=source)


def parse_blocks(blocks: str, *, source: str = "simple_cnn") -> tuple[int, ...]:
    """ "1,1,2,2" -> (1, 1, 2, 2), simple_cnn's 3x3 convs per block; a UserError otherwise."""
    try:
        counts = tuple(int(part) for part in blocks.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise UserError(
            f"{source}: blocks={blocks!r} is not a comma-separated list of conv counts >= 1 "
            "(e.g. 1,1,2,2)"
        )
    return counts


def parse_anneal_at(text: str, epochs: int, *, source: str = "config") -> tuple[int, ...]:
    """ "1,3" -> (1, 3): increasing epochs in [1, epochs) where the schedule restarts; "" -> ()."""
    if not str(text).strip():
        return ()
    try:
        at = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        at = ()
    if not at or list(at) != sorted(set(at)) or at[0] < 1 or at[-1] >= epochs:
        raise UserError(
            f"{source}: anneal_at={text!r} is not a comma-separated list of increasing epochs "
            f"in [1, {epochs}) (epochs={epochs}), e.g. 1,3"
        )
    return at


_BOOL_WORDS = {
    "true": True,
    "yes": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "0": False,
    "off": False,
}


def coerce(name: str, value: Any, type_name: Any, *, source: str = "config") -> Any:
    """Convert a YAML/CLI value to the field's type; YAML reads '1e-5' as a string."""
    type_name = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "")
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[str(value).strip().lower()]
            raise ValueError
        if type_name == "int":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if type_name == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if type_name == "str":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {name}={value!r} is not a valid {type_name}") from None
    return value


TRAIN_FIELDS: frozenset[str] = frozenset(f.name for f in fields(TrainConfig))


def refit_id(index: int) -> str:
    """The leaderboard id of the index-th refit (0 = the best trial's): refit, refit2, ..."""
    return REFIT_ID if index == 0 else f"{REFIT_ID}{index + 1}"


def is_refit_id(trial_id: Any) -> bool:
    text = str(trial_id)
    return text == REFIT_ID or (text.startswith(REFIT_ID) and text[len(REFIT_ID) :].isdigit())


def recorded_scheduler(record: Mapping[str, Any]) -> str:
    """The scheduler an experiment.json says its search ran with; records from before
    `scheduler` was recorded say `asha: false` for --no-asha (FIFO) and ran ASHA otherwise."""
    name = record.get("scheduler")
    if name in SCHEDULERS:
        return str(name)
    return "asha" if record.get("asha", True) and not record.get("no_asha") else "fifo"


@dataclass
class EpochStats:
    """What the engine reports after each epoch (the search reports these to Tune)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_f1: float
    lr: float
    images_per_s: float
    epoch_time: float
    extra: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"  # what the epoch trained in: "bf16" | "fp16" | "fp32"
    # val_acc's 95 % interval (fer_search.stats.accuracy_ci); NaN in histories from before it
    val_acc_ci95_lo: float = math.nan
    val_acc_ci95_hi: float = math.nan


# final.json before the flip figure was named by its mode: old key -> key (current_final)
RENAMED_FINAL_KEYS = {"test_acc_tta": "test_acc_flip", "test_acc_tta_ci95": "test_acc_flip_ci95"}


def current_final(final: Any) -> Any:
    """final.json's figures with today's names (an older file named the flip TTA figure
    `test_acc_tta`, though the TTA val chose, `tta.chosen`, may be another mode)."""
    if isinstance(final, dict):
        return {RENAMED_FINAL_KEYS.get(k, k): current_final(v) for k, v in final.items()}
    if isinstance(final, list):
        return [current_final(v) for v in final]
    return final
