"""The torch internals fer_search.engine._torch_compat relies on (checked on torch 2.14.1) are
still there: when one disappears these fail with what to fix, instead of the engine quietly
training in another precision."""

from __future__ import annotations

import inspect

import torch

from fer_search.engine import _torch_compat

CHECKED_ON = "2.14.1"


def where() -> str:
    return (
        f"torch {torch.__version__} (fer_search.engine._torch_compat was checked on {CHECKED_ON})"
    )


def test_mkldnn_bf16_probe_still_exists():
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    assert probe is not None, (
        f"{where()} has no torch.ops.mkldnn._is_mkldnn_bf16_supported: "
        "cpu_has_native_bf16 would always say False and amp=auto would train CPUs in fp32; "
        "find the new way to detect AVX512-BF16/AMX and update _torch_compat"
    )
    answer = probe()
    assert isinstance(answer, bool), f"{where()}: the bf16 probe returned {answer!r}, not a bool"
    assert _torch_compat.cpu_has_native_bf16() is answer


def test_cuda_bf16_check_still_takes_including_emulation():
    parameters = inspect.signature(torch.cuda.is_bf16_supported).parameters
    assert "including_emulation" in parameters, (
        f"{where()}: torch.cuda.is_bf16_supported lost its including_emulation argument; "
        "amp=auto could pick emulated bf16 on a T4/V100; update cuda_has_native_bf16"
    )
    assert isinstance(_torch_compat.cuda_has_native_bf16(), bool)
