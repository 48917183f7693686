"""Host names of SIP destinations, resolved in the asyncio shell (RFC 3263 §4, simplified).

The sans-I/O core computes where a request goes from its URI — the host, the port (the URI's,
else 5060) and the transport (the URI's ``transport`` parameter, else UDP; RFC 3263 §4.1
and §4.2 without NAPTR/SRV) — and hands the shell ``(host, port)``. When the host is a name,
the shell looks its A/AAAA records up with the event loop's ``getaddrinfo`` (never a blocking
call on the loop) in the address family of the socket that will send, and uses the first
address (RFC 3263 §4.2: "the client SHOULD try the addresses in order"; we try one, and a
failure is reported to the core as a transport error, which fails the client transaction).

Results are kept for :data:`CACHE_SECONDS` (``getaddrinfo`` gives no TTL), failures for
:data:`NEGATIVE_SECONDS`, at most :data:`CACHE_ENTRIES` names. IP literals (also in
``[...]``) are used as they are and cost one set lookup per message once seen.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final

from callbridge.media.clock import Clock

#: How long a resolved address is reused.
CACHE_SECONDS: Final = 60.0
#: How long a name that did not resolve is not asked again.
NEGATIVE_SECONDS: Final = 5.0
#: Names kept at most (the cache is emptied beyond that).
CACHE_ENTRIES: Final = 1024
#: A lookup that takes longer fails.
LOOKUP_TIMEOUT: Final = 5.0


class ResolveError(OSError):
    """A SIP host name has no address in the wanted family."""


def is_ip_literal(host: str) -> bool:
    """True for ``192.0.2.1``, ``::1`` and ``[::1]``."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class SipResolver:
    """A/AAAA lookups of SIP destination hosts with a small cache (see the module docstring)."""

    def __init__(self, clock: Clock, family: int = socket.AF_INET) -> None:
        self.clock = clock
        self.family = family
        self._literals: set[str] = set()
        self._cache: dict[str, tuple[str | None, float]] = {}

    def literal(self, host: str) -> bool:
        """Whether ``host`` needs no lookup (remembered, so the common case is one set test)."""
        if host in self._literals:
            return True
        if not is_ip_literal(host):
            return False
        if len(self._literals) >= CACHE_ENTRIES:
            self._literals.clear()
        self._literals.add(host)
        return True

    async def resolve(self, host: str, port: int, transport: str = "UDP") -> tuple[str, int]:
        """``(address, port)`` for ``host``; :class:`ResolveError` when it has none."""
        if self.literal(host):
            return host.strip("[]"), port
        key = host.lower()
        now = self.clock.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            if cached[0] is None:
                raise ResolveError(f"sip host {host!r} did not resolve")
            return cached[0], port
        kind = socket.SOCK_DGRAM if transport.upper() == "UDP" else socket.SOCK_STREAM
        loop = asyncio.get_running_loop()
        address: str | None = None
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                infos = await loop.getaddrinfo(key, port, family=self.family, type=kind)
            if infos:
                address = str(infos[0][4][0])
        except (OSError, TimeoutError, UnicodeError):
            address = None
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        ttl = CACHE_SECONDS if address is not None else NEGATIVE_SECONDS
        self._cache[key] = (address, now + ttl)
        if address is None:
            raise ResolveError(f"sip host {host!r} did not resolve")
        return address, port
