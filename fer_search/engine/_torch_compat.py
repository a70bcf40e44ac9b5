"""torch internals and version differences the engine depends on, in one place.

Checked on torch 2.14.1. tests/test_engine_compat.py fails with a clear message when one of
these disappears or changes its signature, instead of the engine silently choosing another
precision.
"""

from __future__ import annotations

import torch

__all__ = ["cpu_has_native_bf16", "cuda_has_native_bf16"]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX).

    Private API: ``torch.ops.mkldnn._is_mkldnn_bf16_supported`` (present in torch 2.0-2.14.1).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_native_bf16() -> bool:
    """Whether the current CUDA device computes bf16 natively (compute capability 8.0+).

    Older torch has no ``including_emulation`` argument; there the function already answered
    for native support.
    """
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())
