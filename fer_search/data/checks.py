"""Checking load_data's options before any file is read."""

from __future__ import annotations

import numpy as np

from fer_search.config import CLASS_SETS
from fer_search.errors import UserError, did_you_mean

FERPLUS_MODES = ("majority", "soft")


def check_options(class_set: str, ferplus_mode: str, val_fraction: float, seed: int) -> None:
    if class_set not in CLASS_SETS:
        raise UserError(
            f"unknown class set {class_set!r}; choose one of "
            f"{', '.join(CLASS_SETS)}{did_you_mean(class_set, CLASS_SETS)}"
        )
    if ferplus_mode not in FERPLUS_MODES:
        raise UserError(
            f"unknown FER+ mode {ferplus_mode!r}; choose one of "
            f"{', '.join(FERPLUS_MODES)}{did_you_mean(ferplus_mode, FERPLUS_MODES)}"
        )
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val fraction must be between 0 and 1, got {val_fraction!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be an integer >= 0, got {seed!r}")
