"""Ray itself: start a local Ray or join a cluster, and what the cluster holds.

- `start_ray`: a new local Ray, or `connect` to a cluster (`auto`, HOST:PORT,
  ray://HOST:10001); a token-authentication mismatch becomes one line that says what to set.
- `node_resources` / `node_ips` / `wait_for_gpus`: the nodes, for planning and the leaderboard.
- `check_shared_storage`: on a multi-node cluster, every node must see the `--storage` path the
  driver writes; a node that cannot is a one-line error, before any trial runs.

Ray is imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from fer_search.errors import UserError, first_line
from fer_search.tuning.storage import is_uri

__all__ = [
    "auth_problem",
    "check_shared_storage",
    "connect",
    "node_ips",
    "node_resources",
    "start_ray",
    "wait_for_gpus",
]

log = logging.getLogger(__name__)

AUTH_DOC = "cluster/README.md#ray-authentication"
PROBE_TIMEOUT_S = 120
GPU_WAIT_S = 600


# ---------------------------------------------------------------- starting
def start_ray(address: str | None, cpus: int | None, gpus: float | None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a new local Ray with
    `cpus` CPUs and `gpus` GPUs (None: what the machine has). Nothing when Ray is up."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    # Ray's legacy output engine: at Ray verbosity 0 (under fer-search's own console view) it
    # prints nothing, where Ray 2.60's new engine still prints its experiment table and paths
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    # one checkpoint per epoch is the design, not a bottleneck worth a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address:
        connect(address)
        if gpus:
            wait_for_gpus(gpus)  # an autoscaler may still be starting GPU workers
        return
    context = ray.init(
        address="local",  # a new local instance, never a `ray start` cluster found on the machine
        num_cpus=cpus,
        num_gpus=None if gpus is None else int(math.ceil(gpus)),
        dashboard_host="127.0.0.1",  # only this machine; started when ray[default] is installed
        include_dashboard=None,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    if context.dashboard_url:
        log.info("Ray dashboard: http://%s", context.dashboard_url)


def check_gpu_nodes(timeout_s: float = 60.0) -> None:
    """Every node that advertises GPUs must have a torch that sees one: a zero-CPU task that
    holds a sliver of one GPU asks torch on each such node, so that a node without a driver
    (or with a CPU-only torch) stops the search before it starts, in one line naming the node,
    instead of failing every trial. FER_SEARCH_SIMULATE_GPU=1 (testing) skips the check."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from fer_search.tuning.devices import no_cuda_message, simulate_gpu

    nodes = [n for n in alive_nodes() if n.get("Resources", {}).get("GPU", 0) > 0]
    if not nodes or simulate_gpu():
        return

    @ray.remote(num_cpus=0, num_gpus=0.001, max_retries=0)
    def torch_there() -> tuple[bool, str, str | None]:
        import torch

        return bool(torch.cuda.is_available()), torch.__version__, torch.version.cuda

    refs = {
        torch_there.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(): n
        for n in nodes
    }
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        cuda, version, build = ray.get(ref)
        if not cuda:
            node = refs[ref]
            where = f"{node['NodeID'][:12]} ({node.get('NodeManagerAddress', '?')})"
            raise UserError(no_cuda_message(where, version, build))


# ---------------------------------------------------------------- connecting
def auth_token() -> tuple[str | None, str]:
    """This machine's Ray token and where it came from, in Ray's order of precedence."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    source = "RAY_AUTH_TOKEN_PATH" if path else "~/.ray/auth_token"
    file = Path(path) if path else Path.home() / ".ray" / "auth_token"
    try:
        return file.read_text().strip() or None, source
    except OSError:
        return None, source


def auth_problem(address: str, timeout: float = 5.0) -> str | None:
    """Ask the cluster's GCS one question the way this process would; None unless it answers
    UNAUTHENTICATED (Ray itself only says "Failed to connect" after a long wait)."""
    if "://" in address:
        return None  # ray:// goes through the client server, which reports its own errors
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    token, source = auth_token()
    try:
        import grpc

        if address == "auto":
            from fer_search.tuning._ray_compat import bootstrap_address

            address = bootstrap_address(address)
            if not address:
                return None
        metadata = [("authorization", f"Bearer {token}")] if mode == "token" and token else []
        with grpc.insecure_channel(address) as channel:
            ask = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")
            ask(b"", timeout=timeout, metadata=metadata)
        return None
    except Exception as exc:  # noqa: BLE001 - a diagnosis only; ray.init has the last word
        code = getattr(exc, "code", None)
        if not callable(code) or getattr(code(), "name", "") != "UNAUTHENTICATED":
            return None
    where = f"the Ray cluster at {address!r} uses token authentication"
    if mode != "token":
        shown = f"RAY_AUTH_MODE={mode}" if mode else "RAY_AUTH_MODE is unset"
        return (
            f"{where} but {shown} here: set RAY_AUTH_MODE=token and the cluster's token "
            f"(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token; `ray get-auth-token` on the head "
            f"prints it); see {AUTH_DOC}"
        )
    return (
        f"{where} and rejected this machine's token (from {source}): use the cluster's token "
        f"(`ray get-auth-token` on the head prints it); see {AUTH_DOC}"
    )


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at the address's HOST:PORT (ray.init retries an
    unreachable address for minutes). Addresses without a port are left to Ray."""
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: nothing answers at "
            f"{host}:{port} ({exc.strerror or exc}); is the head node up and the port open?"
        ) from None


def connect(address: str) -> None:
    """ray.init(address=...) with one-line errors."""
    import ray
    from ray.exceptions import AuthenticationError

    check_reachable(address)
    problem = auth_problem(address)
    if problem:
        raise UserError(problem)
    from fer_search.tuning.devices import SIMULATE_GPU_ENV, simulate_gpu

    # the testing switch travels with the search to its trials on every node (set for the
    # driver alone it would skip the GPU check and leave the trials looking for CUDA)
    env_vars = {SIMULATE_GPU_ENV: "1"} if simulate_gpu() else {}
    # Through ray://, Tune's driver loop runs on the head: it gets this process's Tune settings
    if address.startswith("ray://"):
        env_vars.update(
            {k: v for k, v in os.environ.items() if k.startswith(("TUNE_", "RAY_AIR_"))}
        )
    runtime_env = {"env_vars": env_vars} if env_vars else None
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=True,
            runtime_env=runtime_env,
        )
    except AuthenticationError as exc:
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: {first_line(exc)}"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = ""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = f" (if the cluster uses token authentication, see {AUTH_DOC})"
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: {first_line(exc)}{hint}"
        ) from None


def client_mode() -> bool:
    """Connected through ray:// (Tune's driver then runs on the head node)."""
    import ray

    return bool(ray.util.client.ray.is_connected())


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def node_resources() -> list[dict[str, float]]:
    """Each alive node's CPU and GPU totals (a trial must fit on one node)."""
    return [
        {k: float(n.get("Resources", {}).get(k, 0.0)) for k in ("CPU", "GPU")}
        for n in alive_nodes()
    ]


def node_ips() -> dict[str, str]:
    """Ray node id -> IP address, for the leaderboard; {} when Ray is not running."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        return {n["NodeID"]: n.get("NodeManagerAddress", "") for n in ray.nodes()}
    except Exception:  # noqa: BLE001 - a nicety for the leaderboard, never a failure
        return {}


def wait_for_gpus(wanted: float, timeout_s: float | None = None) -> dict[str, float]:
    """Poll the cluster until it has `wanted` GPUs or `timeout_s` passes (an autoscaler may
    still be starting GPU workers); return its resources either way. The default wait is
    $FER_SEARCH_GPU_WAIT_S, else 600 s."""
    import ray

    if timeout_s is None:
        try:
            timeout_s = float(os.environ.get("FER_SEARCH_GPU_WAIT_S", GPU_WAIT_S))
        except ValueError:
            raise UserError(
                f"FER_SEARCH_GPU_WAIT_S must be seconds, got "
                f"{os.environ['FER_SEARCH_GPU_WAIT_S']!r}"
            ) from None

    have = ray.cluster_resources()
    if have.get("GPU", 0.0) >= wanted or timeout_s <= 0:
        return have
    log.info(
        "waiting up to %.0f s for %g GPUs (the cluster has %g now; its workers may still be "
        "starting)", timeout_s, wanted, have.get("GPU", 0.0),
    )  # fmt: skip
    ask_autoscaler([{"GPU": 1.0}] * math.ceil(wanted))  # scales up a min_workers: 0 group
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and have.get("GPU", 0.0) < wanted:
            time.sleep(5)
            have = ray.cluster_resources()
    finally:
        ask_autoscaler([])  # Tune's own trials keep the nodes busy from here on
    return have


def ask_autoscaler(bundles: list[dict[str, float]]) -> None:
    """Ask the cluster's autoscaler (if any) for these resources; [] withdraws the request."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)
    except Exception:  # noqa: BLE001 - no autoscaler, or an old Ray: waiting still works
        pass


def check_shared_storage(
    root: Path, storage: str | None, timeout_s: float = PROBE_TIMEOUT_S
) -> None:
    """On a multi-node cluster, check that every alive node sees a file the driver wrote under
    `root` (the results root of a path --storage) and can write there, before any trial runs.
    Through ray:// Tune's driver runs on the head node, so the check runs even for one node, and
    covers the driver's own directory with a URI --storage too. Each check is a zero-CPU task
    pinned to one node; on one machine every node passes, as it should."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = client_mode()
    nodes = alive_nodes()
    if (len(nodes) < 2 and not remote) or (is_uri(storage) and not remote):
        return
    shown = (
        f"the results directory {str(root)!r}"
        if is_uri(storage)
        else f"--storage {str(storage or root)!r}"
    )
    token = uuid.uuid4().hex
    marker = root / f".fer-search-shared-{token}"
    marker.write_text(token)

    probe = ray.remote(num_cpus=0, max_retries=0)(shared_file_problem)

    try:
        refs = {
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(marker), token): n
            for n in nodes
        }
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        report_shared(refs, ready, pending, shown, fix_for(remote, storage), timeout_s)
    finally:
        marker.unlink(missing_ok=True)


def shared_file_problem(path: str, expected: str) -> str:
    """On a node: '' when it reads the driver's file and can write beside it, else why not."""
    file = Path(path)
    try:
        if file.read_text() != expected:
            return "sees a different file there"
    except OSError:
        return "cannot see a file the driver wrote there"
    mine = file.with_name(f"{file.name}.{os.getpid()}")
    try:
        mine.write_text("")
        mine.unlink()
    except OSError as exc:
        return f"cannot write there ({exc.strerror})"
    return ""


def fix_for(remote: bool, storage: str | None) -> str:
    if remote and is_uri(storage):
        return (
            "run the search on the head node (ray job submit ... -- fer-search ... "
            "--address auto) or use a path it shares with this machine"
        )
    return (
        "use a path all nodes mount (NFS, EFS, a ReadWriteMany volume) or "
        "--storage s3://BUCKET/PATH"
    )


def report_shared(
    refs: dict[Any, dict[str, Any]],
    ready: list[Any],
    pending: list[Any],
    shown: str,
    fix: str,
    timeout_s: float,
) -> None:
    """A UserError for the first node that cannot share the storage; a warning for each node
    that did not answer in time."""
    import ray

    for ref in ready:
        why = ray.get(ref)
        if why:
            node = refs[ref]
            raise UserError(
                f"{shown} is not shared by every Ray node: node "
                f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]}) {why}; {fix}"
            )
    for ref in pending:
        node = refs[ref]
        log.warning(
            "could not check within %.0f s that node %s (%s) shares %s; its trials fail if it "
            "does not", timeout_s, node.get("NodeManagerAddress", "?"), node["NodeID"][:8], shown,
        )  # fmt: skip
