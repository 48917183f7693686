"""``callbridge version``: print ``callbridge <version>``."""

from __future__ import annotations

import argparse

from callbridge import __version__


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``version`` command."""
    parser = subparsers.add_parser("version", help="Print the version and exit.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print ``callbridge <version>``."""
    print(f"callbridge {__version__}")
    return 0
