"""``callbridge call --to EXT_OR_NUMBER``: originate a call through a running server.

Sends ``POST /v1.0/calls`` (platform API spec §6.1) to ``--url`` with the access key of
``--token`` (default ``$CALLBRIDGE_ACCESS_KEY``, so the key need not appear in the process
list), as ``Authorization: Bearer``. The destination's type follows ``--type``; ``auto``
reads the shape of ``--to``: ``user@host`` (or ``sip:…``) is a SIP URI, ``+…`` a number (via a
trunk), anything else an extension.

``--actions`` is the flow run once the far end answers (a JSON array of actions); without it
the callee hears a beep, then its own voice for 10 s, then callbridge hangs up.

Output: one line per created call, ``call <id> to <type>:<target>: <status>``; with
``--wait SECONDS`` it then follows each call (``GET /v1.0/calls/{id}``), printing every status
change (``call <id>: progressing``, ``call <id>: hangup normal (local)``).

Exit codes: 0 when the server created the call(s) (with ``--wait``: and each was answered),
1 when it refused (its error message is printed, e.g. ``callbridge: 404 RESOURCE_NOT_FOUND:
destinations[0]: extension '1009' not found``) or a followed call was not answered, 2 for
usage errors and an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx

from callbridge.cli.common import CommandError

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = "CALLBRIDGE_ACCESS_KEY"  # noqa: S105 - the variable's name, not a secret
TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.2
DEFAULT_ACTIONS: list[dict[str, Any]] = [
    {"type": "beep"},
    {"type": "echo", "option": {"duration": 10000}},
    {"type": "hangup"},
]
TYPES = ("auto", "extension", "tel", "sip")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = subparsers.add_parser(
        "call", help="Originate a call through a running server (POST /v1.0/calls)."
    )
    add = call.add_argument
    add("--to", required=True, metavar="EXT_OR_NUMBER",
        help="Extension, +number (via a trunk) or user@host.")  # fmt: skip
    add("--type", choices=TYPES, default="auto",
        help="Destination type (auto: from the shape of --to).")  # fmt: skip
    add("--actions", default=None, metavar="JSON",
        help="Flow actions once answered (JSON array; default: beep, echo 10 s).")  # fmt: skip
    add("--url", default=DEFAULT_URL, help=f"Server base URL (default {DEFAULT_URL}).")
    add("--token", default=None, metavar="ACCESS_KEY",
        help=f"Access key (default ${TOKEN_ENV}).")  # fmt: skip
    add("--wait", type=float, default=None, metavar="SECONDS",
        help="Follow the call(s) until hangup (at most SECONDS); 1 if unanswered.")  # fmt: skip
    call.set_defaults(handler=run)


def destination(to: str, kind: str) -> dict[str, str]:
    """The Address of ``--to`` for ``--type``."""
    to = to.strip()
    if not to:
        raise CommandError("--to must not be empty")
    if kind == "auto":
        if "@" in to or to.startswith("sip:"):
            kind = "sip"
        elif to.startswith("+"):
            kind = "tel"
        else:
            kind = "extension"
    if kind == "extension":
        return {"type": "extension", "target": to, "target_name": to}
    if kind == "sip":
        return {"type": "sip", "target": to.removeprefix("sip:")}
    return {"type": kind, "target": to}


def _actions(raw: str | None) -> list[Any]:
    if raw is None:
        return DEFAULT_ACTIONS
    try:
        actions = json.loads(raw)
    except ValueError as exc:
        raise CommandError(f"--actions is not valid JSON: {exc}") from None
    if not isinstance(actions, list) or not actions:
        raise CommandError("--actions must be a non-empty JSON array of actions")
    return actions


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise CommandError(f"no access key: pass --token or set {TOKEN_ENV}")
    body = {"destinations": [destination(args.to, args.type)], "actions": _actions(args.actions)}
    url = args.url.rstrip("/") + "/v1.0/calls"
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https://, got {args.url!r}")
    try:
        response = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_SECONDS
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {args.url}: {exc}") from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200 or not isinstance(payload, dict):
        print(f"callbridge: {_error_text(response.status_code, payload)}", file=sys.stderr)
        return 1
    calls = payload.get("calls") or []
    for call in calls:
        where = call.get("destination", {})
        print(
            f"call {call.get('id')} to {where.get('type')}:{where.get('target')}: "
            f"{call.get('status')}",
            flush=True,
        )
    if args.wait is None:
        return 0
    answered = [_follow(args.url, token, call, args.wait) for call in calls]
    return 0 if answered and all(answered) else 1


def _follow(base: str, token: str, call: dict[str, Any], limit: float) -> bool:
    """Poll ``GET /v1.0/calls/{id}``, printing each status change; True once answered."""
    url = f"{base.rstrip('/')}/v1.0/calls/{call.get('id')}"
    deadline = time.monotonic() + limit
    status = call.get("status")
    answered = False
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                current = client.get(url).json()
            except (httpx.HTTPError, ValueError) as exc:
                raise CommandError(f"cannot follow the call: {exc}") from None
            if not isinstance(current, dict) or "status" not in current:
                raise CommandError(f"cannot follow the call: {_error_text(404, current)}")
            answered = answered or "tm_progressing" in current
            if current["status"] != status:
                status = current["status"]
                line = f"call {current.get('id')}: {status}"
                if status == "hangup":
                    line += f" {current.get('hangup_reason')} ({current.get('hangup_by')})"
                print(line, flush=True)
            if status == "hangup":
                return answered
            time.sleep(POLL_SECONDS)
    print(f"call {call.get('id')}: still {status} after {limit:g} s", flush=True)
    return answered


def _error_text(status: int, payload: Any) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return f"{status} {error.get('reason', '')}: {error.get('message', '')}"
    return f"{status}: unexpected answer from the server"


__all__ = ["destination", "register", "run"]
