"""The validated search space as data: Param, ExperimentSettings, SearchSpace, their YAML form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fer_search.objectives import COSTS, SCORES, Objective

__all__ = ["KINDS", "METRICS", "ExperimentSettings", "Param", "SearchSpace"]

METRICS: dict[str, str] = SCORES  # a space's `metric` -> its direction (objectives.SCORES)
KINDS: tuple[str, ...] = ("loguniform", "uniform", "int", "categorical", "fixed")


@dataclass(frozen=True)
class Param:
    """One entry of `params`: a TrainConfig setting, fixed or sampled, maybe conditional."""

    name: str
    kind: str  # loguniform | uniform | int | categorical | fixed
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()
    value: Any = None
    when: tuple[tuple[str, tuple], ...] = ()  # ((param, allowed values), ...)

    @property
    def setting(self) -> str:
        """The TrainConfig field this parameter sets ('lr' for 'lr@sgd')."""
        return self.name.partition("@")[0]

    def to_spec(self) -> Any:
        """The YAML form of this parameter (a mapping; load_space_dict reads it back)."""
        spec: dict[str, Any] = {"type": self.kind}
        if self.kind == "fixed":
            spec["value"] = self.value
        elif self.kind == "categorical":
            spec["choices"] = list(self.choices)
        else:
            spec["low"], spec["high"] = self.low, self.high
            if self.step is not None:
                spec["step"] = self.step
            if self.log and self.kind == "int":
                spec["log"] = True
        if self.when:
            spec["when"] = {ref: list(allowed) for ref, allowed in self.when}
        return spec


@dataclass
class ExperimentSettings:
    """How the search runs: its scheduler, trial count, resources. CLI flags override these."""

    # Ray Tune's trial scheduler: asha | hyperband | median | pbt | fifo (config.SCHEDULERS)
    scheduler: str = "asha"
    epochs: int = 10  # each trial's epochs = the scheduler's max_t
    grace_period: int = 1  # epochs before ASHA or the median rule may stop a trial
    reduction_factor: int = 3  # ASHA's and HyperBand's (eta)
    # the median rule judges a trial against at least this many others' running means
    min_samples_required: int = 3
    # PBT: epochs between a trial's perturbations (exploit + explore); 0 = a quarter of the
    # epochs, at least 1 (space.mutations.perturbation_interval)
    perturbation_interval: int = 0
    # ASHA: each trial's cosine or one-cycle learning-rate schedule anneals by every rung and
    # starts again after it (TrainConfig.anneal_at), so trials are compared at rungs with their
    # learning rate annealed, as at the end; the refit trains one schedule
    rung_anneal: bool = False
    num_samples: int = 10
    seed: int = 0
    metric: str = "val_acc"
    max_concurrent: int = 0  # 0 = as many as resources allow
    time_budget: float = 0.0  # seconds; 0 = none
    gpus_per_trial: float | None = None  # None = the search decides (1 with CUDA, else 0)
    cpus_per_trial: float = 1.0
    top_k: int = 3  # ensemble size for the final evaluation
    # seconds of time_budget kept to train the best configuration again for as many epochs as
    # fit (a refit); without a time_budget, the refit gets this long after the search
    refit_budget: float = 0.0
    # how many of the best configurations the refit trains again, at the same time, sharing what
    # the search's trials used (an ensemble of equals for the final evaluation)
    refit_top_k: int = 1
    # a trial writes its resumable checkpoint every this many epochs (and at its last and at each
    # new best epoch): 2 writes 38 % fewer MB per epoch than checkpointing every epoch did for
    # densenet169 (results/benchmarks/bench-checkpoint.md), and a retried trial repeats at most
    # one epoch
    checkpoint_every: int = 2
    # times Ray retries a trial whose worker or node died (from its last checkpoint); 0 = never
    max_failures: int = 1
    # which Pareto-optimal trial of a multi-objective search becomes best/: conditions such as
    # 'latency_ms<=2' (the highest val_acc among those that satisfy them); '' = the best val_acc
    pick: str = ""

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    @property
    def search_budget(self) -> float:
        """Seconds the search's trials may take (the time budget less the refit's share)."""
        return self.time_budget - self.refit_budget if self.time_budget else 0.0


@dataclass
class SearchSpace:
    name: str
    description: str
    params: tuple[Param, ...]
    experiment: ExperimentSettings
    source: str
    # trials to run first (Optuna's enqueue_trial), e.g. a known-good hand-tuned configuration
    points: tuple[dict[str, Any], ...] = ()
    # a multi-objective search: the metric first, then costs (fer_search.objectives)
    objectives: tuple[Objective, ...] = ()
    # upper limits on the model's costs ({max_latency_ms: 2}), Optuna trial constraints
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def measures_cost(self) -> bool:
        """Whether each trial measures its model's costs (params, flops, latency_ms)."""
        return bool(self.objectives or self.constraints)

    @property
    def objective_names(self) -> list[str]:
        """The study's metric names: the objectives, or the one search metric."""
        return [o.metric for o in self.objectives] or [self.experiment.metric]

    def pick_metrics(self) -> list[str]:
        """What `pick` may name: the objectives (and the other costs measured with them)."""
        if not self.objectives:
            return []
        return [self.experiment.metric, *COSTS]

    def to_dict(self) -> dict[str, Any]:
        """The resolved space as plain data; load_space_dict(space.to_dict()) gives it back."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "experiment": dataclasses.asdict(self.experiment),
            "params": {p.name: p.to_spec() for p in self.params},
        }
        if self.points:
            out["points_to_evaluate"] = [dict(point) for point in self.points]
        if self.objectives:
            out["objectives"] = [o.to_dict() for o in self.objectives]
        if self.constraints:
            out["constraints"] = dict(self.constraints)
        return out
