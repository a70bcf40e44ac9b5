"""Errors a user can cause: the CLI prints one line and exits 2. Bugs keep their traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UserError", "did_you_mean"]


class UserError(Exception):
    """A mistake the user can fix: bad path, bad file, bad YAML, bad flag. One line, exit 2."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    matches = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""
