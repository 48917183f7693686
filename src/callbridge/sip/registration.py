"""REGISTER client (RFC 3261 §10.2, spec ``sip.md`` §8): sans-I/O, on the UA's client half.

:class:`Registration` keeps one contact registered with a registrar:

* the first REGISTER goes without credentials; a 401/407 is answered **once** per challenge
  (:class:`~callbridge.sip.auth.DigestClient`: a second non-stale challenge means wrong
  credentials → ``FAILED``, never a loop); every REGISTER of the binding shares one Call-ID
  and increments CSeq (§10.2.4);
* on 2xx the granted expiry is our Contact's ``expires`` parameter in the response (else the
  ``Expires`` header, else what we asked); the refresh is due at **90 %** of it;
* a 423 raises the asked expiry to the response's ``Min-Expires`` and retries at once;
* any other failure (final error, timeout, transport error) backs off: 30 s, doubling to
  600 s (both configurable), then tries again;
* :meth:`Registration.stop` sends ``Expires: 0`` (unregister).

State is visible as :attr:`Registration.state`, :attr:`Registration.expires_at` and
:attr:`Registration.last_status`; an optional ``on_change`` callback is called on every change.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from callbridge.sip.auth import DigestClient
from callbridge.sip.errors import SipError
from callbridge.sip.headers import SipUri, parse_contacts, parse_uri, uri_equal
from callbridge.sip.ids import new_call_id, new_tag
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.transaction import Address, stamp_via

if TYPE_CHECKING:
    from callbridge.sip.ua import UserAgent

#: Refresh at this fraction of the granted expiry.
REFRESH_AT = 0.9
BACKOFF_FIRST = 30.0
BACKOFF_MAX = 600.0


class RegState(enum.StrEnum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # waiting for the back-off to try again
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


class Registration:
    """One binding ``sip:<user>@<domain>`` → our Contact at ``registrar`` (via ``destination``)."""

    def __init__(
        self,
        ua: UserAgent,
        *,
        registrar: str,
        destination: Address,
        transport: str,
        user: str,
        password: str | None,
        domain: str | None = None,
        expires: int = 3600,
        on_change: Callable[[Registration], None] | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        uri = parse_uri(registrar)
        if not isinstance(uri, SipUri):
            raise SipError(f"registrar {registrar!r} is not a SIP URI")
        self.ua = ua
        self.registrar = str(uri)
        self.destination = destination
        self.transport = transport.upper()
        self.user = user
        self.password = password
        self.aor = f"sip:{user}@{domain or uri.host}"
        self.expires = expires
        self.on_change = on_change
        self.state = RegState.IDLE
        self.expires_at: float | None = None
        #: Seconds the registrar granted in its last 2xx (``None`` when not registered).
        self.granted: int | None = None
        self.last_status: int | None = None
        self.attempts = 0
        self._call_id = new_call_id(ua.ids, ua.config.host)
        self._tag = new_tag(ua.ids)
        self._cseq = 0
        self._digest: DigestClient | None = None
        self._timer: float | None = None
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self._backoff = backoff_first
        self._pending_expires = expires
        #: When the next attempt is due while ``FAILED`` (``None`` otherwise).
        self.retry_at: float | None = None

    @property
    def contact_uri(self) -> SipUri:
        contact = parse_contacts([self.ua.config.contact(self.transport, self.user)])
        assert isinstance(contact, list)
        uri = contact[0].uri
        assert isinstance(uri, SipUri)
        return uri

    # -- control ---------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self not in self.ua.client.owners:
            self.ua.client.owners.append(self)
        self._register(now, fresh=True)

    def stop(self, now: float) -> None:
        """Unregister (``Expires: 0``) when registered; stop refreshing either way."""
        self._timer = None
        if self.state is RegState.REGISTERED:
            self._set(RegState.UNREGISTERING)
            self._digest = None
            self._send(now, 0)
        else:
            self._finish()

    def _finish(self) -> None:
        self._set(RegState.STOPPED)
        if self in self.ua.client.owners:
            self.ua.client.owners.remove(self)

    # -- sending ---------------------------------------------------------------------------------

    def _register(self, now: float, *, fresh: bool) -> None:
        if fresh:
            self._digest = None  # a new chain: the registrar challenges again
        self._set(RegState.REGISTERING)
        self._send(now, self.expires)

    def _send(self, now: float, expires: int, credentials: Sequence[tuple[str, str]] = ()) -> None:
        self._cseq += 1
        self.attempts += 1
        config = self.ua.config
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self._tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", config.contact(self.transport, self.user))
        headers.add("Expires", str(expires))
        headers.add("User-Agent", config.user_agent)
        for name, value in credentials:
            headers.add(name, value)
        request = Request(headers=headers, body=b"", method="REGISTER", uri=self.registrar)
        stamp_via(request, self.transport, config.host, config.port, self.ua.ids)
        self._pending_expires = expires
        self.ua.client.send_owned(self, request, self.destination, self.transport, now)

    # -- RequestOwner ------------------------------------------------------------------------------

    def on_response(self, response: Response, now: float) -> None:
        if self.state is RegState.STOPPED:
            return  # a late answer to a REGISTER sent before stop()
        status = response.status
        self.last_status = status
        unregistering = self.state is RegState.UNREGISTERING
        if status in (401, 407) and self.password is not None:
            if self._digest is None:
                self._digest = DigestClient(self.user, self.password, self.ua.ids)
            credentials = self._digest.respond(response, "REGISTER", self.registrar)
            if credentials is not None:
                self._send(now, self._pending_expires, credentials)
                return
        if unregistering:
            self.expires_at = self.granted = None
            self._finish()
            return
        if 200 <= status < 300:
            granted = self.granted = self._granted(response)
            self.expires_at = now + granted
            self._timer = now + REFRESH_AT * granted
            self._backoff = self.backoff_first
            self.retry_at = None
            self._set(RegState.REGISTERED)
            return
        if status == 423:
            minimum = (response.headers.get("Min-Expires") or "").strip()
            if minimum.isdigit() and int(minimum) > self.expires:
                self.expires = int(minimum)
                self._register(now, fresh=True)
                return
        self._fail(now)

    def on_failure(self, now: float) -> None:
        if self.state is RegState.STOPPED:
            return
        self.last_status = 408
        if self.state is RegState.UNREGISTERING:
            self._finish()
            return
        self._fail(now)

    def next_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        self._timer = None
        if self.state in (RegState.REGISTERED, RegState.FAILED):
            self._register(now, fresh=True)

    # -- helpers -----------------------------------------------------------------------------------

    def _fail(self, now: float) -> None:
        self.expires_at = self.granted = None
        self._timer = self.retry_at = now + self._backoff
        self._backoff = min(self.backoff_max, self._backoff * 2)
        self._set(RegState.FAILED)

    def _granted(self, response: Response) -> int:
        ours = self.contact_uri
        try:
            contacts = parse_contacts(response.headers.get_all("Contact"))
        except SipError:
            contacts = []
        if isinstance(contacts, list):
            for contact in contacts:
                if uri_equal(contact.uri, ours) and contact.expires is not None:
                    return contact.expires
        header = (response.headers.get("Expires") or "").strip()
        return int(header) if header.isdigit() else self._pending_expires

    def _set(self, state: RegState) -> None:
        if state is self.state:
            return
        self.state = state
        if self.on_change is not None:
            self.on_change(self)
