"""Bare Ray Tune's floor for `fer-search bench --only scale` and benchmarks/ray_floor.py: the
same number of one-second trials through a function that sleeps and reports, ASHA with the
same rungs, Tune's random search; no checkpoints, callbacks or searcher database, as Ray's own
scalability tests (release/tune_tests/scalability_tests) run them."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["bare_trainable", "run_ray_floor"]


def run_ray_floor(plan: Any, trials: int, concurrency: int, storage: str) -> dict[str, Any]:
    """`trials` through bare Ray Tune, `concurrency` at once: a function that sleeps
    `plan.epoch_s` per epoch for up to `plan.epochs` and reports, ASHA with the same rungs
    (`plan.reduction_factor`), Tune's random search; no checkpoints, no callbacks, no searcher
    database. Ray's own cost on this machine, for comparison, in the figures a search's run
    gets (`plan`: a bench.scale.ScalePlan, not imported here, as that module imports this)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    trainable = bare_trainable(plan.epochs, plan.epoch_s)

    ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"quality": tune.uniform(0.3, 0.7)},
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=trials,
            max_concurrent_trials=concurrency, reuse_actors=True,
            scheduler=ASHAScheduler(max_t=plan.epochs, grace_period=1,
                                    reduction_factor=plan.reduction_factor),
        ),
        run_config=tune.RunConfig(storage_path=storage, name="ray-floor", verbose=0),
    )  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    grid = tuner.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    epochs = sum(
        int((grid[i].metrics or {}).get("training_iteration", 0)) for i in range(len(grid))
    )
    ray.shutdown()
    minimum = epochs * plan.epoch_s / concurrency  # as a search's overhead is measured
    return {
        "tune_s": wall,
        "cpu_s": cpu,
        "epochs": epochs,
        "minimum_s": minimum,
        "overhead": wall / minimum if minimum else float("nan"),
        "driver_ms_per_result": 1000 * cpu / max(1, epochs),
        "results_per_s": epochs / wall,
    }


FLOOR_TRAINABLE = """
import random
import time

from ray import tune


def trainable(config):
    for epoch in range(1, EPOCHS + 1):
        time.sleep(EPOCH_S)
        tune.report({"val_acc": config["quality"] * (1 - 0.5**epoch) + random.gauss(0, 0.005)})
"""


def bare_trainable(epochs: int, epoch_s: float) -> Any:
    """The floor's trainable, made outside any module so that Ray pickles it by value: its
    workers import ray alone, not fer_search (whose bench modules import torch: 0.45 GB and
    seconds of start-up per worker, which would be counted as Ray's)."""
    namespace: dict[str, Any] = {"__name__": "bare_floor", "EPOCHS": epochs,
                                 "EPOCH_S": epoch_s}  # fmt: skip
    exec(compile(FLOOR_TRAINABLE, "<bare floor trainable>", "exec"), namespace)  # noqa: S102
    return namespace["trainable"]
