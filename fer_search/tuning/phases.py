"""Where a search's time goes: each step's wall time and the driver's CPU time, recorded in
experiment.json's `phases` (the Tune phase, study closing, the leaderboard, the refit, the
final evaluation, the report), so a slow step shows itself at any scale."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Phases"]


class Phases:
    """Timed steps, in order: {step: {"wall_s", "cpu_s"}}; `cpu_s` is this process's CPU time
    (all its threads: Tune's loop, the searcher, the callbacks, Ray's client threads)."""

    def __init__(self, earlier: dict[str, Any] | None = None) -> None:
        self.steps: dict[str, dict[str, float]] = dict(earlier or {})

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.steps[name] = {
                "wall_s": round(time.perf_counter() - wall, 3),
                "cpu_s": round(time.process_time() - cpu, 3),
            }
