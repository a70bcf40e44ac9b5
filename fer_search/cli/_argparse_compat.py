"""The argparse internals the CLI reads, in one place. argparse keeps no public list of a
parser's subcommands or of a subcommand's flags; both live in private attributes
(`_actions`, `_SubParsersAction`, `_option_string_actions`) that have not changed from Python
3.8 through 3.13; tests/test_bad_input.py's "cli unknown flag" cases (a misspelt flag gets a
"did you mean") run through here on the Python CI uses."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["SubParsers", "subcommand_flags"]

SubParsers = argparse._SubParsersAction  # what ArgumentParser.add_subparsers returns


def subcommand_flags(parser: argparse.ArgumentParser, command: str | None) -> dict[str, Any]:
    """The option strings of subcommand `command` of `parser` ({} when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return dict(action.choices[command]._option_string_actions)
    return {}
