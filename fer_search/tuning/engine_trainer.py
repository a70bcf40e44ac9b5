"""EngineTrainer: a search's trials trained for real (tuning.trainable.run_trial), and the
final evaluation's inference from their checkpoints with fer_search.engine. The default trainer
(tuning.trainers.Trainer); tuning.simulated's SimulatedTrainer is the other. torch is imported
where it is used, so that a driver running simulated trials never imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_search.tuning.trainable import CHECKPOINT_FILE, run_trial
from fer_search.tuning.trainers import LoadedModel

__all__ = ["EngineTrainer", "load_trial_model"]

RESUME_ONLY = (
    "optimizer",
    "best_state_dict",
    "ema_state_dict",
    "best_is",
    "scaler",
    "best_val_probs",
)


def load_trial_model(directory: Path | str, device: Any) -> tuple[dict[str, Any], Any, Any]:
    """A trial checkpoint's best weights (the directory holding its checkpoint.pt) as a compact
    payload, its model, and the best epoch's val probabilities stored inside it (a float16
    tensor; None in checkpoints from before)."""
    from fer_search import engine

    payload = engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    payload["state_dict"] = engine.best_state_dict(payload)
    stored = payload.get("best_val_probs")
    payload = {k: v for k, v in payload.items() if k not in RESUME_ONLY}
    return payload, engine.model_from_checkpoint(payload, device), stored


@dataclass(frozen=True)
class EngineTrainer:
    """Real training: tuning.trainable.run_trial, fer_search.engine's checkpoints and inference."""

    kind: str = field(default="engine", kw_only=True)  # (a subclass's own fields come first)

    def run_trial(self, config: dict[str, Any], data: Any) -> None:
        run_trial(config, data)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def evaluation_device(self) -> str:
        from fer_search import engine

        return engine.resolve_device("auto").type

    def load(self, checkpoint: Any, device: str) -> LoadedModel:
        with checkpoint.as_directory() as directory:
            size = sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())
            payload, model, stored = load_trial_model(Path(directory), device)
        probs = None if stored is None else stored.float().numpy()
        return LoadedModel(payload, model, probs, bytes_read=size)

    def predict(self, loaded: LoadedModel, split: Any, device: str, tta: str = "none") -> Any:
        from fer_search import engine

        return engine.predict_probs(loaded.model, split.images, device=device, tta=tta)

    def save_best(self, loaded: LoadedModel, directory: Path) -> str:
        from fer_search import engine

        engine.save_checkpoint(directory / "best.pt", loaded.payload)
        return "best.pt"
