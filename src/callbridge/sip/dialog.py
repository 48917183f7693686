"""SIP dialogs (RFC 3261 §12) and the UA core's 2xx retransmission (§13.3.1.4).

A :class:`Dialog` is created by the UAS from the request it answers with a tag (§12.1.1) or by
the UAC from a 1xx-with-tag or 2xx response (§12.1.2). It owns the route set, the remote target,
the local and remote CSeq and builds in-dialog requests (§12.2.1.1, loose and strict routing).
Its state is an explicit table (Early → Confirmed → Terminated); illegal transitions raise.

:class:`DialogTable` finds the dialog of an incoming request or response by Call-ID and tags
(§12.2.2) and tells the UA when a request must be answered 481.

:class:`TwoXXRetransmitter` is the sans-I/O timer object the UA core uses to re-send a 2xx to an
INVITE until the ACK arrives: T1 doubling up to T2, giving up after 64·T1 (the UA then ends the
dialog with BYE, §13.3.1.4).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from callbridge.sip.errors import SipParseError, TransactionError
from callbridge.sip.headers import NameAddr, SipUri, Uri, parse_name_addr, parse_uri
from callbridge.sip.message import Headers, Request, Response

#: Methods whose requests and 2xx responses refresh the remote target (§12.2, RFC 3311).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogInput(enum.Enum):
    PROVISIONAL = "1xx with tag"
    SUCCESS = "2xx"
    FAILURE = "non-2xx final to the INVITE"
    END = "BYE, 481/408 or ACK timeout"


D, E = DialogState, DialogInput
DIALOG_TABLE: dict[tuple[DialogState, DialogInput], DialogState] = {
    (D.EARLY, E.PROVISIONAL): D.EARLY,
    (D.EARLY, E.SUCCESS): D.CONFIRMED,
    (D.EARLY, E.FAILURE): D.TERMINATED,
    (D.EARLY, E.END): D.TERMINATED,
    (D.CONFIRMED, E.SUCCESS): D.CONFIRMED,
    (D.CONFIRMED, E.END): D.TERMINATED,
}
del D, E


@dataclass(frozen=True)
class DialogId:
    """Call-ID plus local and remote tag (§12)."""

    call_id: str
    local_tag: str
    remote_tag: str


def _contact_uri(message: Request | Response) -> Uri | None:
    contacts = message.contacts
    return contacts[0].uri if contacts else None


@dataclass
class Dialog:
    """The state of one dialog as seen by this UA."""

    id: DialogId
    local: NameAddr  # our address with our tag (From of our requests)
    remote: NameAddr  # the peer's address with its tag (To of our requests)
    remote_target: Uri
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    local_contact: str
    is_uac: bool
    state: DialogState = DialogState.EARLY
    secure: bool = False
    extra_headers: list[tuple[str, str]] = field(default_factory=list)

    # -- creation --------------------------------------------------------------------------

    @classmethod
    def from_uas(
        cls, request: Request, local_tag: str, local_contact: str, *, confirmed: bool
    ) -> Dialog:
        """§12.1.1: route set = Record-Route as received, remote target = Contact."""
        target = _contact_uri(request)
        if target is None:
            raise SipParseError("Missing Contact in a dialog-creating request")
        from_ = request.from_
        if from_.tag is None:
            raise SipParseError("Missing From tag")
        to = request.to.with_tag(local_tag)
        return cls(
            id=DialogId(request.call_id, local_tag, from_.tag),
            local=to,
            remote=from_,
            remote_target=target,
            route_set=request.headers.values("Record-Route"),
            local_seq=0,
            remote_seq=request.cseq.number,
            local_contact=local_contact,
            is_uac=False,
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY,
            secure=isinstance(uri := parse_uri(request.uri), SipUri) and uri.scheme == "sips",
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response, local_contact: str) -> Dialog:
        """§12.1.2: route set = Record-Route of the response reversed, target = its Contact."""
        to = response.to
        if to.tag is None:
            raise SipParseError("Response without To tag cannot create a dialog")
        target = _contact_uri(response) or parse_uri(request.uri)
        from_ = request.from_
        dialog = cls(
            id=DialogId(request.call_id, from_.tag or "", to.tag),
            local=from_,
            remote=to,
            remote_target=target,
            route_set=list(reversed(response.headers.values("Record-Route"))),
            local_seq=request.cseq.number,
            remote_seq=None,
            local_contact=local_contact,
            is_uac=True,
        )
        dialog.update_from_response(request.method, response)
        return dialog

    # -- state -----------------------------------------------------------------------------

    def _step(self, inp: DialogInput) -> None:
        try:
            self.state = DIALOG_TABLE[(self.state, inp)]
        except KeyError:
            raise TransactionError(
                f"dialog {self.id}: {inp.value} not allowed in state {self.state.value}"
            ) from None

    def update_from_response(self, method: str, response: Response) -> None:
        """Apply a response to a request sent in this dialog (§12.1.2, §12.2.1.2)."""
        status = response.status
        if method == "INVITE" and self.state is DialogState.EARLY:
            if status < 200:
                self._step(DialogInput.PROVISIONAL)
            elif status < 300:
                self._step(DialogInput.SUCCESS)
            else:
                self._step(DialogInput.FAILURE)
                return
            # An early dialog's route set and target follow each 1xx/2xx (§12.1.2, §13.2.2.4).
            self.route_set = list(reversed(response.headers.values("Record-Route")))
        if 200 <= status < 300 and method in TARGET_REFRESH:
            target = _contact_uri(response)
            if target is not None:
                self.remote_target = target
        if status in (481, 408) and self.state is not DialogState.TERMINATED:
            self._step(DialogInput.END)  # §12.2.1.2: the dialog is gone

    def confirm(self) -> None:
        """The UAS sent its 2xx."""
        self._step(DialogInput.SUCCESS)

    def terminate(self) -> None:
        """BYE sent or received, ACK never came, or the INVITE failed (UAS side)."""
        if self.state is DialogState.EARLY:
            self._step(DialogInput.FAILURE)
        elif self.state is DialogState.CONFIRMED:
            self._step(DialogInput.END)

    # -- requests --------------------------------------------------------------------------

    def receive_request(self, request: Request) -> int | None:
        """Check an in-dialog request (§12.2.2); return a rejection status or ``None``.

        A CSeq lower than the last one seen → 500. ACK and CANCEL do not move the remote CSeq.
        Target-refresh requests update the remote target. BYE terminates the dialog.
        """
        if self.state is DialogState.TERMINATED:
            return 481
        number = request.cseq.number
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and number < self.remote_seq:
                return 500  # out of order (§12.2.2)
            self.remote_seq = max(number, self.remote_seq or 0)
        if request.method in TARGET_REFRESH:
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target
        if request.method == "BYE":
            self.terminate()
        return None

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """Build an in-dialog request (§12.2.1.1) without Via (the transport stamps it).

        The local CSeq increments for every request except ACK, which takes the INVITE's
        number (``cseq``). A route set whose first entry lacks ``lr`` is a strict router: it
        becomes the Request-URI and the remote target is appended to the Route headers.
        """
        if self.state is DialogState.TERMINATED:
            raise TransactionError("cannot send requests in a terminated dialog")
        if method == "ACK":
            if cseq is None:
                raise TransactionError("ACK needs the CSeq number of its INVITE")
            number = cseq
        else:
            self.local_seq += 1
            number = self.local_seq
        routes = list(self.route_set)
        uri = str(self.remote_target)
        if routes:
            first = parse_name_addr(routes[0]).uri
            if isinstance(first, SipUri) and first.param("lr") is None:
                uri = str(first.without_headers())
                routes = [*routes[1:], f"<{self.remote_target}>"]
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.id.call_id)
        headers.add("CSeq", f"{number} {method}")
        for route in routes:
            headers.add("Route", route)
        if method in TARGET_REFRESH:
            headers.add("Contact", self.local_contact)
        for name, value in self.extra_headers:
            headers.add(name, value)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return Request(headers=headers, body=body, method=method, uri=uri)


class DialogTable:
    """Every dialog of one UA, keyed by :class:`DialogId` (§12.2.2)."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog_id: DialogId) -> None:
        self._dialogs.pop(dialog_id, None)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def match_request(self, request: Request) -> Dialog | None:
        """The dialog of an incoming request: To tag = local tag, From tag = remote tag."""
        local, remote = request.to.tag, request.from_.tag
        if local is None or remote is None:
            return None
        return self._dialogs.get(DialogId(request.call_id, local, remote))

    def match_response(self, response: Response) -> Dialog | None:
        """The dialog of an incoming response: From tag = local tag, To tag = remote tag."""
        local, remote = response.from_.tag, response.to.tag
        if local is None or remote is None:
            return None
        return self._dialogs.get(DialogId(response.call_id, local, remote))

    def reject_status(self, request: Request) -> int | None:
        """481 for an in-dialog request (To tag present) matching no dialog (§12.2.2).

        ``None`` when the request is out of dialog or matches one. A stray ACK gets no
        response at all (§17.2.3); callers drop it when this returns 481 for an ACK.
        """
        if request.to.tag is None:
            return None
        dialog = self.match_request(request)
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return 481
        return None


class TwoXXRetransmitter:
    """Re-send a 2xx to an INVITE until its ACK arrives (RFC 3261 §13.3.1.4).

    Intervals start at T1 and double up to T2; after 64·T1 without ACK :meth:`handle_timer`
    reports ``timed_out`` and the UA confirms then ends the dialog with BYE.
    """

    def __init__(self, now: float, t1: float = 0.5, t2: float = 4.0) -> None:
        self._interval = t1
        self._t2 = t2
        self._deadline: float | None = now + t1
        self._give_up = now + 64 * t1
        self.acked = False
        self.timed_out = False

    def next_timer(self) -> float | None:
        if self._deadline is None:
            return None
        return min(self._deadline, self._give_up)

    def ack_received(self) -> None:
        self.acked = True
        self._deadline = None

    def handle_timer(self, now: float) -> int:
        """Return how many retransmissions are due at ``now`` (0 when none)."""
        count = 0
        while self._deadline is not None:
            if now >= self._give_up:
                self._deadline = None
                self.timed_out = True
                break
            if self._deadline > now:
                break
            count += 1
            self._interval = min(2 * self._interval, self._t2)
            self._deadline += self._interval
        return count
