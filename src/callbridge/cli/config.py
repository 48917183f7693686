"""``callbridge config show``: print the effective configuration with secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import Any

from callbridge.cli.common import add_settings_flags, settings_from_args


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` command group (``config show``)."""
    parser = subparsers.add_parser("config", help="Inspect the configuration.")
    commands = parser.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = commands.add_parser(
        "show",
        help="Print the effective configuration (file < env < flags), secrets masked.",
    )
    add_settings_flags(show)
    show.add_argument("--json", action="store_true", help="Print JSON instead of TOML.")
    show.set_defaults(handler=run_show)


def run_show(args: argparse.Namespace) -> int:
    """Print the masked effective settings as TOML (default) or JSON (``--json``)."""
    values = settings_from_args(args).masked_dict()
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        print(to_toml(values), end="")
    return 0


def to_toml(values: dict[str, Any]) -> str:
    """Flat ``key = value`` TOML; ``None`` (unset) keys become a comment, as TOML has no null."""
    lines = []
    for key, value in values.items():
        if value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")
