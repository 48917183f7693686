"""Registrar and location service (RFC 3261 §10.3, spec ``sip.md`` §8). Sans-I/O.

:class:`Registrar` turns one REGISTER into its response: the Request-URI domain must be served
(404), the request must carry valid digest credentials (401 challenge, ``stale=true`` for an
expired nonce), the authenticated user must own the To address (403), ``Contact: *`` needs
``Expires: 0`` and no other contact (400), each contact's expiry comes from its ``expires``
parameter, else the ``Expires`` header, else 3600 s, is capped at ``max_expires`` and below
``min_expires`` (but not 0) the whole request is refused with 423 and ``Min-Expires``. A binding
refreshed with the same Call-ID and a CSeq not higher than the stored one → 500. The 200 lists
every current binding of the AOR with its remaining ``expires``.

:class:`LocationService` keeps the bindings in memory, keyed by the AOR's user part (callbridge
serves one domain), each remembering the source address, transport and thus the TCP connection
the REGISTER used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from callbridge.sip.auth import AuthResult, DigestServer
from callbridge.sip.errors import SipParseError
from callbridge.sip.headers import ContactStar, NameAddr, SipUri, parse_contacts, uri_equal
from callbridge.sip.ids import IdSource, new_tag
from callbridge.sip.message import Request, Response, make_response
from callbridge.sip.transaction import Address

DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


@dataclass
class Binding:
    """One registered contact of an AOR."""

    user: str
    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int
    source: Address
    transport: str

    def remaining(self, now: float) -> int:
        return max(0, math.ceil(self.expires_at - now))


class LocationService:
    """Bindings per AOR user; expired ones disappear on every lookup."""

    def __init__(self) -> None:
        self._bindings: dict[str, list[Binding]] = {}

    def lookup(self, user: str, now: float) -> list[Binding]:
        current = [b for b in self._bindings.get(user, []) if b.expires_at > now]
        if current:
            self._bindings[user] = current
        else:
            self._bindings.pop(user, None)
        return list(current)

    def replace(self, user: str, bindings: list[Binding]) -> None:
        if bindings:
            self._bindings[user] = bindings
        else:
            self._bindings.pop(user, None)

    def users(self) -> list[str]:
        return sorted(self._bindings)

    def in_use(self, source: Address, transport: str, now: float) -> bool:
        """Whether a live binding was registered from this address and transport (a TCP
        connection carrying a binding is kept open)."""
        return any(
            b.source == source and b.transport == transport and b.expires_at > now
            for bindings in self._bindings.values()
            for b in bindings
        )


class Registrar:
    """REGISTER processing with digest authentication against the extensions' passwords."""

    def __init__(
        self,
        location: LocationService,
        digest: DigestServer,
        passwords: Mapping[str, str],
        ids: IdSource,
        *,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        default_expires: int = DEFAULT_EXPIRES,
    ) -> None:
        self.location = location
        self.digest = digest
        self.passwords = passwords
        self.ids = ids
        self.min_expires = min_expires
        self.max_expires = max(max_expires, min_expires)
        self.default_expires = default_expires

    def _response(self, request: Request, status: int, reason: str | None = None) -> Response:
        return make_response(request, status, reason, to_tag=new_tag(self.ids))

    def handle(self, request: Request, source: Address, transport: str, now: float) -> Response:
        """The response to one REGISTER (the domain and ``Require`` were checked by the UA)."""
        header = request.headers.get("Authorization")
        if header is None:
            return self._challenge(request, now, stale=False)
        check = self.digest.verify(
            header,
            method="REGISTER",
            request_uri=request.uri,
            password_for=self.passwords,
            now=now,
        )
        if check.result is AuthResult.STALE:
            return self._challenge(request, now, stale=True)
        if check.result is not AuthResult.OK or check.username is None:
            return self._challenge(request, now, stale=False)
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri) or to_uri.user_unescaped != check.username:
            return self._response(request, 403, "Forbidden (To is not your address)")
        try:
            return self._update(request, check.username, source, transport, now)
        except (SipParseError, ValueError):
            return self._response(request, 400, "Bad Request (Contact or Expires)")

    def _challenge(self, request: Request, now: float, *, stale: bool) -> Response:
        response = self._response(request, 401)
        for name, value in self.digest.challenge(now, stale=stale):
            response.headers.add(name, value)
        return response

    def _update(
        self, request: Request, user: str, source: Address, transport: str, now: float
    ) -> Response:
        expires_header = request.headers.get("Expires")
        header_expires = int(expires_header.strip()) if expires_header is not None else None
        if header_expires is not None and header_expires < 0:
            raise ValueError("negative Expires")
        contacts = parse_contacts(request.headers.get_all("Contact"))
        call_id = request.call_id
        cseq = request.cseq.number
        bindings = self.location.lookup(user, now)
        if isinstance(contacts, ContactStar):
            if header_expires != 0 or len(request.headers.values("Contact")) != 1:
                return self._response(request, 400, "Bad Request (* needs Expires: 0 alone)")
            for binding in bindings:
                if binding.call_id == call_id and cseq <= binding.cseq:
                    return self._response(request, 500, "Server Error (CSeq out of order)")
            self.location.replace(user, [])
            return self._ok(request, user, now)
        wanted: list[tuple[NameAddr, int]] = []
        for contact in contacts:
            raw = contact.param("expires")
            if raw is not None and not raw.strip().isdigit():
                raise ValueError("bad expires parameter")
            expires = contact.expires
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            if 0 < expires < self.min_expires:
                response = self._response(request, 423)
                response.headers.add("Min-Expires", str(self.min_expires))
                return response
            wanted.append((contact, min(expires, self.max_expires)))
        for contact, _ in wanted:
            for binding in bindings:
                same = uri_equal(binding.contact.uri, contact.uri) and binding.call_id == call_id
                if same and cseq <= binding.cseq:
                    return self._response(request, 500, "Server Error (CSeq out of order)")
        for contact, expires in wanted:
            bindings = [b for b in bindings if not uri_equal(b.contact.uri, contact.uri)]
            if expires > 0:
                stored = NameAddr(contact.uri, contact.display_name, ())
                bindings.append(
                    Binding(user, stored, now + expires, call_id, cseq, source, transport)
                )
        self.location.replace(user, bindings)
        return self._ok(request, user, now)

    def _ok(self, request: Request, user: str, now: float) -> Response:
        response = self._response(request, 200)
        for binding in self.location.lookup(user, now):
            response.headers.add(
                "Contact", f"<{binding.contact.uri}>;expires={binding.remaining(now)}"
            )
        return response
