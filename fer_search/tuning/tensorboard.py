"""fer-search's own TensorBoard logs, in `<experiment>/tensorboard/` (Ray's are switched off).

One run per trial, named `trial_003_<ray id>` after its Optuna trial number so that runs sort
in the order the search sampled them; a refit is `trial_003_<ray id>_refit`, beside the trial
whose configuration it trained again. Each epoch writes a few short scalars, in two groups
(TensorBoard's Time Series page sorts groups by name and opens the first two):

    train/acc  train/loss  train/lr  train/images_per_s
    val/acc    val/best_acc  val/loss

A search that measures its models' costs adds `cost/latency_ms`, `cost/params`, `cost/flops`
and, for each constraint, `constraint/<name>` (cost - limit, <= 0 within it, as Optuna keeps
it).

The HParams tab gets one row per trial from its first epoch on: only the sampled parameters
and `status` (running, then completed / pruned / time budget / failed / unfinished once the
search knows; TensorBoard's own Status filter gets running / success / failure), with
`val/best_acc` (shown as best_val_acc) the first metric, then the costs and constraints. The
experiment's parameter domains (integers as intervals of whole numbers) and metric order are
written once, into the first trial's run (a file of its own at the logdir's root would list an
empty run "."); with a refit, every trial gets `refit_of` ("-", or the run a refit retrained).

TensorBoard keeps the first hparams record it reads for a run, so a trial's final status is
written by replacing the run's small `.hparams` event file: a TensorBoard started afterwards
shows it; one already open shows `running` until it is restarted.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from fer_search.objectives import COSTS, LIMITS, constraint_values, number_or_nan

if TYPE_CHECKING:
    from fer_search.space import SearchSpace
    from fer_search.tuning.results import LeaderboardRow

__all__ = [
    "LOG_DIR",
    "RunNames",
    "TensorBoardLogger",
    "finish_runs",
    "logger_callbacks",
    "run_name",
    "sampled_hparams",
    "write_experiment_config",
    "without_ray_tensorboard",
]

LOG_DIR = "tensorboard"
HPARAMS_SUFFIX = ".hparams"
EXPERIMENT_SUFFIX = ".experiment"  # the HParams columns, in the first trial's run
SCALARS = {  # Tune result key -> TensorBoard tag
    "train_acc": "train/acc",
    "train_loss": "train/loss",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "val_acc": "val/acc",
    "best_val_acc": "val/best_acc",
    "val_loss": "val/loss",
}
METRICS = (  # the HParams tab's metric columns, in this order (tag, shown as)
    ("val/best_acc", "best_val_acc"),
    ("val/acc", "val_acc (last epoch)"),
    ("val/loss", "val_loss (last epoch)"),
    ("train/loss", "train_loss (last epoch)"),
)
STATUSES = ("running", "completed", "pruned", "time budget", "failed", "unfinished")
SESSION_STATUS = {  # our status -> TensorBoard's (its Status filter); unfinished: unknown
    "running": "STATUS_RUNNING",
    "completed": "STATUS_SUCCESS",
    "pruned": "STATUS_SUCCESS",
    "time budget": "STATUS_SUCCESS",
    "failed": "STATUS_FAILURE",
}
REFIT_OF = "refit_of"
NOT_A_REFIT = "-"  # refit_of of a searched trial: every row has a value, so a filter keeps it


def cost_tag(name: str) -> str:
    return f"cost/{name}"


def constraint_tag(name: str) -> str:
    return f"constraint/{name}"


def run_name(number: Any, trial_id: str) -> str:
    """`trial_003_<id>`: runs sort by Optuna trial number (`trial_<id>` without one)."""
    try:
        return f"trial_{int(number):03d}_{trial_id}"
    except (TypeError, ValueError):
        return f"trial_{trial_id}"


def sampled_params(space: SearchSpace) -> list[Any]:
    return [p for p in space.params if p.kind != "fixed"]


def hparam_value(value: Any) -> Any:
    """A value the HParams plugin takes: bool, number or string."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def sampled_hparams(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """The sampled settings of a trial config (`lr@sgd` read as `lr`); inactive conditional
    settings are left out."""
    from fer_search.space import train_values

    values = train_values(config)
    out: dict[str, Any] = {}
    for param in sampled_params(space):
        if param.setting in values and param.setting not in out:
            out[param.setting] = hparam_value(values[param.setting])
    return out


def domain(params: list[Any]) -> Any:
    """The HParams domain of one setting (several params may set it: `lr@sgd`, `lr@adamw`)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    if all(p.kind == "int" for p in params):
        return hp.IntInterval(int(min(p.low for p in params)), int(max(p.high for p in params)))
    if all(p.kind in ("uniform", "loguniform", "int") for p in params):
        return hp.RealInterval(
            float(min(p.low for p in params)), float(max(p.high for p in params))
        )
    choices = [hparam_value(c) for p in params for c in p.choices]
    if choices and len({type(c) for c in choices}) == 1:
        return hp.Discrete(list(dict.fromkeys(choices)))
    return None  # mixed kinds: no declared domain


def columns_run(root: Path) -> Path | None:
    """The run holding the HParams columns (write_experiment_config), if one does."""
    written = sorted(root.glob(f"*/events.out.tfevents.*{EXPERIMENT_SUFFIX}"))
    return written[0].parent if written else None


def experiment_run(root: Path) -> Path | None:
    """The run the HParams columns go in: the one that has them, else the first trial's."""
    runs = sorted(p for p in root.glob("trial_*") if p.is_dir()) if root.is_dir() else []
    return columns_run(root) or (runs[0] if runs else None)


def write_experiment_config(
    root: Path, space: SearchSpace, refit_runs: list[str] | None = None
) -> bool:
    """The HParams tab's columns: status and the sampled settings with their domains (and
    `refit_of` with a refit: `refit_runs`, the runs retrained), and the metrics with
    best_val_acc first, then the costs and constraints. Written into the first trial's run
    (experiment_run); False while there is none. An older experiment's file at the root (the
    run ".") goes."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    target = experiment_run(root)
    if target is None:
        return False
    by_setting: dict[str, list[Any]] = {}
    for param in sampled_params(space):
        by_setting.setdefault(param.setting, []).append(param)
    hparams = [hp.HParam("status", hp.Discrete(list(STATUSES)))]
    hparams += [hp.HParam(name, domain(params)) for name, params in by_setting.items()]
    if refit_runs is not None:
        runs = [NOT_A_REFIT, *dict.fromkeys(refit_runs)]
        hparams.append(hp.HParam(REFIT_OF, hp.Discrete(runs)))
    metrics = [hp.Metric(tag, display_name=shown) for tag, shown in METRICS]
    if space.measures_cost:
        metrics += [hp.Metric(cost_tag(name), display_name=name) for name in COSTS]
    metrics += [
        hp.Metric(constraint_tag(n), display_name=f"{n} - limit") for n in space.constraints
    ]
    for old in root.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"):
        old.unlink()
    config = hp.hparams_config_pb(hparams=hparams, metrics=metrics)
    replace_event_file(target, [config], EXPERIMENT_SUFFIX)
    return True


def replace_event_file(run_dir: Path, summaries: list[Any], suffix: str = HPARAMS_SUFFIX) -> None:
    """Write `summaries` as the run's only event file ending in `suffix` (replacing one)."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob(f"events.out.tfevents.*{suffix}"):
        old.unlink()
    writer = SummaryWriter(log_dir=str(run_dir), filename_suffix=suffix)
    assert writer.file_writer is not None  # opened by the constructor
    for summary in summaries:
        writer.file_writer.add_summary(summary)
    writer.close()


def write_hparams(run_dir: Path, hparams: dict[str, Any], status: str) -> None:
    """A trial's HParams row: its values and `status`, and TensorBoard's session status."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    values = {"status": status, **hparams}
    replace_event_file(run_dir, [hp.hparams_pb(values, trial_id=run_dir.name), session_end(status)])


def session_end(status: str) -> Any:
    """The SessionEndInfo summary whose status TensorBoard's Status filter reads (its own
    `session_end_pb` needs TensorFlow; this is the same message through the plugin's metadata)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(SESSION_STATUS.get(status, "STATUS_UNKNOWN"))
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(
            plugin_data_pb2.HParamsPluginData(session_end_info=info)
        ),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def write_scalars(
    writer: Any, result: dict[str, Any], limits: dict[str, float] | None = None
) -> None:
    """One epoch's scalars (a Tune result, or a progress.csv row) at step = epoch: with the
    model's costs when the result has them, and the space's constraints (`limits`)."""
    step = int(result["epoch"])
    stamp = result.get("timestamp")
    values = {tag: result.get(key) for key, tag in SCALARS.items()}
    values.update({cost_tag(name): result.get(name) for name in COSTS})
    measured = [number_or_nan(result.get(LIMITS[name])) for name in limits or {}]
    if limits and all(math.isfinite(cost) for cost in measured):
        values.update({constraint_tag(n): v for n, v in constraint_values(result, limits).items()})
    for tag, value in values.items():
        if isinstance(value, int | float) and value == value:  # not NaN
            writer.add_scalar(tag, float(value), step, walltime=stamp)


class RunNames:
    """Run name and sampled hparams of a trial, from its Tune config. For a refit's trials
    (`members`: refit member configs with `id` and `run`, the source trial's run name), the
    config names the member by index."""

    def __init__(
        self, space: SearchSpace, members: list[dict[str, Any]] | None = None, refit: bool = False
    ) -> None:
        self.space = space
        self.members = members
        self.refit = refit  # searched trials of an experiment with a refit: refit_of "-"

    def __call__(self, trial_id: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.members is None:
            hparams = sampled_hparams(self.space, config)
            if self.refit:
                hparams[REFIT_OF] = NOT_A_REFIT
            return run_name(config.get("trial_number"), trial_id), hparams
        from fer_search.tuning.trainable import REFIT_MEMBER

        if REFIT_MEMBER in config:  # a refit trial's Tune config
            member = self.members[int(config[REFIT_MEMBER])]
        else:  # a refit's leaderboard row, named by its member id
            member = next(m for m in self.members if m["id"] == trial_id)
        hparams = sampled_hparams(self.space, member["config"])
        hparams[REFIT_OF] = member["run"]
        return f"{member['run']}_{member['id']}", hparams


class TensorBoardLogger(Callback):
    """Tune callback (runs in the driver): each trial's scalars every epoch, and its hparams
    row (status `running`) from its first epoch."""

    def __init__(self, root: Path, names: RunNames) -> None:
        self.root = Path(root)
        self.names = names
        self._writers: dict[str, Any] = {}
        self._columns = False  # the HParams columns are written (write_experiment_config)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks; writers stay
        return {**self.__dict__, "_writers": {}, "_columns": False}

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if result.get("failure") or "epoch" not in result:
            return
        writer = self._writers.get(trial.trial_id)
        if writer is None:
            writer = self._open(trial)
        write_scalars(writer, result, dict(self.names.space.constraints))
        writer.flush()

    def _open(self, trial: Any) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        name, hparams = self.names(trial.trial_id, dict(trial.config))
        run_dir = self.root / name
        if not any(run_dir.glob(f"*{HPARAMS_SUFFIX}")):  # a resumed trial keeps its row
            write_hparams(run_dir, hparams, "running")
        if not self._columns and self.names.members is None:  # the first searched trial's run
            self._columns = columns_run(self.root) is not None or write_experiment_config(
                self.root, self.names.space
            )
        writer = SummaryWriter(log_dir=str(run_dir), flush_secs=30)
        self._writers[trial.trial_id] = writer
        return writer

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        writer = self._writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.close()

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def row_status(row: LeaderboardRow) -> str:
    """A leaderboard row's status as the HParams tab shows it."""
    status = str(row.get("status", ""))
    if status == "pruned" and row.get("stopped_by") == "time budget":
        return "time budget"
    return "failed" if status == "nan" else status


def finish_runs(root: Path, rows: list[LeaderboardRow], names: RunNames) -> int:
    """Each trial's hparams row with its final status (a trial cut before its first epoch gets
    a run too, with no scalars). Returns how many runs it wrote."""
    written = 0
    for row in rows:
        name, hparams = names(str(row["trial_id"]), row.config)
        write_hparams(root / name, hparams, row_status(row))
        written += 1
    return written


@contextlib.contextmanager
def without_ray_tensorboard() -> Iterator[None]:
    """Tune adds its TensorBoard logger unless told not to add default loggers; the CSV and
    JSON ones (progress.csv, result.json) the results need are passed explicitly instead."""
    before = os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
        else:
            os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = before


def logger_callbacks(root: Path, names: RunNames) -> list[Any]:
    """progress.csv and result.json (Tune's, which the results read) and our TensorBoard."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback(), TensorBoardLogger(root, names)]
