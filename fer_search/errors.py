"""Errors a user can cause: the CLI prints one line and exits 2. Bugs keep their traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "DeterministicError",
    "ExportMismatch",
    "RecheckFailed",
    "UserError",
    "did_you_mean",
    "first_line",
]


class UserError(Exception):
    """A mistake the user can fix: bad path, bad file, bad YAML, bad flag. One line, exit 2."""


class DeterministicError(RuntimeError):
    """A trial failure that would happen again if the trial were retried: a non-finite loss,
    CUDA out of memory, an invalid configuration. The search marks the trial failed with this
    message instead of retrying it (retries are for workers or nodes that died)."""


class RecheckFailed(Exception):
    """A stored result did not reproduce: the best checkpoint, evaluated again, does not score
    what final.json records. Not the user's mistake, so not a UserError; the CLI exits 1."""


class ExportMismatch(Exception):
    """An exported model does not classify the split as the PyTorch model does (accuracies more
    than the tolerance apart). Not the user's mistake, so not a UserError; the CLI exits 1."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    matches = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
