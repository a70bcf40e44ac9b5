"""What a search is asked to do, besides its space: the search flags as one typed object.

The CLI's flags and the API's keyword arguments have the same names; both end here, and
`validate` checks them once, with the messages the CLI has always printed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from fer_search.tuning.trainers import Trainer

__all__ = ["SPACE_OVERRIDES", "SearchOptions"]

# Options that override the space's `experiment:` block (same names there).
SPACE_OVERRIDES = (
    "scheduler",
    "epochs",
    "num_samples",
    "seed",
    "grace_period",
    "reduction_factor",
    "max_concurrent",
    "time_budget",
    "gpus_per_trial",
    "cpus_per_trial",
    "top_k",
    "refit_budget",
    "refit_top_k",
    "checkpoint_every",
    "max_failures",
    "min_samples_required",
    "pick",
    "rung_anneal",
)


@dataclass
class SearchOptions:
    """The search flags (`fer-search search --help`), None meaning "as the space says"."""

    name: str | None = None
    storage: str | None = None
    address: str | None = None
    # resources
    gpus: float | None = None
    gpus_per_trial: float | None = None
    cpus: int | None = None
    cpus_per_trial: float | None = None
    max_concurrent: int | None = None
    # experiment (override the space)
    num_samples: int | None = None
    scheduler: str | None = None  # asha | hyperband | median | fifo
    epochs: int | None = None
    grace_period: int | None = None
    reduction_factor: int | None = None
    time_budget: float | None = None
    refit_budget: float | None = None
    refit_top_k: int | None = None
    checkpoint_every: int | None = None
    max_failures: int | None = None
    min_samples_required: int | None = None
    rung_anneal: bool | None = None  # anneal each trial's schedule by every ASHA rung
    seed: int | None = None
    top_k: int | None = None
    # which Pareto-optimal trial becomes best/, e.g. "latency_ms<=2" (objectives.parse_pick)
    pick: str | None = None
    no_asha: bool = False  # = scheduler "fifo"
    no_final_eval: bool = False
    # the console view: 0 (the API's default: a notebook sees only what it asks for, and
    # `logging` shows the search's messages), 1 the live table (the CLI's --verbose default)
    verbose: int = 0
    # earlier experiment folders whose finished trials seed this search's study (warm_start.py)
    warm_start: list[str] | None = None
    # not flags
    sampler: BaseSampler | None = None  # in place of the seeded TPE (bench: RandomSampler)
    # what the trials run: None, the real training (EngineTrainer);
    # tuning.simulated.SimulatedTrainer for scale tests and benchmarks
    trainer: Trainer | None = None
    command: str | None = None  # how the search was started, for experiment.json

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> SearchOptions:
        """From `fer_search.search(...)`'s keyword arguments; an unknown name is a UserError."""
        known = {f.name for f in fields(cls)}
        for key in overrides:
            if key not in known:
                raise UserError(f"unknown search option {key!r}{did_you_mean(key, known)}")
        options = cls(**overrides)
        options.validate()
        return options

    def space_overrides(self) -> dict[str, Any]:
        overrides = {name: getattr(self, name) for name in SPACE_OVERRIDES}
        if self.no_asha:
            overrides["scheduler"] = "fifo"
        return overrides

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["sampler"] = None if self.sampler is None else type(self.sampler).__name__
        values["trainer"] = None if self.trainer is None else self.trainer.describe()
        return values

    def validate(self) -> None:
        counts = ("num_samples", "epochs", "grace_period", "max_concurrent", "top_k", "cpus")
        for name in (*counts, "refit_top_k", "checkpoint_every", "min_samples_required"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.no_asha and self.scheduler not in (None, "fifo"):
            raise UserError(
                f"--no-asha means --scheduler fifo, not --scheduler {self.scheduler}; give one"
            )
        if self.max_failures is not None and self.max_failures < 0:
            raise UserError(f"--max-failures must be >= 0, got {self.max_failures}")
        if self.gpus is not None and self.gpus < 0:
            raise UserError(f"--gpus must be >= 0, got {self.gpus:g}")
        gpt = self.gpus_per_trial
        if gpt is not None and not 0 < gpt <= 1:
            raise UserError(
                f"--gpus-per-trial must be in (0, 1] (a trial trains on one GPU), got {gpt:g}"
            )
        if self.time_budget is not None and self.time_budget <= 0:
            raise UserError(f"--time-budget must be > 0 seconds, got {self.time_budget:g}")
        if self.refit_budget is not None and self.refit_budget < 0:
            raise UserError(f"--refit-budget must be >= 0 seconds, got {self.refit_budget:g}")
        if self.warm_start is not None:
            from fer_search.tuning.warm_start import check_dirs

            if isinstance(self.warm_start, str | Path):  # one folder given without a list
                self.warm_start = [str(self.warm_start)]
            self.warm_start = [str(path) for path in self.warm_start]
            check_dirs(self.warm_start)
