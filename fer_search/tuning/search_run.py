"""One search as its steps share it: the space, the data and its object-store references, the
options, the experiment directory and its record. `tuning.run` builds it once (a new search or a
`--resume`) and hands it to the Tuner, the refit and the final evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer_search.tuning.experiment_dir import RUN_FILE, tune_dir, write_json

if TYPE_CHECKING:
    from fer_search.data import FERData
    from fer_search.space import SearchSpace
    from fer_search.tuning.experiment_dir import ExperimentRecord
    from fer_search.tuning.resources import ResourcePlan
    from fer_search.tuning.search_options import SearchOptions
    from fer_search.tuning.trainable import DatasetRefs
    from fer_search.tuning.trainers import Trainer

__all__ = ["SearchRun"]


@dataclass
class SearchRun:
    """A running search. `record` is experiment.json as it grows (`save` writes it); `refs`
    are the object-store references the trials read the data through; `trainer` trains every
    trial and refit and loads their models for the final evaluation."""

    exp: Path
    space: SearchSpace
    data: FERData
    refs: DatasetRefs
    options: SearchOptions
    record: ExperimentRecord
    trainer: Trainer

    @property
    def plan(self) -> ResourcePlan:
        """Each trial's resources and how many run at once (planned when the search started)."""
        return self.record["resources"]

    @property
    def storage_uri(self) -> str | None:
        """Where Tune keeps its state when that is not `exp` (a cloud or NFS URI)."""
        return self.record.get("storage_uri")

    @property
    def location(self) -> str:
        """Tune's experiment directory: `exp` itself, or the storage URI's."""
        return tune_dir(self.exp, self.storage_uri)

    @property
    def remote(self) -> bool:
        """Whether Tune's state lives elsewhere (then its small files are copied to `exp`)."""
        return self.location != str(self.exp)

    @property
    def class_set(self) -> str:
        """The class set the data was loaded with, else the one its class names are."""
        from fer_search.config import CLASS_SETS
        from fer_search.data.splits import class_set_names

        if self.data.load_args.get("class_set"):
            return str(self.data.load_args["class_set"])
        names = tuple(self.data.class_names)
        return next((cs for cs in CLASS_SETS if class_set_names(cs) == names), "all")

    def save(self) -> None:
        """Write the record to experiment.json."""
        write_json(self.exp / RUN_FILE, self.record)
