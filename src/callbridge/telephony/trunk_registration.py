"""Trunk registration: keep a binding at every trunk configured with ``register``.

:class:`TrunkRegistrations` drives one sans-I/O :class:`~callbridge.sip.registration.Registration`
per registering trunk (a trunk with ``register`` set and a digest user name) on the SIP
service's stack:

* :meth:`~TrunkRegistrations.sync` runs at start and after every directory refresh: new
  registering trunks start registering, removed ones (or ones whose host, port, transport,
  credentials or expiry changed) are unregistered first (``Expires: 0``) and started again;
* the registration itself answers digest challenges once, refreshes at 90 % of the granted
  expiry, honours 423 ``Min-Expires`` and backs off after failures (30 s doubling to 600 s);
* :meth:`~TrunkRegistrations.close` unregisters every trunk on shutdown (bounded wait).

Every state change is logged (never the password) and written to
``<data_dir>/sip_trunk_registrations.json`` so ``callbridge admin trunks list`` (another
process) can show it: ``{"trunks": {name: {"state", "aor", "last_status", "expires_at",
"retry_at", "updated"}}}`` with RFC 3339 UTC times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbridge.observability.logging import get_logger
from callbridge.sip.registration import BACKOFF_FIRST, BACKOFF_MAX, Registration, RegState
from callbridge.telephony.model import Trunk

if TYPE_CHECKING:
    from callbridge.telephony.service import TelephonyService

log = get_logger(__name__)

STATUS_FILE = "sip_trunk_registrations.json"

Signature = tuple[str, int, str, str, str, int]


def signature(trunk: Trunk) -> Signature:
    """What a registration depends on: a change of any of these re-registers."""
    return (trunk.host, trunk.port, trunk.transport.upper(), trunk.username, trunk.password,
            trunk.register_expires)  # fmt: skip


def registers(trunk: Trunk) -> bool:
    return trunk.register and bool(trunk.username)


def read_status(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The registration states a running (or stopped) server last wrote; ``{}`` if none."""
    try:
        data = json.loads((data_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    trunks = data.get("trunks") if isinstance(data, dict) else None
    if not isinstance(trunks, dict):
        return {}
    return {str(k): v for k, v in trunks.items() if isinstance(v, dict)}


class TrunkRegistrations:
    """The registrations of the SIP service's trunks (see the module docstring)."""

    def __init__(self, service: TelephonyService, data_dir: Path) -> None:
        self.service = service
        self.path = data_dir / STATUS_FILE
        self.backoff_first = BACKOFF_FIRST
        self.backoff_max = BACKOFF_MAX
        self.registrations: dict[str, tuple[Signature, Registration]] = {}
        self._changed = asyncio.Event()
        self._stopping: list[tuple[str, Registration]] = []

    def get(self, name: str) -> Registration | None:
        entry = self.registrations.get(name)
        return entry[1] if entry is not None else None

    # -- lifecycle -------------------------------------------------------------------------------

    def sync(self, trunks: Iterable[Trunk]) -> None:
        """Start, restart or stop registrations to match the trunks."""
        wanted = {t.name: t for t in trunks if registers(t)}
        self._stopping = [(n, r) for n, r in self._stopping if r.state is not RegState.STOPPED]
        changed = False
        for name, (sig, registration) in list(self.registrations.items()):
            trunk = wanted.get(name)
            if trunk is None or signature(trunk) != sig:
                del self.registrations[name]
                self._stop(name, registration)
                changed = True
        for name, trunk in wanted.items():
            if name not in self.registrations:
                self._start(trunk)
                changed = True
        if changed or not self.path.exists():
            self._write()

    def _start(self, trunk: Trunk) -> None:
        service = self.service
        transport = trunk.transport.upper()
        registrar = f"sip:{trunk.host}:{trunk.port}"
        if transport != "UDP":
            registrar += f";transport={transport.lower()}"
        name = trunk.name
        registration = Registration(
            service.ua,
            registrar=registrar,
            destination=(trunk.host, trunk.port),
            transport=transport,
            user=trunk.username,
            password=trunk.password or None,
            expires=trunk.register_expires,
            on_change=lambda r: self._on_change(name, r),
            backoff_first=self.backoff_first,
            backoff_max=self.backoff_max,
        )
        self.registrations[name] = (signature(trunk), registration)
        log.info("sip trunk registering", trunk=name, registrar=registrar, aor=registration.aor)
        service.stack.run(registration.start)

    def _stop(self, name: str, registration: Registration) -> None:
        if registration.state is RegState.STOPPED:
            return
        self._stopping.append((name, registration))
        self.service.stack.run(registration.stop)

    async def close(self, limit: float = 2.0) -> None:
        """Unregister every trunk; wait at most ``limit`` seconds for the answers."""
        for name, (_, registration) in list(self.registrations.items()):
            self._stop(name, registration)
        self.registrations.clear()
        pending = [r for _, r in self._stopping]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while any(r.state is not RegState.STOPPED for r in pending):
                    self._changed.clear()
                    await self._changed.wait()
        for name, registration in self._stopping:
            if registration.state is not RegState.STOPPED:
                log.warning("sip trunk unregister unanswered", trunk=name)
        self._stopping.clear()
        self._write(stopped=True)

    # -- status --------------------------------------------------------------------------------

    def _on_change(self, name: str, registration: Registration) -> None:
        self._changed.set()
        state = registration.state
        fields: dict[str, Any] = {"trunk": name, "state": state.value}
        if registration.last_status is not None:
            fields["status"] = registration.last_status
        if state is RegState.FAILED:
            retry = registration.retry_at
            if retry is not None:
                fields["retry_in"] = round(retry - self.service.clock.monotonic(), 1)
            log.warning("sip trunk registration failed", **fields)
        else:
            log.info("sip trunk registration", **fields)
        self._write()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per trunk name: state, AOR, last status and expiry / next retry (UTC, RFC 3339)."""
        out: dict[str, dict[str, Any]] = {}
        for name, (_, registration) in sorted(self.registrations.items()):
            out[name] = self._describe(registration)
        return out

    def _describe(self, registration: Registration) -> dict[str, Any]:
        clock = self.service.clock
        offset = clock.time() - clock.monotonic()

        def wall(moment: float | None) -> str | None:
            if moment is None:
                return None
            return datetime.fromtimestamp(moment + offset, UTC).isoformat()

        failed = registration.state is RegState.FAILED
        return {
            "state": registration.state.value,
            "aor": registration.aor,
            "last_status": registration.last_status,
            "expires_at": wall(registration.expires_at),
            "retry_at": wall(registration.retry_at if failed else None),
            "updated": datetime.fromtimestamp(clock.time(), UTC).isoformat(),
        }

    def _write(self, *, stopped: bool = False) -> None:
        trunks = self.status()
        if stopped:
            trunks = {}
        body = json.dumps({"trunks": trunks, "running": not stopped}, indent=1)
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(body + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:  # status only: never fail the SIP service for it
            log.warning("sip trunk status not written", path=str(self.path), error=str(exc))
