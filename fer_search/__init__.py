"""fer-search: distributed hyperparameter search for facial-expression recognition.

The Python API (see fer_search.api): load_data, train, evaluate, compare, predict,
predict_video, export, search, resume, upgrade. Its functions are imported on first
use, so `import fer_search` stays light.
"""

from __future__ import annotations

from typing import Any

from fer_search.errors import UserError

__version__ = "0.1.0"
_API = (  # fer_search.api.__all__, kept here so `import fer_search` stays light
    "Experiment",
    "compare",
    "evaluate",
    "export",
    "load_data",
    "predict",
    "predict_video",
    "resume",
    "search",
    "train",
    "upgrade",
)
__all__ = ["SimulatedTrainer", "TrainConfig", "UserError", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from fer_search import api

        return getattr(api, name)
    if name == "SimulatedTrainer":
        from fer_search.tuning.simulated import SimulatedTrainer

        return SimulatedTrainer
    if name == "TrainConfig":
        from fer_search.config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'fer_search' has no attribute {name!r}")
