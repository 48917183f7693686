"""``callbridge serve``: run the platform (HTTP API) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

import uvloop

from callbridge.cli.common import add_settings_flags, settings_from_args


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="Run the platform.",
        description="Run the platform until SIGINT or SIGTERM (graceful shutdown, exit 0).",
    )
    add_settings_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate the configuration, then serve on a uvloop event loop; return the exit code."""
    settings = settings_from_args(args)
    # Imported here so `callbridge version` / `config show` do not load the whole server.
    from callbridge.server.run import serve

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings))
