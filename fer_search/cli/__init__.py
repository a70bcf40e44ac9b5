"""Command-line front end: parse, call one API function, map UserError to one line, exit 2.

Nothing in fer_search imports this package; it is only the `fer-search` entry point.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from fer_search.cli._argparse_compat import subcommand_flags
from fer_search.cli.logs import install_logging
from fer_search.cli.parser import COMMANDS, build_parser
from fer_search.errors import UserError, did_you_mean

__all__ = ["COMMANDS", "build_parser", "main"]


def normalise_argv(argv: list[str]) -> list[str]:
    """The bare form `fer-search --space X.yaml` means `fer-search search --space X.yaml`."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        return ["search", *argv]
    return argv


def close_flag(parser: argparse.ArgumentParser, command: str | None, unknown: list[str]) -> str:
    """The "; did you mean '--epochs'?" hint for the first unknown flag, among its command's."""
    flag = next((word.split("=")[0] for word in unknown if word.startswith("--")), "")
    flags = subcommand_flags(parser, command) if flag else {}
    return did_you_mean(flag, flags) if flags else ""


def main(argv: Sequence[str] | None = None) -> int:
    from fer_search.cli.commands import COMMAND_FUNCTIONS

    args_list = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if not args_list:
        parser.print_help()
        return 0
    args, unknown = parser.parse_known_args(args_list)
    args.command_line = "fer-search " + shlex.join(args_list)  # recorded beside the results
    if unknown:
        hint = close_flag(parser, args.command, unknown)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    install_logging(getattr(args, "verbose", 1))
    try:
        return int(COMMAND_FUNCTIONS[args.command](args) or 0)
    except UserError as exc:
        print(f"fer-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-search: interrupted", file=sys.stderr)
        return 130
