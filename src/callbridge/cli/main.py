"""The ``callbridge`` command: argparse with one module per command group.

Adding a command group: write ``callbridge/cli/<group>.py`` with ``register(subparsers)``
(which sets ``handler`` on its parsers) and add the module to :data:`COMMAND_GROUPS`.

Exit codes: the handler's return value; 2 for usage and configuration errors, printed as one
``callbridge: <message>`` line on stderr without a traceback; 130 on Ctrl-C outside ``serve``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from callbridge.cli import admin, callfile, config, h2b_test, phone, rtvbp, serve, speech, version
from callbridge.cli import call as call_command
from callbridge.cli.common import CommandError, ConfigError, Handler

COMMAND_GROUPS: tuple[ModuleType, ...] = (
    serve,
    callfile,
    rtvbp,
    speech,
    config,
    version,
    admin,
    phone,
    h2b_test,
    call_command,
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one ``callbridge: …`` line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"callbridge: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options plus every command group's subcommands."""
    parser = _Parser(
        prog="callbridge",
        description="Self-hosted real-time voice platform.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except (ConfigError, CommandError) as exc:
        print(f"callbridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
