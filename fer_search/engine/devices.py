"""Which device trains, how data reaches it, and what running out of its memory means."""

from __future__ import annotations

import torch

from fer_search.errors import DeterministicError, UserError

__all__ = ["configure_backends", "out_of_memory", "resolve_device", "to_device"]


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def configure_backends(device: torch.device) -> None:
    """Process-wide settings for training on `device`. On CUDA, cuDNN benchmarks its conv
    algorithms once per input shape: every batch of a trial has the same shape (the ragged
    last batch is dropped), so the search pays off from the second step on."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`: itself when it is there already (no copy); from host memory to
    CUDA through pinned memory with an asynchronous copy."""
    if tensor.device.type == "cpu" and device.type == "cuda" and torch.cuda.is_available():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def out_of_memory(device: torch.device, knob: str, value: int) -> DeterministicError:
    """The one-line failure for running out of device memory at `knob`=`value` (batch_size or
    eval_batch_size): a retry would fail the same way, so the trial fails for good."""
    where = ""
    if device.type == "cuda" and torch.cuda.is_available():
        mib = 2**20
        allocated = torch.cuda.memory_allocated(device) // mib
        reserved = torch.cuda.memory_reserved(device) // mib
        total = torch.cuda.get_device_properties(device).total_memory // mib
        index = device.index if device.index is not None else torch.cuda.current_device()
        device = torch.device("cuda", index)
        where = f" ({allocated:,} MiB allocated, {reserved:,} MiB reserved of {total:,} MiB)"
    kind = "CUDA out of memory" if device.type == "cuda" else "out of memory"
    return DeterministicError(f"{kind} at {knob}={value} on {device}{where}; lower {knob}")
