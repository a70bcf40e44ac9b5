"""An experiment's directory and its record, experiment.json: how the search was started,
what `--resume` and the report read back. Results are never overwritten."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from fer_search.errors import UserError
from fer_search.tuning.storage import check_location_free, is_uri, resolve_storage, tune_location

if TYPE_CHECKING:
    from fer_search.space import SearchSpace
    from fer_search.tuning.resources import ResourcePlan

__all__ = [
    "RUN_FILE",
    "ExperimentRecord",
    "check_free_space",
    "load_experiment",
    "new_experiment_dir",
    "new_record",
    "tune_dir",
    "versions",
    "write_json",
]

RUN_FILE = "experiment.json"
MIN_FREE_MB = 100  # below this a full disk would fail the search at a checkpoint


class ExperimentRecord(TypedDict, total=False):
    """experiment.json: how a search was started (new_record), then what each step added.
    Total=False: records written by older releases lack the later keys, so read those with
    .get(); the keys themselves are checked by mypy wherever a record is typed as this."""

    name: str
    space: str
    command: str  # the CLI's argv, or the fer_search.search(...) call (api_call)
    metric: str
    mode: str
    scheduler: str
    max_t: int
    grace_period: int
    reduction_factor: float
    min_samples_required: int
    perturbation_interval: int
    num_samples: int
    asha: bool  # read by releases from before `scheduler`
    no_asha: bool
    started: str  # ISO local time
    finished: str | None
    wall_time_s: float | None
    data: str
    class_names: list[str]
    params: list[str]
    resources: ResourcePlan
    storage_uri: str | None
    data_args: dict[str, Any]
    versions: dict[str, str]
    refit: dict[str, Any] | None  # tuning.refit's plan, then `done`
    trainer: dict[str, Any]  # the Trainer's describe(): kind and what rebuilds it
    warm_start: dict[str, Any]  # tuning.warm_start's summary
    choice: dict[str, Any]  # what was chosen for best/ and why (run.choice_record)
    phases: dict[str, dict[str, float]]  # each step's wall and driver CPU seconds (Phases)


def new_experiment_dir(storage: str | None, name: str | None, space: SearchSpace) -> Path:
    """`<storage>/<name>/`; with a URI --storage, the driver's `./results/<name>/` (Tune's
    trials go to `<uri>/<name>/`). Checks it is new and writable; creates only its parent."""
    root, uri = resolve_storage(storage)
    name = name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp = root / name
    if exp.exists():
        raise UserError(
            f"experiment {str(exp)!r} already exists; use --resume {exp} or another --name"
        )
    if uri:
        check_location_free(tune_location(uri, name))
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"results directory {str(root)!r} is not writable ({exc.strerror})"
        ) from None
    return exp


def versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    from fer_search import __version__

    return {
        "fer-search": __version__,  # distribution names, as `fer-search bench` records them
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def check_free_space(root: Path) -> None:
    """A full disk would end the search at its first checkpoint: say so before it starts."""
    free_mb = shutil.disk_usage(root).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise UserError(
            f"results directory {str(root)!r} has {free_mb:.1f} MiB free; a search needs at "
            f"least {MIN_FREE_MB} MiB for checkpoints and logs (free space or use --storage)"
        )


def tune_dir(exp: Path, storage_uri: str | None) -> str:
    """Where Tune keeps this experiment: `exp` itself, or `<uri>/<name>` for a URI --storage."""
    return tune_location(str(storage_uri), exp.name) if is_uri(storage_uri) else str(exp)


def load_experiment(path: str | Path) -> tuple[Path, ExperimentRecord]:
    """An experiment directory to resume, and its record; a UserError when it is not one."""
    from ray import tune

    exp = Path(path).expanduser().resolve()
    record = json.loads((exp / RUN_FILE).read_text()) if (exp / RUN_FILE).is_file() else {}
    uri = record.get("storage_uri")  # Tune's trials live at <uri>/<name>
    if not record or not tune.Tuner.can_restore(tune_location(uri, exp.name) if uri else str(exp)):
        raise UserError(
            f"--resume {str(path)!r} is not a fer-search experiment directory "
            f"(no {RUN_FILE} or Tune state in it)"
        )
    return exp, cast("ExperimentRecord", record)


def new_record(
    options: Any, exp: Path, space: SearchSpace, data: Any, plan: ResourcePlan
) -> ExperimentRecord:
    """experiment.json: how the search was started; `--resume` and the report read it."""
    from fer_search.space.mutations import perturbation_interval
    from fer_search.tuning.results import searched_settings

    ex = space.experiment
    return {
        "name": exp.name,
        "space": space.name,
        "command": options.command or api_call(space, options),
        "metric": ex.metric,
        "mode": ex.mode,
        "scheduler": ex.scheduler,
        "max_t": ex.epochs,
        "grace_period": ex.grace_period,
        "reduction_factor": ex.reduction_factor,
        "min_samples_required": ex.min_samples_required,
        "perturbation_interval": perturbation_interval(ex.epochs, ex.perturbation_interval),
        "num_samples": ex.num_samples,
        # read by fer-search releases from before `scheduler` (--resume, report)
        "asha": ex.scheduler == "asha",
        "no_asha": ex.scheduler == "fifo",
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "finished": None,
        "wall_time_s": None,
        "data": data.source,
        "class_names": list(data.class_names),
        "params": searched_settings(space),
        "resources": plan,
        "storage_uri": options.storage if is_uri(options.storage) else None,
        "data_args": dict(data.load_args),
        "versions": versions(),
        "refit": None,
    }


def api_call(space: SearchSpace, options: Any) -> str:
    """The Python call that started a search, for experiment.json (the CLI records its argv)."""
    skip = {"command", "sampler", "trainer", "verbose", "no_asha", "no_final_eval"}
    given = {k: repr(v) for k, v in options.to_dict().items() if k not in skip and v is not None}
    given.update({k: "True" for k in ("no_asha", "no_final_eval") if getattr(options, k)})
    if options.sampler is not None:
        given["sampler"] = f"{type(options.sampler).__name__}(...)"
    if options.trainer is not None:  # a dataclass: its repr is the call that makes it
        given["trainer"] = repr(options.trainer)
    args = ", ".join([repr(space.name), *(f"{k}={v}" for k, v in given.items())])
    return f"fer_search.search({args})"
