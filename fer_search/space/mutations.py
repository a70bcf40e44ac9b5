"""What population based training (`scheduler: pbt`) may change in a running trial: the space's
continuous ranges over the learning rate, weight decay and augmentation strengths.

PBT copies a better trial's weights and configuration into a worse one and perturbs a few
settings (Ray's PopulationBasedTraining multiplies each by 0.8 or 1.2, or resamples it).
Only settings that make sense to change mid-training are mutable, and only where the space
samples them as a continuous range (`loguniform`, or `uniform` without a `step`): the
perturbed value is kept inside the range of the parameter that is active for the trial's
configuration (`lr@sgd` for an SGD trial), and a setting no parameter of the configuration
samples keeps the value the space gives it. No Ray here (tuning.schedulers builds the
scheduler from these).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fer_search.config import TrainConfig
from fer_search.errors import UserError
from fer_search.space.schema import Param, SearchSpace

__all__ = [
    "PBT_SETTINGS",
    "check_pbt",
    "keep_in_space",
    "mutable_params",
    "perturbation_interval",
]

# lr, weight decay and the float augmentation strengths (crop_pad is a whole number of pixels)
PBT_SETTINGS: tuple[str, ...] = (
    "lr",
    "weight_decay",
    "hflip",
    "rotation",
    "scale",
    "brightness",
    "contrast",
    "erasing",
    "mixup",
    "cutmix",
)


def perturbation_interval(epochs: int, interval: int) -> int:
    """The epochs between perturbations: `interval`, or when 0 a quarter of `epochs` (>= 1)."""
    return interval or max(1, epochs // 4)


def _continuous(p: Param) -> bool:
    return p.kind == "loguniform" or (p.kind == "uniform" and p.step is None)


def mutable_params(space: SearchSpace) -> dict[str, tuple[Param, ...]]:
    """Setting -> the space's continuous parameters that sample it, for the PBT_SETTINGS the
    space samples (in the space's order)."""
    found: dict[str, list[Param]] = {}
    for p in space.params:
        if p.setting in PBT_SETTINGS and _continuous(p):
            found.setdefault(p.setting, []).append(p)
    return {setting: tuple(params) for setting, params in found.items()}


def check_pbt(space: SearchSpace, label: str) -> None:
    """A PBT search needs something to perturb and one metric to exploit on; `label` names
    where `pbt` was chosen."""
    if space.experiment.scheduler == "pbt" and space.objectives:
        raise UserError(
            f"{label}=pbt exploits on one metric; {space.source} has `objectives:` "
            "(a multi-objective search runs with asha, hyperband, median or fifo)"
        )
    if space.experiment.scheduler == "pbt" and not mutable_params(space):
        raise UserError(
            f"{label}=pbt needs a continuous range (loguniform, or uniform without step) over "
            f"one of {', '.join(PBT_SETTINGS)} for PBT to perturb; this space samples none"
        )


def _active(p: Param, config: Mapping[str, Any]) -> bool:
    """Whether `p` is active in a trial config keyed by setting (`when` names parameters; their
    values are the config's values of their settings)."""
    return all(config.get(ref.partition("@")[0]) in allowed for ref, allowed in p.when)


def keep_in_space(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """A perturbed config with each mutable setting inside the range of the parameter active for
    it (clipped), or, where no sampled parameter is active, back at what the space gives it."""
    mutable = mutable_params(space)
    for setting, params in mutable.items():
        if setting not in config:
            continue
        active = next((p for p in params if _active(p, config)), None)
        if active is not None:
            assert active.low is not None and active.high is not None
            config[setting] = min(max(float(config[setting]), active.low), active.high)
            continue
        fixed = [
            p
            for p in space.params
            if p.setting == setting and p.kind == "fixed" and _active(p, config)
        ]
        config[setting] = fixed[0].value if fixed else getattr(TrainConfig, setting)
    return config
