"""One value from a space file checked: numbers, file paths, what TrainConfig accepts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fer_search.config import MODEL_NAMES, TrainConfig
from fer_search.errors import UserError, did_you_mean

PATH_SETTINGS = ("weights_path",)  # TrainConfig fields that name a file


def number(value: Any, type_name: str, label: str) -> Any:
    """Parse an int or float, accepting strings such as '1e-4' (YAML reads those as text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{label}={value!r} is not a number")
    try:
        parsed = float(value)
    except ValueError:
        raise UserError(f"{label}={value!r} is not a number") from None
    if not math.isfinite(parsed):
        raise UserError(f"{label}={value!r} must be a finite number")
    if type_name == "int":
        if parsed != int(parsed):
            raise UserError(f"{label}={value!r} is not a whole number")
        return int(parsed)
    return parsed


def resolve_path(setting: str, value: Any) -> Any:
    """A file a space names is made absolute now: trials run in their own directories, and the
    saved space.yaml must mean the same file on --resume. `check_value` checks it exists."""
    if setting not in PATH_SETTINGS or value == "":
        return value
    return str(Path(value).expanduser().resolve())


def check_value(setting: str, value: Any, label: str) -> None:
    """The value must be one TrainConfig accepts for `setting` (ranges, choices, model names,
    existing files)."""
    if setting in PATH_SETTINGS and value != "" and not Path(value).is_file():
        raise UserError(f"{label}: {setting} {value!r} is not a file")
    if setting == "model" and value not in MODEL_NAMES:
        raise UserError(
            f"{label}: unknown model {value!r} (known: {', '.join(MODEL_NAMES)})"
            f"{did_you_mean(value, MODEL_NAMES)}"
        )
    config = TrainConfig()
    setattr(config, setting, value)
    config.validate(source=label)
