"""``callbridge admin extensions|trunks add|list|remove``: SIP accounts, on the store directly.

Until the REST API manages them, these commands open the configured database (the same
``--config``/``CALLBRIDGE_*``/flags as ``serve``), migrate it if needed and edit the tables; a
running server picks the change up within a few seconds. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from callbridge.cli.common import CommandError, add_settings_flags, settings_from_args
from callbridge.store import DuplicateError, Store
from callbridge.telephony.model import (
    DEFAULT_REGISTER_EXPIRES,
    REGISTER_EXPIRES_RANGE,
    TRANSPORTS,
    USERNAME_RE,
    Extension,
    Trunk,
)
from callbridge.telephony.trunk_registration import read_status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = subparsers.add_parser("admin", help="Manage SIP extensions and trunks.")
    groups = admin.add_subparsers(dest="admin_group", metavar="GROUP", required=True)

    ext = groups.add_parser("extensions", help="SIP extensions (softphones).")
    ext_cmd = ext.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    add = ext_cmd.add_parser("add", help="Add an extension.")
    add.add_argument("username", help="SIP user name, e.g. 1001.")
    add.add_argument("--password", required=True, help="Digest password.")
    add.add_argument("--name", default="", help="Display name.")
    add.set_defaults(handler=lambda a: _run(a, _add_extension))
    lst = ext_cmd.add_parser("list", help="List extensions.")
    lst.set_defaults(handler=lambda a: _run(a, _list_extensions))
    rm = ext_cmd.add_parser("remove", help="Remove an extension.")
    rm.add_argument("username")
    rm.set_defaults(handler=lambda a: _run(a, _remove_extension))

    trunk = groups.add_parser("trunks", help="SIP trunks.")
    trunk_cmd = trunk.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    tadd = trunk_cmd.add_parser("add", help="Add a trunk (its host is trusted for inbound).")
    tadd.add_argument("name")
    tadd.add_argument("--address", required=True, help="IP address or host name of the trunk.")
    tadd.add_argument("--port", type=int, default=5060)
    tadd.add_argument("--transport", choices=TRANSPORTS, default="udp")
    tadd.add_argument("--username", default="", help="Digest user for calls out.")
    tadd.add_argument("--password", default="", help="Digest password for calls out.")
    tadd.add_argument("--register", action="store_true",
                      help="Register at the trunk (as --username) while serve runs.")  # fmt: skip
    tadd.add_argument("--register-expires", type=int, default=DEFAULT_REGISTER_EXPIRES,
                      metavar="SECONDS", help="Registration expiry to ask for.")  # fmt: skip
    tadd.set_defaults(handler=lambda a: _run(a, _add_trunk))
    tlst = trunk_cmd.add_parser(
        "list", help="List trunks (with the registration state a running server reports)."
    )
    tlst.set_defaults(handler=lambda a: _run(a, _list_trunks))
    trm = trunk_cmd.add_parser("remove", help="Remove a trunk.")
    trm.add_argument("name")
    trm.set_defaults(handler=lambda a: _run(a, _remove_trunk))
    for parser in (add, lst, rm, tadd, tlst, trm):
        add_settings_flags(parser)


Job = Callable[[Store, argparse.Namespace], Awaitable[int]]


def _run(args: argparse.Namespace, job: Job) -> int:
    settings = settings_from_args(args)

    async def main() -> int:
        store = await Store.open(settings.database, migrate=True)
        try:
            return await job(store, args)
        finally:
            await store.close()

    return asyncio.run(main())


async def _workspace(store: Store) -> uuid.UUID:
    workspace = await store.workspaces.first()
    if workspace is None:
        raise CommandError("no workspace yet: run 'callbridge serve' once to create it")
    return workspace.id


async def _add_extension(store: Store, args: argparse.Namespace) -> int:
    if not USERNAME_RE.fullmatch(args.username):
        raise CommandError(f"username {args.username!r}: use 1-64 of A-Z a-z 0-9 . _ ~ -")
    if not args.password:
        raise CommandError("--password must not be empty")
    now = datetime.now(UTC)
    extension = Extension(
        uuid.uuid4(), await _workspace(store), args.username, args.password, now, now,
        name=args.name,
    )  # fmt: skip
    try:
        await store.extensions.insert(extension)
    except DuplicateError:
        raise CommandError(f"extension {args.username} exists") from None
    print(f"added extension {args.username}")
    return 0


async def _list_extensions(store: Store, args: argparse.Namespace) -> int:
    for ext in sorted(await store.extensions.all_active(), key=lambda e: e.username):
        print(f"{ext.username}\t{ext.name}")
    return 0


async def _remove_extension(store: Store, args: argparse.Namespace) -> int:
    if not await store.extensions.remove(args.username):
        raise CommandError(f"no extension {args.username}")
    print(f"removed extension {args.username}")
    return 0


async def _add_trunk(store: Store, args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise CommandError("--port must be 1-65535")
    low, high = REGISTER_EXPIRES_RANGE
    if not low <= args.register_expires <= high:
        raise CommandError(f"--register-expires must be {low}-{high}")
    if args.register and not (args.username and args.password):
        raise CommandError("--register needs --username and --password")
    now = datetime.now(UTC)
    trunk = Trunk(
        uuid.uuid4(), await _workspace(store), args.name, args.address, args.port, args.transport,
        now, now, username=args.username, password=args.password, register=args.register,
        register_expires=args.register_expires,
    )  # fmt: skip
    try:
        await store.trunks.insert(trunk)
    except DuplicateError:
        raise CommandError(f"trunk {args.name} exists") from None
    print(f"added trunk {args.name}")
    return 0


async def _list_trunks(store: Store, args: argparse.Namespace) -> int:
    status = read_status(settings_from_args(args).data_dir)
    for trunk in sorted(await store.trunks.all_active(), key=lambda t: t.name):
        line = f"{trunk.name}\t{trunk.transport}:{trunk.host}:{trunk.port}\t{trunk.username}"
        if trunk.register:
            line += "\t" + _registration_text(status.get(trunk.name))
        print(line)
    return 0


def _registration_text(state: dict[str, Any] | None) -> str:
    """``registered until …``, ``failed (403), retry at …`` … as the server last wrote it."""
    if state is None:
        return "register: not running"
    text = f"register: {state.get('state', '?')}"
    if state.get("last_status") is not None:
        text += f" ({state['last_status']})"
    if state.get("expires_at"):
        text += f" until {state['expires_at']}"
    if state.get("retry_at"):
        text += f", retry at {state['retry_at']}"
    return text


async def _remove_trunk(store: Store, args: argparse.Namespace) -> int:
    if not await store.trunks.remove(args.name):
        raise CommandError(f"no trunk {args.name}")
    print(f"removed trunk {args.name}")
    return 0
