"""A search's results directory as the API returns it: `fer_search.Experiment`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_search.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Experiment", "read_json_if_present"]


@dataclass
class Experiment:
    """A search's results directory, read on demand."""

    path: Path
    interrupted: bool = False  # resume(path) continues it
    note: str = ""
    wall_time_s: float | None = None

    @classmethod
    def open(cls, path: str | Path) -> Experiment:
        exp = Path(path)
        if not (exp / "experiment.json").is_file():
            raise UserError(f"{str(exp)!r} is not a fer-search experiment (no experiment.json)")
        return cls(path=exp, wall_time_s=cls(exp).record.get("wall_time_s"))

    @property
    def record(self) -> dict[str, Any]:
        """experiment.json: how the search was started, its resources and versions."""
        return read_json_if_present(self.path / "experiment.json") or {}

    @property
    def leaderboard(self) -> pd.DataFrame:
        """One row per trial, best val_acc first (empty when no trial ran)."""
        import pandas as pd

        from fer_search.report import read_leaderboard

        board = self.path / "leaderboard.csv"
        return read_leaderboard(board) if board.is_file() else pd.DataFrame()

    @property
    def final(self) -> dict[str, Any] | None:
        """final.json: the best trial and the ensemble on the test split, or None."""
        from fer_search.config import current_final

        return current_final(read_json_if_present(self.path / "final.json"))

    @property
    def best(self) -> dict[str, Any] | None:
        """The selected model: its checkpoint path and metrics (test figures once the final
        evaluation ran), or None when no trial finished an epoch."""
        final = self.final
        if final and final.get("best"):
            best = {k: v for k, v in final["best"].items() if k not in ("metrics", "config")}
            return {**best, "checkpoint": str(self.path / final["best"]["checkpoint"])}
        board = self.leaderboard
        if board.empty or "status" not in board:
            return None
        done = board[board["status"].isin(["completed", "pruned"]) & board["val_acc"].notna()]
        if done.empty:
            return None
        from fer_search.stats import recorded_interval

        row = done.iloc[0]
        found = sorted((self.path / str(row["trial_dir"])).glob("checkpoint_*/checkpoint.pt"))
        return {
            "trial_id": str(row["trial_id"]),
            "val_acc": float(row["val_acc"]),
            "val_acc_ci95": recorded_interval(row),  # as final.json's; None in older results
            "best_epoch": int(row["best_epoch"]),
            "checkpoint": str(found[-1]) if found else None,
        }

    def summary(self) -> str:
        """The line the CLI prints after a search."""
        from fer_search.tuning.results import summary_line

        rows = self.leaderboard.to_dict("records")
        return summary_line(rows, self.path, float(self.wall_time_s or 0.0))


def read_json_if_present(path: Path) -> dict[str, Any] | None:
    """A file the search writes as it goes (None before it exists); report.load.read_json reads
    one that must exist, with one-line errors."""
    return json.loads(path.read_text()) if path.is_file() else None
