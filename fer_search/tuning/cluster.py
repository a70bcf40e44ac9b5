"""Running the search on an existing Ray cluster.

- `connect`: join a cluster (`auto`, HOST:PORT, ray://HOST:10001); a token-authentication
  mismatch between this machine and the cluster becomes one line that says what to set.
- `resolve_storage` / `tune_location`: where Tune writes trials (a path, or an s3://, gs://, ...
  URI) and where the driver keeps its own files (the Optuna study, leaderboard, report).
- `check_shared_storage`: on a multi-node cluster, every node must see the `--storage` path the
  driver writes; a node that cannot is a one-line error, before any trial runs.
- `fetch_trial_files` / `upload_driver_files`: with a URI, the driver keeps a local copy of each
  trial's small files (for the report and TensorBoard) and uploads its own files beside Tune's.

Ray and pyarrow are imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fer_search.errors import UserError

__all__ = [
    "auth_problem",
    "check_shared_storage",
    "connect",
    "fetch_trial_files",
    "is_uri",
    "latest_experiment_state",
    "node_ips",
    "node_resources",
    "resolve_storage",
    "tune_location",
    "upload_driver_files",
    "wait_for_gpus",
]

AUTH_DOC = "cluster/README.md#ray-authentication"
PROBE_TIMEOUT_S = 120
GPU_WAIT_S = 600
# Files of a trial worth a local copy when Tune writes to a URI: small, and what the report
# (progress.csv) and TensorBoard (events) read. Checkpoints stay in the bucket.
TRIAL_FILES = ("progress.csv", "result.json", "params.json", "events.out.tfevents.")


# ---------------------------------------------------------------- connecting
def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


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
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address(address) or ""
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
    # Through ray://, Tune's driver loop runs on the head: it gets this process's Tune settings
    settings = {k: v for k, v in os.environ.items() if k.startswith(("TUNE_", "RAY_AIR_"))}
    runtime_env = {"env_vars": settings} if address.startswith("ray://") and settings else None
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
    print(
        f"waiting up to {timeout_s:.0f} s for {wanted:g} GPUs (the cluster has "
        f"{have.get('GPU', 0.0):g} now; its workers may still be starting)",
        file=sys.stderr,
        flush=True,
    )
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


# ---------------------------------------------------------------- storage
def is_uri(storage: str | None) -> bool:
    """s3://, gs://, hdfs://, ...: Tune writes through pyarrow. file:// is a plain path."""
    return bool(storage) and "://" in str(storage) and not str(storage).startswith("file://")


def resolve_storage(storage: str | None) -> tuple[Path, str | None]:
    """(the driver's results root, Tune's storage URI or None).

    A path holds everything: `<path>/<name>/`. With a URI, Tune writes the trials to
    `<uri>/<name>/` and the driver keeps its files in `./results/<name>/` (uploaded beside
    Tune's at the end)."""
    if is_uri(storage):
        return Path("results").resolve(), str(storage)
    text = str(storage or "results")
    text = text.removeprefix("file://")
    return Path(text).expanduser().resolve(), None


def tune_location(uri: str, name: str) -> str:
    """`<uri>/<name>`, keeping a query string (s3://b/p?endpoint_override=...) at the end."""
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


def filesystem(location: str):
    """(pyarrow filesystem, path) for a URI or a local path."""
    import pyarrow.fs

    if is_uri(location):
        try:
            return pyarrow.fs.FileSystem.from_uri(location)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types here
            raise UserError(f"--storage {location!r}: {first_line(exc)}") from None
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def check_location_free(location: str) -> None:
    """Refuse to write a new experiment over an existing one at a URI."""
    import pyarrow.fs

    fs, path = filesystem(location)
    try:
        info = fs.get_file_info(path)
    except Exception as exc:  # noqa: BLE001 - missing credentials, unreachable endpoint, ...
        raise UserError(f"cannot reach --storage {location!r}: {first_line(exc)}") from None
    if info.type != pyarrow.fs.FileType.NotFound:
        raise UserError(f"experiment {location!r} already exists; choose another --name")


def latest_experiment_state(location: str | Path) -> str | None:
    """The text of Tune's newest experiment_state-*.json (named by start time) at a path or
    URI; None when there is none."""
    import pyarrow.fs

    fs, path = filesystem(str(location))
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return None
    names = sorted(
        i.path
        for i in infos
        if Path(i.path).name.startswith("experiment_state-") and i.path.endswith(".json")
    )
    if not names:
        return None
    with fs.open_input_stream(names[-1]) as f:
        return f.read().decode()


def fetch_trial_files(location: str, exp: Path) -> int:
    """Copy each trial's small files (progress.csv, result.json, TensorBoard events) from Tune's
    experiment at `location` into `exp/<trial dir>/`; returns how many were copied."""
    import pyarrow.fs

    fs, root = filesystem(location)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    copied = 0
    for info in infos:
        rel = Path(os.path.relpath(info.path, root))
        if info.type != pyarrow.fs.FileType.File or len(rel.parts) != 2:
            continue
        if not rel.parts[0].startswith("trial_") or not rel.name.startswith(TRIAL_FILES):
            continue
        target = exp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as src:
            target.write_bytes(src.read())
        copied += 1
    return copied


def upload_driver_files(exp: Path, location: str) -> int:
    """Upload the driver's files (Optuna study, leaderboard, final.json, report, best/...) to
    Tune's experiment at `location`, skipping the local copies of trial files."""
    fs, root = filesystem(location)
    uploaded = 0
    for file in sorted(exp.rglob("*")):
        rel = file.relative_to(exp)
        if not file.is_file() or rel.parts[0].startswith("trial_"):
            continue
        target = f"{root}/{rel.as_posix()}"
        fs.create_dir(str(Path(target).parent), recursive=True)
        with fs.open_output_stream(target) as dst:
            dst.write(file.read_bytes())
        uploaded += 1
    return uploaded


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

    @ray.remote(num_cpus=0, max_retries=0)
    def probe(path: str, expected: str) -> str:
        """'' when this node reads the driver's file and can write beside it, else why not."""
        import os as _os
        from pathlib import Path as _Path

        file = _Path(path)
        try:
            if file.read_text() != expected:
                return "sees a different file there"
        except OSError:
            return "cannot see a file the driver wrote there"
        mine = file.with_name(f"{file.name}.{_os.getpid()}")
        try:
            mine.write_text("")
            mine.unlink()
        except OSError as exc:
            return f"cannot write there ({exc.strerror})"
        return ""

    try:
        refs = {
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(marker), token): n
            for n in nodes
        }
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        for ref in ready:
            why = ray.get(ref)
            if why:
                node = refs[ref]
                fix = (
                    "run the search on the head node (ray job submit ... -- fer-search ... "
                    "--address auto) or use a path it shares with this machine"
                    if remote and is_uri(storage)
                    else "use a path all nodes mount (NFS, EFS, a ReadWriteMany volume) or "
                    "--storage s3://BUCKET/PATH"
                )
                raise UserError(
                    f"{shown} is not shared by every Ray node: node "
                    f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]}) {why}; {fix}"
                )
        for ref in pending:
            node = refs[ref]
            print(
                f"warning: could not check within {timeout_s:.0f} s that node "
                f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]}) shares "
                f"{shown}; its trials fail if it does not",
                file=sys.stderr,
            )
    finally:
        marker.unlink(missing_ok=True)
