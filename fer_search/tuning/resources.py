"""Trial resources and how many trials run at once, from the flags, the space and the cluster."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypedDict

from fer_search.errors import UserError

if TYPE_CHECKING:
    from fer_search.space import ExperimentSettings

__all__ = ["ResourcePlan", "local_gpu_count", "plan_resources", "trials_on_node"]


class ResourcePlan(TypedDict):
    """What each trial gets and how many run at once: experiment.json's `resources`."""

    gpus: float  # GPUs the search uses in all
    gpus_per_trial: float
    cpus_per_trial: float
    max_concurrent: int
    device: str  # "cuda" | "cpu": where trials train
    cluster: dict[str, float]  # the Ray cluster's CPU and GPU totals when the search started
    nodes: int


def local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_resources(
    gpus_wanted: float | None,
    experiment: ExperimentSettings,
    cluster: dict[str, float],
    nodes: list[dict[str, float]] | None = None,
) -> ResourcePlan:
    """Trial resources and concurrency from the flags, the space and what the cluster has.
    With `nodes` (each node's CPU/GPU totals), a trial must fit on one node, and concurrency is
    what the nodes hold together, so every GPU node gets trials."""
    have_gpus = cluster.get("GPU", 0.0)
    have_cpus = cluster.get("CPU", 0.0)
    gpus = have_gpus if gpus_wanted is None else gpus_wanted
    if gpus > have_gpus:
        raise UserError(
            f"--gpus {gpus:g} asked for {gpus:g} GPUs but the Ray cluster has "
            f"{have_gpus:g}; use --gpus {have_gpus:g} or join a GPU cluster with --address"
        )
    cpus_per_trial = float(experiment.cpus_per_trial)
    if cpus_per_trial > have_cpus:
        raise UserError(
            f"cpus_per_trial={cpus_per_trial:g} but the Ray cluster has {have_cpus:g} CPUs; "
            f"use --cpus-per-trial {max(1, int(have_cpus))}"
        )
    if gpus == 0:
        gpus_per_trial, device = 0.0, "cpu"
    else:
        gpus_per_trial = float(experiment.gpus_per_trial or 1.0)
        if gpus_per_trial > gpus:
            raise UserError(f"--gpus-per-trial {gpus_per_trial:g} exceeds the {gpus:g} GPUs in use")
        device = "cuda"
    limit = math.floor(have_cpus / cpus_per_trial)
    if gpus_per_trial:
        limit = min(limit, math.floor(gpus / gpus_per_trial + 1e-9))
    if nodes:
        fits = [trials_on_node(n, cpus_per_trial, gpus_per_trial) for n in nodes]
        if not any(fits):
            biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
            raise UserError(
                f"no Ray node can hold one trial ({cpus_per_trial:g} CPUs, {gpus_per_trial:g} "
                f"GPUs): the largest has {biggest.get('CPU', 0.0):g} CPUs and "
                f"{biggest.get('GPU', 0.0):g} GPUs; lower --cpus-per-trial or --gpus-per-trial"
            )
        limit = min(limit, sum(fits))
    if experiment.max_concurrent:
        limit = min(limit, experiment.max_concurrent)
    return {
        "gpus": float(gpus),
        "gpus_per_trial": gpus_per_trial,
        "cpus_per_trial": cpus_per_trial,
        "max_concurrent": max(1, limit),
        "device": device,
        "cluster": {k: cluster[k] for k in ("CPU", "GPU") if k in cluster},
        "nodes": len(nodes) if nodes else 1,
    }


def trials_on_node(node: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    fit = math.floor(node.get("CPU", 0.0) / cpus_per_trial + 1e-9)
    if gpus_per_trial:
        fit = min(fit, math.floor(node.get("GPU", 0.0) / gpus_per_trial + 1e-9))
    return max(0, fit)
