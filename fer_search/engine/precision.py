"""Which floating-point precision a run trains in, per device, and the matching GradScaler.

`amp` is the config's choice: "auto" picks bf16 where the device computes it natively (CUDA
compute capability 8.0+; CPUs with AVX512-BF16 or AMX), fp16 on older GPUs (T4, V100) and fp32
on other CPUs; "bf16" and "fp16" are used on any device as asked; "off" is fp32. fp16 always
trains with a GradScaler for the training device's type, bf16 and fp32 never do, so fp16 on a
CPU runs the same code as fp16 on a GPU.
"""

from __future__ import annotations

import torch
from torch.amp import GradScaler

from fer_search.config import TrainConfig
from fer_search.engine import _torch_compat

__all__ = [
    "amp_dtype",
    "cpu_has_bf16",
    "cuda_has_bf16",
    "make_grad_scaler",
    "precision_name",
    "use_channels_last",
]

_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively, where oneDNN's bf16 conv kernels are much faster
    than fp32; elsewhere bf16 on CPU is emulated and slower."""
    return _torch_compat.cpu_has_native_bf16()


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether the GPU `device` computes bf16 natively (Ampere and later); emulated bf16 on a
    T4 or V100 is slower than fp16."""
    if device.index is not None and torch.cuda.is_available():
        with torch.cuda.device(device):
            return _torch_compat.cuda_has_native_bf16()
    return _torch_compat.cuda_has_native_bf16()


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `cfg.amp` on `device`; None is fp32 (no autocast). With "auto",
    epochs of the 4-block simple_cnn ran 2.2x faster in bf16 than in fp32 on this project's
    2-core AVX512-BF16 machine (README)."""
    if cfg.amp == "off":
        return None
    if cfg.amp == "bf16":
        return torch.bfloat16
    if cfg.amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


def precision_name(cfg: TrainConfig, device: torch.device) -> str:
    """ "bf16", "fp16" or "fp32": what `cfg` trains in on `device` (reported per epoch)."""
    return _NAMES[amp_dtype(cfg, device)]


def make_grad_scaler(cfg: TrainConfig, device: torch.device) -> GradScaler:
    """A GradScaler for the device's type, enabled exactly when the run trains in fp16 (whose
    small range would flush small gradients to zero without loss scaling)."""
    return GradScaler(device.type, enabled=amp_dtype(cfg, device) == torch.float16)


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """NHWC pays off on CUDA, and on CPU only together with bf16 (oneDNN's blocked kernels)."""
    if not cfg.channels_last:
        return False
    return device.type == "cuda" or amp_dtype(cfg, device) == torch.bfloat16
