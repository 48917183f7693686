"""The REGISTER client against callbridge's own registrar, both sans-I/O, in virtual time."""

from __future__ import annotations

from collections.abc import Mapping

from callbridge.sip.auth import DigestServer
from callbridge.sip.ids import SeededIdSource
from callbridge.sip.message import Response, make_response, parse_message
from callbridge.sip.registrar import LocationService, Registrar
from callbridge.sip.registration import Registration, RegState
from callbridge.sip.ua import UserAgent
from callbridge.sip.ua_model import UaConfig

SERVER = ("127.0.0.1", 5060)
PHONE = ("127.0.0.1", 5070)


class Policy:
    def trusted(self, host: str) -> bool:
        return False

    @property
    def passwords(self) -> Mapping[str, str]:
        return {"1001": "pw"}


def server(min_expires: int = 60) -> tuple[UserAgent, LocationService]:
    ids = SeededIdSource(1)
    digest = DigestServer("cb.test", b"secret", ids, algorithms=("MD5",))
    location = LocationService()
    registrar = Registrar(location, digest, Policy().passwords, ids, min_expires=min_expires)
    config = UaConfig(host="127.0.0.1", port=5060, domain="cb.test")
    return UserAgent(config, ids, Policy(), digest, registrar=registrar), location


def phone() -> UserAgent:
    ids = SeededIdSource(2)
    digest = DigestServer("phone", b"other", ids)
    config = UaConfig(host="127.0.0.1", port=5070, domain="127.0.0.1", registrar=False)
    return UserAgent(config, ids, Policy(), digest)


def pump(a: UserAgent, b: UserAgent, now: float) -> list[str]:
    """Deliver every queued datagram between the two UAs; the start lines seen."""
    lines: list[str] = []
    for _ in range(20):
        moved = False
        for src, dst, addr in ((a, b, PHONE), (b, a, SERVER)):
            for data, _dest, transport in src.outgoing():
                lines.append(data.split(b"\r\n", 1)[0].decode())
                dst.receive(data, addr, transport, now)
                moved = True
        if not moved:
            break
    return lines


def registration(ua: UserAgent, password: str = "pw", expires: int = 300) -> Registration:
    return Registration(
        ua, registrar="sip:127.0.0.1:5060", destination=SERVER, transport="UDP",
        user="1001", password=password, domain="cb.test", expires=expires,
    )  # fmt: skip


def test_register_with_digest_refreshes_at_90_percent_and_unregisters() -> None:
    srv, location = server()
    ua = phone()
    reg = registration(ua)
    reg.start(0.0)
    lines = pump(ua, srv, 0.0)
    assert lines == [
        "REGISTER sip:127.0.0.1:5060 SIP/2.0",
        "SIP/2.0 401 Unauthorized",
        "REGISTER sip:127.0.0.1:5060 SIP/2.0",
        "SIP/2.0 200 OK",
    ]
    assert reg.state is RegState.REGISTERED and reg.expires_at == 300.0
    assert reg.granted == 300
    assert reg.next_timer() == 270.0  # 90 % of the granted 300 s
    (binding,) = location.lookup("1001", 1.0)
    assert binding.remaining(1.0) == 299
    ua.handle_timer(270.0)
    assert pump(ua, srv, 270.0)[-1] == "SIP/2.0 200 OK"
    assert reg.expires_at == 570.0 and reg.attempts == 4
    reg.stop(300.0)
    pump(ua, srv, 300.0)
    assert reg.state is RegState.STOPPED and location.lookup("1001", 300.0) == []
    assert ua.client.owners == []


def test_wrong_password_answers_once_then_backs_off() -> None:
    srv, _ = server()
    ua = phone()
    reg = registration(ua, password="nope")
    reg.start(0.0)
    lines = pump(ua, srv, 0.0)
    assert [line.split(" ")[0] for line in lines].count("REGISTER") == 2  # no loop
    assert reg.state is RegState.FAILED and reg.last_status == 401
    assert reg.next_timer() == 30.0
    ua.handle_timer(30.0)
    pump(ua, srv, 30.0)
    assert reg.state is RegState.FAILED and reg.next_timer() == 90.0  # 30 s, then 60 s


def test_423_raises_the_expiry_to_min_expires() -> None:
    srv, location = server(min_expires=120)
    ua = phone()
    reg = registration(ua, expires=60)
    reg.start(0.0)
    lines = pump(ua, srv, 0.0)
    assert "SIP/2.0 423 Interval Too Brief" in lines and lines[-1] == "SIP/2.0 200 OK"
    assert reg.expires == 120 and reg.state is RegState.REGISTERED
    assert location.lookup("1001", 0.0)[0].remaining(0.0) == 120


def test_timeout_backs_off_and_granted_expiry_falls_back_to_the_header() -> None:
    ua = phone()
    reg = registration(ua)
    reg.start(0.0)
    (data, _, _), *_ = ua.outgoing()
    ua.handle_timer(32.0)  # Timer F: nobody answered
    assert reg.state is RegState.FAILED and reg.last_status == 408
    request = parse_message(data)
    response = make_response(request, 200)  # type: ignore[arg-type]
    response.headers.add("Expires", "200")
    assert isinstance(response, Response)
    assert reg._granted(response) == 200


def test_configured_back_off_and_retry_at() -> None:
    srv, _ = server()
    ua = phone()
    reg = Registration(
        ua, registrar="sip:127.0.0.1:5060", destination=SERVER, transport="UDP",
        user="1001", password="nope", domain="cb.test", backoff_first=0.5, backoff_max=1.5,
    )  # fmt: skip
    reg.start(0.0)
    pump(ua, srv, 0.0)
    assert reg.state is RegState.FAILED and reg.retry_at == reg.next_timer() == 0.5
    for now, following in ((0.5, 1.5), (1.5, 3.0), (3.0, 4.5)):  # 0.5, 1.0, capped at 1.5
        ua.handle_timer(now)
        pump(ua, srv, now)
        assert reg.next_timer() == following


def test_a_late_answer_after_stop_is_ignored() -> None:
    srv, location = server()
    ua = phone()
    reg = registration(ua)
    reg.start(0.0)
    reg.stop(0.1)  # still REGISTERING: stop without unregistering
    assert reg.state is RegState.STOPPED
    pump(ua, srv, 0.2)  # the 401 (and nothing else) comes back
    assert reg.state is RegState.STOPPED and reg.next_timer() is None
    assert location.lookup("1001", 1.0) == []
