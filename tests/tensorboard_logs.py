"""Reading an experiment's TensorBoard logs with TensorBoard's own event reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_runs(root: Path) -> dict[str, dict[str, Any]]:
    """run -> {"scalars": {tag: [(step, value), ...]}, "hparams": {name: value} | None,
    "status": TensorBoard's session status name | None, "experiment": (hparam names, metric
    tags) | None, "types": {hparam: (data type name, domain)} | None}, as TensorBoard loads
    them."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.util import tensor_util

    multiplexer = pem.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    runs: dict[str, dict[str, Any]] = {}
    hparams = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    scalars = multiplexer.PluginRunToTagToContent("scalars")
    for run in multiplexer.Runs():
        accumulator = multiplexer.GetAccumulator(run)
        entry: dict[str, Any] = {
            "scalars": {}, "hparams": None, "status": None, "experiment": None, "types": None
        }  # fmt: skip
        for tag in scalars.get(run, {}):
            entry["scalars"][tag] = [
                (e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in accumulator.Tensors(tag)
            ]
        content = hparams.get(run, {})
        if metadata.SESSION_START_INFO_TAG in content:
            info = metadata.parse_session_start_info_plugin_data(
                content[metadata.SESSION_START_INFO_TAG]
            )
            entry["hparams"] = {
                name: getattr(value, value.WhichOneof("kind"))
                for name, value in info.hparams.items()
            }
        if metadata.SESSION_END_INFO_TAG in content:
            end = metadata.parse_session_end_info_plugin_data(
                content[metadata.SESSION_END_INFO_TAG]
            )
            entry["status"] = api_pb2.Status.Name(end.status)
        if metadata.EXPERIMENT_TAG in content:
            experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
            entry["experiment"] = (
                [h.name for h in experiment.hparam_infos],
                [m.name.tag for m in experiment.metric_infos],
            )
            entry["types"] = {
                h.name: (api_pb2.DataType.Name(h.type), domain_of(h))
                for h in experiment.hparam_infos
            }
        runs[run] = entry
    return runs


def domain_of(info: Any) -> Any:
    """An HParamInfo's domain: ("interval", low, high), ("discrete", [values]) or None."""
    kind = info.WhichOneof("domain")
    if kind == "domain_interval":
        return ("interval", info.domain_interval.min_value, info.domain_interval.max_value)
    if kind == "domain_discrete":
        values = info.domain_discrete.values
        return ("discrete", [getattr(v, v.WhichOneof("kind")) for v in values])
    return None
