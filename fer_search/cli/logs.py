"""The CLI's handler for fer_search's log records: library modules only log
(`logging.getLogger(__name__)`), so a notebook or a service embedding the API decides what it
sees; the `fer-search` command shows them on stderr, a warning as "warning: ...", the rest as
written. `--verbose` maps to the level: 0 and 1 (the default) show what the search is doing
(0 quiets only the live table and Ray's output), 2 and 3 also the debug records."""

from __future__ import annotations

import logging
import sys

__all__ = ["install_logging", "level_for"]

HANDLER_NAME = "fer-search-cli"  # so that a second main() in one process replaces, not adds


class CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"warning: {message}" if record.levelno >= logging.WARNING else message


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def level_for(verbose: int) -> int:
    return logging.INFO if verbose <= 1 else logging.DEBUG


def install_logging(verbose: int = 1) -> None:
    """fer_search's records at the level `verbose` asks for, on stderr (stdout holds results)."""
    logger = logging.getLogger("fer_search")
    for handler in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(CliFormatter())
    logger.addHandler(handler)
    logger.setLevel(level_for(verbose))
