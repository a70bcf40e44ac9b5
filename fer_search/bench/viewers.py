"""How long the viewers a user opens take to show a finished experiment: TensorBoard's HParams
table (every trial a row) and optuna-dashboard's study page (every trial). Each is started as
the user starts it (README: `tensorboard --logdir ...`, `optuna-dashboard sqlite:///...`) and
asked through its own HTTP API, the requests its web page makes, until every trial is there.
The time runs from the server's start to the first complete answer, and the answer's size is
recorded beside it (what a browser would download)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
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


def http(url: str, body: dict[str, Any] | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


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
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            seen = 0  # not listening yet
        if seen >= expected:
            return {"s": round(time.perf_counter() - started, 2), "items": seen, "bytes": size}
        time.sleep(POLL_S)
    return {"s": None, "items": seen, "bytes": size, "gave_up_after_s": limit_s}


def time_tensorboard(logdir: Path, expected_runs: int, limit_s: float = 300.0) -> dict[str, Any]:
    """TensorBoard on `logdir`: seconds until its HParams table lists `expected_runs` rows."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    command = [executable("tensorboard"), "--logdir", str(logdir),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    def fetch() -> tuple[int, int]:
        http(f"{base}/experiment", {"experimentName": ""})
        raw = http(f"{base}/session_groups", SESSION_GROUPS_REQUEST)
        return int(json.loads(raw).get("totalSize", 0)), len(raw)

    with server(command, logdir.parent / "bench-tensorboard.log") as process:
        return until(process, fetch, expected_runs, limit_s)


def time_optuna_dashboard(db: Path, expected_trials: int, limit_s: float = 300.0) -> dict[str, Any]:
    """optuna-dashboard on `db`: seconds until its study page's request returns every trial."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/studies"
    command = [executable("optuna-dashboard"), f"sqlite:///{db}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

    def fetch() -> tuple[int, int]:
        studies = json.loads(http(base))["study_summaries"]
        raw = http(f"{base}/{studies[0]['study_id']}?after=0")
        return len(json.loads(raw)["trials"]), len(raw)

    with server(command, db.parent / "bench-optuna-dashboard.log") as process:
        return until(process, fetch, expected_trials, limit_s)
