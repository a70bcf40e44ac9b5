"""How long the viewers a user opens take to show a finished experiment: TensorBoard's HParams
table (every trial a row) and optuna-dashboard's study page (every trial). Each is started as
the README starts it, on 127.0.0.1, and asked through its own HTTP API (the requests its web
page makes, over http.client to this machine only) until every trial is there.
The time runs from the server's start to the first complete answer, and the answer's size is
recorded beside it (what a browser would download)."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["time_optuna_dashboard", "time_tensorboard"]

POLL_S = 0.25
SESSION_GROUPS_REQUEST = {  # TensorBoard's HParams ListSessionGroupsRequest, as its table asks
    "experimentName": "",
    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
    "colParams": [],
    "startIndex": 0,
    "sliceSize": 1_000_000,
}


def executable(name: str) -> str:
    """The command a user types (installed beside this Python by pip)."""
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install {name})")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(command: list[str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ask(port: int, path: str, body: dict[str, Any] | None = None) -> bytes:
    """GET `path` (POST `body` as JSON) from the server on this machine's `port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            data = json.dumps(body).encode()
            connection.request("POST", path, data, {"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        if response.status != 200:
            raise ConnectionError(f"{path}: HTTP {response.status}")
        return raw
    finally:
        connection.close()


def until(
    process: subprocess.Popen, fetch: Callable[[], tuple[int, int]], expected: int, limit_s: float
) -> dict[str, Any]:
    """Poll `fetch` (items seen, bytes) from the server's start until it sees `expected` items;
    seconds to the first complete answer, and that answer's items and bytes."""
    started = time.perf_counter()
    seen, size = 0, 0
    while time.perf_counter() - started < limit_s:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            seen, size = fetch()
        except (OSError, http.client.HTTPException):
            seen = 0  # not listening yet
        if seen >= expected:
            return {"s": round(time.perf_counter() - started, 2), "items": seen, "bytes": size}
        time.sleep(POLL_S)
    return {"s": None, "items": seen, "bytes": size, "gave_up_after_s": limit_s}


def time_tensorboard(logdir: Path, expected_runs: int, limit_s: float = 300.0) -> dict[str, Any]:
    """TensorBoard on `logdir`: seconds until its HParams table lists `expected_runs` rows."""
    port = free_port()
    base = "/data/plugin/hparams"
    command = [executable("tensorboard"), "--logdir", str(logdir),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    def fetch() -> tuple[int, int]:
        ask(port, f"{base}/experiment", {"experimentName": ""})
        raw = ask(port, f"{base}/session_groups", SESSION_GROUPS_REQUEST)
        return int(json.loads(raw).get("totalSize", 0)), len(raw)

    with server(command, logdir.parent / "bench-tensorboard.log") as process:
        return until(process, fetch, expected_runs, limit_s)


def time_optuna_dashboard(db: Path, expected_trials: int, limit_s: float = 300.0) -> dict[str, Any]:
    """optuna-dashboard on `db`: seconds until its study page's request returns every trial."""
    port = free_port()
    base = "/api/studies"
    command = [executable("optuna-dashboard"), f"sqlite:///{db}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    def fetch() -> tuple[int, int]:
        studies = json.loads(ask(port, base))["study_summaries"]
        raw = ask(port, f"{base}/{studies[0]['study_id']}?after=0")
        return len(json.loads(raw)["trials"]), len(raw)

    with server(command, db.parent / "bench-optuna-dashboard.log") as process:
        return until(process, fetch, expected_trials, limit_s)
