"""Train and evaluate one model in plain PyTorch. Knows nothing of Ray.

The dataset stays one uint8 tensor on the training device; each batch is gathered by index,
normalised and augmented there, so the hot loop has no per-image Python, no PIL and no
DataLoader workers. Metrics accumulate on the device and are read once per epoch.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from fer_search import augment
from fer_search.config import EpochStats, TrainConfig
from fer_search.data import FERSplit
from fer_search.errors import UserError
from fer_search.models import create_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainResult",
    "load_checkpoint",
    "mirror_balance",
    "predict_probs",
    "resolve_device",
    "save_checkpoint",
    "train",
]

CHECKPOINT_FORMAT = "fer-search-checkpoint"
CHECKPOINT_VERSION = 1

# on_epoch(stats, save) -> True to stop early. `save(path)` writes a full checkpoint of "now".
EpochCallback = Callable[[EpochStats, Callable[[Path], None]], "bool | None"]


@dataclass
class TrainResult:
    status: str  # "completed" | "stopped" (callback asked) | "nan" (non-finite loss)
    message: str
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    history: list[EpochStats] = field(default_factory=list)
    model: nn.Module | None = None  # holds the best-by-val weights at the end
    model_args: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy view of a (possibly read-only, shared-memory) numpy array; we never write to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "array is not writable"
        return torch.from_numpy(array)


def mirror_balance(
    labels: np.ndarray, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The original study's balancing, as indices: every class is topped up to the size of the
    largest with mirrored copies of its own images. Returns (indices, mirror flags); the images
    themselves are never copied, so a shared dataset stays shared."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=num_classes)
    target = counts.max()
    indices, mirror = [np.arange(len(labels))], [np.zeros(len(labels), dtype=bool)]
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        missing = target - len(members)
        if missing > 0 and len(members):
            indices.append(rng.choice(members, size=missing, replace=missing > len(members)))
            mirror.append(np.ones(missing, dtype=bool))
    return np.concatenate(indices), np.concatenate(mirror)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    return create_model(
        cfg.model,
        num_classes,
        dropout=cfg.dropout,
        batch_norm=cfg.batch_norm,
        width=cfg.width,
        depth=cfg.depth,
        convs=cfg.convs,
        blocks=cfg.blocks,
        pool_before_norm=cfg.pool_before_norm,
        input_size=cfg.input_size,
        pretrained=cfg.pretrained,
        weights_path=cfg.weights_path,
    )


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters (standard practice; matters for BN nets).
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at an optimiser step: linear warm-up, then the schedule."""
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and warmup == 0:
        warmup = int(0.25 * total_steps)  # one-cycle: ramp up for the first quarter
    if step < warmup:
        start = 0.04 if cfg.schedule == "onecycle" else 0.0
        return start + (1.0 - start) * (step + 1) / warmup
    if cfg.schedule in ("cosine", "onecycle"):
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0  # constant; plateau scales separately


class _Plateau:
    """Halve the learning rate when val_acc has not improved for `patience` epochs."""

    def __init__(self, patience: int = 2, factor: float = 0.5) -> None:
        self.patience, self.factor = patience, factor
        self.scale, self.best, self.bad = 1.0, -1.0, 0

    def step(self, val_acc: float) -> None:
        if val_acc > self.best + 1e-4:
            self.best, self.bad = val_acc, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            self.scale *= self.factor
            self.bad = 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], int(state["bad"])


def ema_decay(cfg: TrainConfig, step: int) -> float:
    """The EMA's decay at optimiser step `step` (from 0): cfg.ema, warmed up as
    (1 + step) / (10 + step) so that the average forgets the first steps' weights within a few
    hundred steps instead of a few thousand (a short trial's first epochs)."""
    return min(cfg.ema, (1.0 + step) / (10.0 + step))


def new_ema(model: nn.Module) -> nn.Module:
    """The moving average's own copy of the network (weights and BatchNorm statistics)."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(cfg: TrainConfig, state: _State) -> None:
    """After optimiser step `state.step`: the first step's weights start the average (as
    torch's AveragedModel does), later steps move it towards the model with torch's EMA update
    (one foreach lerp over the float weights and BatchNorm statistics; integer counters are
    copied). Unlike AveragedModel.update_parameters, nothing here moves a counter between host
    and device, which would be a host sync per step on CUDA."""
    if state.ema is None:
        return
    pairs = zip(
        [*state.ema.parameters(), *state.ema.buffers()],
        [*state.model.parameters(), *state.model.buffers()],
        strict=True,
    )
    floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for average, current in pairs:
        if state.step == 0 or not average.is_floating_point():
            average.copy_(current)
        else:
            floats[0].append(average)
            floats[1].append(current.detach())
    if floats[0]:
        get_ema_multi_avg_fn(ema_decay(cfg, state.step))(floats[0], floats[1], None)


def eval_model(state: _State) -> nn.Module:
    """The network that is validated, selected and kept: the EMA when there is one."""
    return state.model if state.ema is None else state.ema


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where oneDNN's bf16 conv
    kernels are much faster than fp32; elsewhere bf16 on CPU is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 on CUDA and on CPUs with native bf16 (epochs of the 4-block
    simple_cnn 2.2x faster than fp32 on this project's 2-core AVX512-BF16 machine; README),
    fp16 on request (CUDA), else None (fp32)."""
    if cfg.amp == "off":
        return None
    if device.type == "cuda":
        return torch.float16 if cfg.amp == "fp16" else torch.bfloat16
    if device.type == "cpu" and (cfg.amp == "bf16" or (cfg.amp == "auto" and cpu_has_bf16())):
        return torch.bfloat16
    return None


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """NHWC pays off on CUDA, and on CPU only together with bf16 (oneDNN's blocked kernels)."""
    if not cfg.channels_last:
        return False
    return device.type == "cuda" or amp_dtype(cfg, device) is not None


def to_input(images_u8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = augment.normalize(images_u8)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    tta: str = "none",
) -> np.ndarray:
    """Softmax probabilities (N, C) for uint8 images (N, 48, 48).

    tta: "none"; "flip" averages with the mirrored image; "crops" adds four 2-pixel shifts.
    """
    if tta not in ("none", "flip", "crops"):
        raise UserError(f"unknown tta {tta!r}; use none, flip or crops")
    device = torch.device(device)
    model.eval()
    data = images if isinstance(images, torch.Tensor) else as_tensor(images)
    out = []
    for start in range(0, len(data), batch_size):
        x = augment.normalize(data[start : start + batch_size].to(device, non_blocking=True))
        views = [x]
        if tta in ("flip", "crops"):
            views.append(torch.flip(x, dims=[3]))
        if tta == "crops":
            padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
            h, w = x.shape[-2:]
            for dy, dx in ((0, 0), (0, 4), (4, 0), (4, 4)):
                views.append(padded[..., dy : dy + h, dx : dx + w])
        probs = torch.stack([torch.softmax(model(v).float(), dim=1) for v in views]).mean(0)
        out.append(probs.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def _epoch_metrics(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import f1_score

    pred = probs.argmax(1)
    eps = 1e-7
    loss = float(-np.log(probs[np.arange(len(labels)), labels] + eps).mean())
    acc = float((pred == labels).mean())
    f1 = float(f1_score(labels, pred, average="macro", zero_division=0))
    return loss, acc, f1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically so a crash mid-save never leaves a truncated checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a fer-search checkpoint safely (weights_only=True: no arbitrary unpickling)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "checkpoint.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals: all "not ours"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"checkpoint {str(path)!r} cannot be read safely (weights_only load refused it: "
            f"{reason[:160]}); is it a fer-search checkpoint?"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"checkpoint {str(path)!r} is not a fer-search checkpoint (made by another program?)"
        )
    return payload


def model_from_checkpoint(payload: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    args = dict(payload["model_args"])
    args["pretrained"] = False  # the checkpoint holds the weights
    model = create_model(**args)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


@dataclass
class _Data:
    """The training split on the device: uint8 images, targets, the epoch's index pool."""

    images: torch.Tensor
    targets: torch.Tensor  # float (N, C) probabilities
    index: torch.Tensor  # which images an epoch visits (mirror balancing repeats some)
    mirror: torch.Tensor  # bool: the visit is a mirrored copy
    weights: torch.Tensor | None  # class weights for balance="weighted"


@dataclass
class _State:
    """Everything a checkpoint must hold to continue training exactly."""

    model: nn.Module
    step_model: nn.Module  # the compiled model when torch.compile is on
    ema: nn.Module | None  # the weights' moving average (cfg.ema > 0), validated instead
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    plateau: _Plateau
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[EpochStats] = field(default_factory=list)


def _prepare_data(cfg: TrainConfig, split: FERSplit, device: torch.device) -> _Data:
    num_classes = len(split.class_names)
    if split.soft_labels is not None:
        targets = as_tensor(split.soft_labels).to(device, torch.float32)
    else:
        targets = augment.one_hot(as_tensor(split.labels).to(device), num_classes)
    if cfg.balance == "mirror":
        index, mirror = mirror_balance(split.labels, num_classes, cfg.seed)
    else:
        index, mirror = np.arange(len(split)), np.zeros(len(split), dtype=bool)
    weights = None
    if cfg.balance == "weighted":
        weights = torch.from_numpy(augment.class_weights(split.labels, num_classes)).to(device)
    return _Data(
        images=as_tensor(split.images).to(device),
        targets=targets,
        index=torch.from_numpy(index).to(device),
        mirror=torch.from_numpy(mirror).to(device),
        weights=weights,
    )


def _prepare_state(cfg: TrainConfig, num_classes: int, device: torch.device) -> _State:
    model = build_model(cfg, num_classes).to(device)
    if use_channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    step_model: nn.Module = model
    if cfg.compile and device.type == "cuda":
        step_model = torch.compile(model)  # type: ignore[assignment]
    return _State(
        model=model,
        step_model=step_model,
        ema=new_ema(model) if cfg.ema > 0 else None,
        optimizer=make_optimizer(cfg, model),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype(cfg, device) == torch.float16),
        generator=torch.Generator(device=device).manual_seed(cfg.seed),
        plateau=_Plateau(),
    )


def _restore(state: _State, resume: dict[str, Any]) -> int:
    """Load a checkpoint payload into the state; returns the epoch to start from."""
    state.model.load_state_dict(resume["state_dict"])
    state.optimizer.load_state_dict(resume["optimizer"])
    state.plateau.load_state_dict(resume["plateau"])
    if state.ema is not None and resume.get("ema_state_dict") is not None:
        state.ema.load_state_dict(resume["ema_state_dict"])
    if "rng" in resume:
        state.generator.set_state(resume["rng"])
    if "torch_rng" in resume:  # dropout draws from torch's global generator
        torch.set_rng_state(resume["torch_rng"])
    if resume.get("cuda_rng") is not None and state.generator.device.type == "cuda":
        torch.cuda.set_rng_state(resume["cuda_rng"], state.generator.device)
    state.step = int(resume["step"])
    state.best_acc, state.best_epoch = float(resume["best_val_acc"]), int(resume["best_epoch"])
    state.best_state = resume.get("best_state_dict")
    state.history = [EpochStats(**h) for h in resume.get("history", [])]
    return int(resume["epoch"])


def _payload(cfg: TrainConfig, state: _State, class_names: tuple[str, ...], epoch: int):
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_args": dict(state.model.fer_args),  # type: ignore[arg-type]
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "epoch": epoch,
        "step": state.step,
        "state_dict": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "best_state_dict": state.best_state,
        "best_val_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "optimizer": state.optimizer.state_dict(),
        "ema_state_dict": None if state.ema is None else state.ema.state_dict(),
        "plateau": state.plateau.state_dict(),
        "rng": state.generator.get_state(),  # a resumed run continues the same random stream
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(state.generator.device)
        if state.generator.device.type == "cuda"
        else None,
        "history": [h.__dict__ for h in state.history],
    }


def _train_epoch(
    cfg: TrainConfig, data: _Data, state: _State, device: torch.device, desc: str, progress: bool
) -> tuple[float, float, int]:
    """One pass over the data; returns (mean loss, accuracy, images seen). Metrics accumulate on
    the device and are read once, at the end (no host sync per step)."""
    state.model.train()
    n = len(data.index)
    batch = min(cfg.batch_size, n)
    steps = max(1, n // batch)  # drop the ragged last batch (BatchNorm needs > 1)
    total_steps = steps * cfg.epochs
    channels_last = use_channels_last(cfg, device)
    dtype = amp_dtype(cfg, device)
    aug = cfg.augment()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    perm = torch.randperm(n, device=device, generator=state.generator)
    order, flips = data.index[perm], data.mirror[perm]  # mirror flags travel with their images
    batches: Any = range(steps)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=desc, leave=False)
    for b in batches:
        sel = slice(b * batch, (b + 1) * batch)
        idx = order[sel]
        x = to_input(data.images[idx], channels_last)
        x = torch.where(flips[sel].view(-1, 1, 1, 1), torch.flip(x, dims=[3]), x)
        x, y = augment.augment_batch(x, data.targets[idx], aug, generator=state.generator)
        factor = lr_factor(cfg, state.step, total_steps, steps) * state.plateau.scale
        for group in state.optimizer.param_groups:
            group["lr"] = cfg.lr * factor
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = state.step_model(x)
            loss = F.cross_entropy(
                logits.float(), y, weight=data.weights, label_smoothing=cfg.label_smoothing
            )
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        update_ema(cfg, state)
        state.step += 1
        loss_sum += loss.detach() * batch
        correct += (logits.argmax(1) == y.argmax(1)).sum()
    seen = steps * batch
    return float(loss_sum) / seen, float(correct) / seen, seen


def train(
    cfg: TrainConfig,
    train_split: FERSplit,
    val_split: FERSplit,
    *,
    on_epoch: EpochCallback | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train `cfg.model` on `train_split`, selecting the best epoch on `val_split`.

    `resume` is a checkpoint payload from an earlier run of the same config: training continues
    after its epoch with its optimiser, schedule, random stream and best-so-far state.
    """
    cfg.validate()
    if len(train_split) == 0 or len(val_split) == 0:
        raise UserError("training needs non-empty train and val splits")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    class_names = train_split.class_names
    data = _prepare_data(cfg, train_split, device)
    state = _prepare_state(cfg, len(class_names), device)
    start_epoch = _restore(state, resume) if resume is not None else 0
    val_images = as_tensor(val_split.images)

    status, message = "completed", f"trained {cfg.epochs} epochs"
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        desc = f"epoch {epoch}/{cfg.epochs}"
        train_loss, train_acc, seen = _train_epoch(cfg, data, state, device, desc, progress)
        train_time = time.perf_counter() - t0
        probs = predict_probs(
            eval_model(state), val_images, device=device, batch_size=cfg.eval_batch_size
        )
        bad = "training loss" if not math.isfinite(train_loss) else "validation outputs"
        if bad == "training loss" or not np.isfinite(probs).all():
            status = "nan"  # argmax of NaN is no accuracy: stop, keep the best epoch so far
            message = f"non-finite {bad} at epoch {epoch} (lr={cfg.lr:g}); stopped"
            break
        val_loss, val_acc, val_f1 = _epoch_metrics(probs, val_split.labels)
        if cfg.schedule == "plateau":
            state.plateau.step(val_acc)
        if val_acc > state.best_acc:
            state.best_acc, state.best_epoch = val_acc, epoch
            state.best_state = {
                k: v.detach().cpu().clone() for k, v in eval_model(state).state_dict().items()
            }
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            val_loss=val_loss,
            val_acc=val_acc,
            val_f1=val_f1,
            lr=state.optimizer.param_groups[0]["lr"],
            images_per_s=seen / train_time,
            epoch_time=time.perf_counter() - t0,
        )
        state.history.append(stats)

        def save(path: Path, _epoch: int = epoch) -> None:
            save_checkpoint(path, _payload(cfg, state, class_names, _epoch))

        if on_epoch is not None and on_epoch(stats, save):
            status, message = "stopped", f"stopped after epoch {epoch} by the caller"
            break

    if state.best_state is not None:
        state.model.load_state_dict(state.best_state)
    return TrainResult(
        status=status,
        message=message,
        epochs_run=len(state.history),
        best_epoch=state.best_epoch,
        best_val_acc=max(state.best_acc, 0.0),
        history=state.history,
        model=state.model,
        model_args=dict(state.model.fer_args),  # type: ignore[arg-type]
    )


def best_payload(
    result: TrainResult, cfg: TrainConfig, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """A compact checkpoint of the best-by-val weights (what evaluate/predict load)."""
    assert result.model is not None
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_args": result.model_args,
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "epoch": result.best_epoch,
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "history": [h.__dict__ for h in result.history],
    }
