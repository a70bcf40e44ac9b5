"""Which device a trial or the final evaluation gets, and what it means when a GPU Ray
granted is not one torch can see.

FER_SEARCH_SIMULATE_GPU=1 is a testing switch: work that Ray gives a GPU runs on the CPU,
everything else unchanged, so a local Ray cluster advertising logical GPUs (`ray start
--num-gpus 2`) runs the GPU code path of the search on a machine without one. Set for the
driver, it travels to the search's trials on every node (cluster.connect's runtime_env).
"""

from __future__ import annotations

import os

__all__ = ["SIMULATE_GPU_ENV", "device_for_gpu_work", "no_cuda_message", "simulate_gpu"]

SIMULATE_GPU_ENV = "FER_SEARCH_SIMULATE_GPU"


def simulate_gpu() -> bool:
    return os.environ.get(SIMULATE_GPU_ENV, "") not in ("", "0")


def device_for_gpu_work() -> str:
    """'cuda' for work Ray gave a GPU; 'cpu' under FER_SEARCH_SIMULATE_GPU=1 where torch
    sees no GPU."""
    import torch

    if torch.cuda.is_available() or not simulate_gpu():
        return "cuda"
    return "cpu"


def no_cuda_message(node: str, torch_version: str, cuda_build: str | None) -> str:
    build = f"built for CUDA {cuda_build}" if cuda_build else "a CPU-only build"
    return (
        f"Ray node {node} advertises GPUs but torch there sees no CUDA device "
        f"(torch {torch_version}, {build}; no GPU or no NVIDIA driver?): fix the node, or "
        "search on CPU with --gpus 0"
    )
