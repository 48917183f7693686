"""Helpers shared by the command groups: the settings flags and settings loading.

A command group is a module with ``register(subparsers)`` that adds its parser(s) and sets
``handler=<callable(args) -> int>`` as a parser default; ``main`` calls the handler and turns
:class:`CommandError` and ``ConfigError`` into one ``callbridge: <message>`` line and exit 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from callbridge.config import ConfigError, Settings, flag_name, load_settings

Handler = Callable[[argparse.Namespace], int]

# Settings keys that have a command-line flag, in --help order. The flag spelling and help text
# come from the Settings field (adding a flag = adding its key here).
SETTINGS_FLAGS: tuple[str, ...] = (
    "host",
    "http_port",
    "data_dir",
    "database",
    "log_format",
    "log_level",
    "tls_cert",
    "tls_key",
    "shutdown_grace_seconds",
    "sip_port",
    "sip_host",
    "sip_domain",
    "rtp_ports",
    "sip_trust",
)

_METAVARS = {
    "database": "URL",
    "shutdown_grace_seconds": "SECONDS",
    "tls_cert": "FILE",
    "tls_key": "FILE",
    "rtp_ports": "FIRST-LAST",
    "sip_trust": "CIDRS",
}


class CommandError(Exception):
    """A user-facing failure of a command: printed as ``callbridge: <message>``, exit 2."""


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and one string-valued flag per key of :data:`SETTINGS_FLAGS`.

    Values stay strings here: :func:`load_settings` validates them so its messages (which name
    the flag) are the only error format users see.
    """
    group = parser.add_argument_group("configuration (flags override CALLBRIDGE_* and the file)")
    group.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        default=None,
        help="TOML configuration file (default: $CALLBRIDGE_CONFIG, else none).",
    )
    fields = Settings.model_fields
    for key in SETTINGS_FLAGS:
        group.add_argument(
            flag_name(key),
            dest=f"setting_{key}",
            metavar=_METAVARS.get(key, key.split("_")[-1].upper()),
            default=None,
            help=fields[key].description,
        )


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``args.config``, ``env`` (default ``os.environ``) and the flags."""
    flags = {key: getattr(args, f"setting_{key}", None) for key in SETTINGS_FLAGS}
    return load_settings(args.config, os.environ if env is None else env, flags)


__all__ = [
    "SETTINGS_FLAGS",
    "CommandError",
    "ConfigError",
    "Handler",
    "add_settings_flags",
    "settings_from_args",
]
