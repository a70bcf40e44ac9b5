"""What the test modules share: run `python -m fer_search` as a user does, and read its error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_fer_search(
    *args: str,
    env: Mapping[str, str] | None = None,
    drop_env: Iterable[str] = (),
    cwd: Path | str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`python -m fer_search ARGS` from this checkout (PYTHONPATH is the repository), in a new
    process. `env` adds variables; `drop_env` removes those whose names start with a prefix."""
    prefixes = tuple(drop_env)
    environ = {k: v for k, v in os.environ.items() if not (prefixes and k.startswith(prefixes))}
    environ.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "fer_search", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2, no traceback and one `fer-search: error` line on stderr; that line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fer-search: error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]
