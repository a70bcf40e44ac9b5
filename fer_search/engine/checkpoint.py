"""Checkpoints: the resumable payload of a run, the compact best-weights payload, and safe
saving and loading of both."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_search.config import EpochStats, TrainConfig
from fer_search.engine.state import TrainResult, TrainState
from fer_search.errors import UserError
from fer_search.models import create_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "best_payload",
    "checkpoint_file",
    "load_checkpoint",
    "model_from_checkpoint",
    "model_payload",
    "restore",
    "resumable_payload",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "fer-search-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically so a crash mid-save never leaves a truncated checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a fer-search checkpoint safely (weights_only=True: no arbitrary unpickling)."""
    path = checkpoint_file(path)
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


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given, or the one a run directory holds (best.pt first)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "checkpoint.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def model_from_checkpoint(payload: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    args = dict(payload["model_args"])
    args["pretrained"] = False  # the checkpoint holds the weights
    model = create_model(**args)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def resumable_payload(
    cfg: TrainConfig, state: TrainState, class_names: tuple[str, ...], epoch: int
) -> dict[str, Any]:
    """A full checkpoint of `state` after `epoch`: `restore` continues it exactly. When `epoch`
    is the best so far, the best weights are the model's (or the EMA's) weights it holds
    anyway, so they are not stored twice (`best_is`); `best_state_dict` reads either form.
    `best_val_probs` are the best epoch's probabilities on val (float16; see compact_probs)."""
    device = state.generator.device
    at_best = state.best_epoch == epoch and state.best_state is not None
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_args": dict(state.model.fer_args),  # type: ignore[arg-type]
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "epoch": epoch,
        "step": state.step,
        "state_dict": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "best_state_dict": None if at_best else state.best_state,
        "best_is": ("ema" if state.ema is not None else "model") if at_best else None,
        "best_val_acc": state.best_acc,
        "best_epoch": state.best_epoch,
        "best_val_probs": state.best_val_probs,  # the final evaluation reads these
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),  # {} unless fp16: the loss scale and its tracker
        "ema_state_dict": None if state.ema is None else state.ema.state_dict(),
        "plateau": state.plateau.state_dict(),
        "rng": state.generator.get_state(),  # a resumed run continues the same random stream
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": [h.__dict__ for h in state.history],
    }


def restore(state: TrainState, resume: dict[str, Any]) -> int:
    """Load a `resumable_payload` into the state; returns the epoch to start from."""
    state.model.load_state_dict(resume["state_dict"])
    state.optimizer.load_state_dict(resume["optimizer"])
    state.plateau.load_state_dict(resume["plateau"])
    if state.ema is not None and resume.get("ema_state_dict") is not None:
        state.ema.load_state_dict(resume["ema_state_dict"])
    if state.scaler.is_enabled() and resume.get("scaler"):
        state.scaler.load_state_dict(resume["scaler"])
    if "rng" in resume:
        state.generator.set_state(resume["rng"])
    if "torch_rng" in resume:  # dropout draws from torch's global generator
        torch.set_rng_state(resume["torch_rng"])
    if resume.get("cuda_rng") is not None and state.generator.device.type == "cuda":
        torch.cuda.set_rng_state(resume["cuda_rng"], state.generator.device)
    state.step = int(resume["step"])
    state.best_acc, state.best_epoch = float(resume["best_val_acc"]), int(resume["best_epoch"])
    state.best_state = best_state_dict(resume) if resume.get("best_epoch") else None
    state.best_val_probs = resume.get("best_val_probs")  # None from before they were kept
    state.history = [EpochStats(**h) for h in resume.get("history", [])]
    return int(resume["epoch"])


def best_state_dict(payload: dict[str, Any]) -> dict[str, Any]:
    """The best epoch's weights in a resumable checkpoint: its own copy of them, or, when it was
    written at the best epoch, the EMA's or the model's weights (`best_is`)."""
    if payload.get("best_state_dict") is not None:
        return payload["best_state_dict"]
    if payload.get("best_is") == "ema" and payload.get("ema_state_dict") is not None:
        return dict(payload["ema_state_dict"])
    return dict(payload["state_dict"])


def model_payload(
    model: nn.Module,
    cfg: TrainConfig,
    class_names: Sequence[str],
    model_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The smallest checkpoint evaluate/predict/export load: how to build the model (its
    `fer_args` unless `model_args` is given), the config, the classes and the weights."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_args": dict(model_args if model_args is not None else model.fer_args),  # type: ignore[arg-type]
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def best_payload(
    result: TrainResult, cfg: TrainConfig, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """A compact checkpoint of the best-by-val weights (what evaluate/predict load)."""
    assert result.model is not None
    return {
        **model_payload(result.model, cfg, class_names, result.model_args),
        "epoch": result.best_epoch,
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "history": [h.__dict__ for h in result.history],
    }
