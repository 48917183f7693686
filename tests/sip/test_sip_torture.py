"""SIP torture messages (tests/vectors/sip/torture) and a seeded fuzz loop.

The messages were written for callbridge by ``tests/vectors/sip/torture/generate.py``, one per
case of RFC 4475 §3 and named after it; each exercises the property that case describes, with
our own hosts, users, tags and bodies (they are not the RFC's octets).
"""

from __future__ import annotations

import contextlib
import importlib.util
import pathlib
import random
from types import ModuleType

import pytest

from callbridge.sip.errors import SipParseError
from callbridge.sip.headers import (
    AbsoluteUri,
    SipUri,
    parse_auth,
    parse_contacts,
    parse_uri,
)
from callbridge.sip.message import (
    Request,
    Response,
    StreamFramer,
    error_response,
    parse_message,
)
from callbridge.sip.transaction import MalformedMessage, TransactionLayer

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors" / "sip" / "torture"

VALID_REQUESTS = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "badbranch", "unkscm", "novelsc", "unksm2",
    "bext01", "invut", "regaut01", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01",
    "inv2543",
]  # fmt: skip
VALID_RESPONSES = ["unreason", "noreason", "bcast"]
INVALID_REQUESTS = {
    "badinv01": (400, "Via"),
    "clerr": (400, "Content-Length"),
    "ncl": (400, "Content-Length"),
    "scalar02": (400, "CSeq"),
    "quotbal": (400, "quote"),
    "ltgtruri": (400, "Request-URI"),
    "lwsruri": (400, "request line"),
    "lwsstart": (400, "request line"),
    "trws": (400, "request line"),
    "escruri": (400, "Request-URI"),
    "baddate": (400, "Date"),
    "regbadct": (400, "Contact"),
    "badaspec": (400, "To"),
    "baddn": (400, "From"),
    "badvers": (505, "Version"),
    "mismatch01": (400, "CSeq method"),
    "mismatch02": (400, "CSeq method"),
    "insuf": (400, "Missing"),
    "multi01": (400, "Multiple"),
    "mcl01": (400, "Content-Length"),
}
INVALID_RESPONSES = ["scalarlg", "bigcode"]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torture_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


def load(name: str) -> bytes:
    return (VECTORS / f"{name}.dat").read_bytes()


def test_every_vector_is_classified() -> None:
    names = {p.stem for p in VECTORS.glob("*.dat")}
    classified = (
        set(VALID_REQUESTS) | set(VALID_RESPONSES) | set(INVALID_REQUESTS) | set(INVALID_RESPONSES)
    )
    assert names == classified == set(GEN.CASES)
    assert len(names) == 49


@pytest.mark.parametrize("name", sorted(GEN.CASES))
def test_committed_vectors_are_the_generator_output(name: str) -> None:
    assert load(name) == GEN.CASES[name]()


@pytest.mark.parametrize("name", sorted(GEN.CASES))
def test_vectors_use_crlf_line_ends_only(name: str) -> None:
    data = load(name)
    head = data[: data.index(b"\r\n\r\n")]
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert b"\r" not in head.replace(b"\r\n", b"")


@pytest.mark.parametrize("name", VALID_REQUESTS)
def test_valid_requests_parse(name: str) -> None:
    message = parse_message(load(name))
    assert isinstance(message, Request)
    assert message.vias
    parse_message(message.to_bytes())  # serialisation gives a parseable message


@pytest.mark.parametrize("name", VALID_RESPONSES)
def test_valid_responses_parse(name: str) -> None:
    message = parse_message(load(name))
    assert isinstance(message, Response)
    assert isinstance(parse_message(message.to_bytes()), Response)


@pytest.mark.parametrize(("name", "expected"), sorted(INVALID_REQUESTS.items()))
def test_invalid_requests_rejected_with_status(name: str, expected: tuple[int, str]) -> None:
    status, fragment = expected
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.status == status
    assert info.value.is_request is True
    assert fragment.lower() in info.value.reason.lower()


@pytest.mark.parametrize("name", sorted(INVALID_REQUESTS))
def test_invalid_requests_answered_by_transaction_layer(name: str) -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(load(name), ("192.0.2.1", 5060), "UDP", now=0.0)
    assert isinstance(event, MalformedMessage)
    outs = layer.outgoing()
    if event.responded:
        (out,) = outs
        # The answer copies the request's (possibly faulty) headers verbatim (§8.2.6.2).
        status_line = out.data.split(b"\r\n", 1)[0].decode()
        assert status_line.startswith(f"SIP/2.0 {INVALID_REQUESTS[name][0]} ")
        assert out.destination == ("192.0.2.1", 5060)
    else:  # insuf-style: the mandatory headers needed to answer are missing
        assert outs == []
        assert name in ("insuf", "multi01")


def test_missing_headers_are_dropped_duplicated_ones_answered() -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(load("insuf"), ("192.0.2.1", 5060), "UDP", now=0.0)
    assert isinstance(event, MalformedMessage) and not event.responded
    (event,) = layer.receive(load("multi01"), ("192.0.2.1", 5060), "UDP", now=0.0)
    assert isinstance(event, MalformedMessage) and event.responded
    (out,) = layer.outgoing()
    answer = parse_message(out.data)  # first instance of each duplicated header copied
    assert isinstance(answer, Response) and answer.status == 400
    assert answer.reason == "Multiple Call-ID headers"
    assert answer.call_id == "multi01.24@example.test"


@pytest.mark.parametrize("name", INVALID_RESPONSES)
def test_invalid_responses_are_dropped(name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.is_request is False
    assert error_response(info.value) is None


def test_wsinv_details() -> None:
    msg = parse_message(load("wsinv"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:conf-room7@bridge.callbridge.test;oddparam"
    assert [v.host for v in msg.vias] == ["198.51.100.14", "relay.example.test", "203.0.113.40"]
    assert [v.transport for v in msg.vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in msg.vias] == ["z9hG4bKws77a1", "z9hG4bKws22b", "z9hG4bKws33c"]
    assert msg.vias[2].port == 5060
    assert msg.max_forwards == 42  # "0042"
    assert msg.cseq.number == 17 and msg.cseq.method == "INVITE"  # "0017" folded
    assert msg.call_id == "ws-Inv.7731@198.51.100.14"  # compact "i"
    assert msg.to.tag == "77aa19qz"
    assert msg.from_.tag == "x7kd02"
    assert msg.from_.display_name == 'Mallory \\"'
    assert msg.headers.get("Subject") == ""  # compact "s", empty value
    assert msg.headers.get("Content-Type") == "application/sdp"  # compact "c"
    assert msg.headers.get("Route") == "<sip:edge.callbridge.test;lr>"
    assert msg.headers.get("WeirdlyPunctuated") == ",;;,;,,;"
    assert msg.headers.get("BrandNewHeader") == "brand new value continued brand new value"
    (contact,) = msg.contacts  # compact "m"
    assert contact.display_name == 'Bridge "front" desk'
    assert contact.param("newparam") == "newvalue"
    assert contact.param("secondparam") == ""
    assert contact.q == 0.33
    assert len(msg.body) == 166 and msg.body.startswith(b"v=0\r\n")


def test_intmeth_and_esc_details() -> None:
    msg = parse_message(load("intmeth"))
    assert isinstance(msg, Request)
    assert msg.method == "~Callbridge.verb-0123456789_!%*+`'"
    assert msg.cseq.method == msg.method and msg.cseq.number == 139122385
    uri = parse_uri(msg.uri)
    assert isinstance(uri, SipUri)
    assert uri.user == "o_d.d~(user!)&x'y+z$/?,/;;*=1"
    assert uri.password == "&pa$s+w=rd,0!*~_.(it's-odd)"
    assert uri.host == "intmeth.callbridge.test"
    assert msg.to.display_name == "bell\x07 null\x00 delete\x7f"
    assert msg.from_.tag == "_tok.en-9~'+`*%!"
    assert msg.top_via.branch == "z9hG4bK-.!%61*_+`'~"
    assert msg.call_id == '0123.intmeth()<>:\\"/[]?{}~`@callbridge.test'
    assert msg.headers.get("Extension-!.%*+_`'~") == "caf\u00e9 \u2192 \u65e5\u672c\u8a9e"
    assert parse_message(msg.to_bytes()).to_bytes() == msg.to_bytes()

    esc = parse_message(load("esc01"))
    assert isinstance(esc, Request)
    assert esc.request_uri.user_unescaped == "sips:carol@example.test"
    assert isinstance(esc.from_.uri, SipUri) and esc.from_.uri.user_unescaped == "dave"
    (contact,) = esc.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.user_unescaped == "dave"
    assert contact.uri.param("lr") == ""
    assert contact.uri.param("type") == "val%42"

    esc2 = parse_message(load("esc02"))
    assert isinstance(esc2, Request)
    assert esc2.method == "OPT%49ONS"  # an unknown method, not OPTIONS
    assert len(esc2.headers.get_all("Contact")) == 2
    assert esc2.headers.get("C%6Fntact") == "<sip:alt2@host2.example.test>"
    assert esc2.to.display_name == "%Z%45 not an escape"

    null = parse_message(load("escnull"))
    assert isinstance(null, Request)
    users = [c.uri.user_unescaped for c in null.contacts if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "x\x00\x00y"]
    assert isinstance(null.to.uri, SipUri) and null.to.uri.user_unescaped == "nul\x00end"
    assert null.from_.tag == "n0ll7"


def test_lwsdisp_and_longreq() -> None:
    msg = parse_message(load("lwsdisp"))
    assert msg.to.display_name == "desk"
    assert msg.from_.display_name == "frontdesk" and msg.from_.tag == "nolws4"
    assert msg.contacts[0].display_name == "Front Desk"

    long = parse_message(load("longreq"))
    assert isinstance(long, Request)
    expected_vias = GEN.LONGREQ_SINGLE_VIAS + GEN.LONGREQ_LIST_VIAS + GEN.LONGREQ_FOLDED_VIAS
    assert len(long.vias) == expected_vias == 80
    assert long.top_via.branch == GEN.LONGREQ_BRANCH
    assert long.vias[-1].host == "fold09.example.test" and long.vias[-1].transport == "SCTP"
    assert long.request_uri.user == GEN.LONGREQ_USER
    assert long.to.tag == GEN.LONGREQ_TO_TAG and long.from_.tag == GEN.LONGREQ_FROM_TAG
    assert long.call_id == GEN.LONGREQ_CALL_ID
    assert long.headers.get(GEN.LONGREQ_HEADER_NAME) == "a header with a very long name"
    assert len(long.headers.values("X-Long-Value")) == 300
    assert long.body.endswith(b"0123456789\r\n")
    assert parse_message(long.to_bytes()).to_bytes() == long.to_bytes()


def test_dblreq_ignores_trailing_octets_and_semiuri() -> None:
    msg = parse_message(load("dblreq"))
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER" and msg.body == b""
    assert msg.call_id == "dblreq.900@198.51.100.90"
    semi = parse_message(load("semiuri"))
    assert isinstance(semi, Request)
    uri = semi.request_uri
    assert uri.user == "desk;room=b%402" and uri.params == ()
    assert uri.user_unescaped == "desk;room=b@2"
    assert semi.headers.values("Accept") == [
        "application/sdp",
        "text/plain",
        "multipart/mixed",
        "application/pidf+xml",
        "message/sipfrag",
    ]


def test_transports_and_application_layer_facts() -> None:
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.vias] == [
        "UDP", "SCTP", "TLS", "CARRIER-PIGEON", "TCP", "WSS",
    ]  # fmt: skip
    unk = parse_message(load("unkscm"))
    assert isinstance(unk, Request)
    assert not isinstance(parse_uri(unk.uri), SipUri)  # the UA answers 416
    with pytest.raises(SipParseError) as info:
        _ = unk.request_uri
    assert info.value.status == 416
    novel = parse_message(load("novelsc"))
    assert isinstance(novel, Request)
    assert parse_uri(novel.uri) == AbsoluteUri("im", "front.desk@callbridge.test")
    odd = parse_message(load("unksm2"))
    assert isinstance(odd.to.uri, AbsoluteUri) and odd.to.uri.scheme == "urn"
    assert isinstance(odd.from_.uri, AbsoluteUri) and odd.from_.uri.scheme == "https"
    assert odd.from_.tag == "usm2"
    assert [str(c.uri) for c in odd.contacts] == ["xmpp:victor@callbridge.test"]
    ext = parse_message(load("bext01"))
    assert ext.headers.values("Require") == ["made-up-ext-one", "made-up-ext-two"]  # 420
    assert ext.headers.values("Proxy-Require") == ["no-proxy-knows-this"]
    invut = parse_message(load("invut"))
    assert invut.headers.get("Content-Type") == "application/x-callbridge-mystery"  # 415
    assert invut.body == b"<mystery>42</mystery>\r\n"
    aut = parse_message(load("regaut01"))
    credentials = parse_auth(aut.headers.get("Authorization") or "")
    assert credentials.scheme == "QuantumToken"  # unknown: the registrar challenges
    assert credentials.get("realm") == "callbridge.test"
    sdp = parse_message(load("sdp01"))
    assert sdp.headers.values("Accept") == ["text/x-callbridge-nothing"]  # 406
    assert sdp.body.startswith(b"v=0\r\n")
    reg = parse_message(load("regescrt"))
    (contact,) = reg.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == (("Route", "%3Csip:edge.callbridge.test%3E"),)
    c1 = parse_message(load("cparam01"))
    assert c1.contacts[0].params == (("oddparam", None),)
    assert isinstance(c1.contacts[0].uri, SipUri) and c1.contacts[0].uri.params == ()
    c2 = parse_message(load("cparam02"))
    assert c2.contacts[0].params == ()
    assert isinstance(c2.contacts[0].uri, SipUri)
    assert c2.contacts[0].uri.params == (("oddparam", None),)
    zero = parse_message(load("zeromf"))
    assert isinstance(zero, Request) and zero.max_forwards == 0
    inv = parse_message(load("inv2543"))
    assert isinstance(inv, Request) and inv.max_forwards == 70 and not inv.top_via.is_rfc3261
    assert inv.top_via.branch is None and inv.from_.tag is None
    assert inv.cseq.number == GEN.INV2543_CSEQ
    assert inv.body.startswith(b"v=0")
    bad = parse_message(load("badbranch"))
    assert bad.top_via.branch == "z9hG4bK" and bad.top_via.is_rfc3261
    assert parse_contacts(["*"]).__class__.__name__ == "ContactStar"


def test_response_details() -> None:
    unreason = parse_message(load("unreason"))
    assert isinstance(unreason, Response)
    assert unreason.status == 200
    assert (
        unreason.reason
        == "Parfait \u2014 200 = 8 \u00d7 25; \u00e7a marche! (SIP/2.0 200 OK) \u263a"
    )
    assert unreason.to_bytes().split(b"\r\n", 1)[0] == load("unreason").split(b"\r\n", 1)[0]
    noreason = parse_message(load("noreason"))
    assert isinstance(noreason, Response)
    assert noreason.status == 100 and noreason.reason == ""
    bcast = parse_message(load("bcast"))
    assert isinstance(bcast, Response)
    assert [v.host for v in bcast.vias] == ["198.51.100.26", "255.255.255.255"]


def test_mpart01_binary_body_is_kept_exactly() -> None:
    msg = parse_message(load("mpart01"))
    assert isinstance(msg, Request)
    assert msg.headers.get("Content-Type") == 'multipart/mixed;boundary="cb-boundary-7f3a"'
    assert GEN.MPART_BINARY in msg.body
    assert msg.body.endswith(b"--cb-boundary-7f3a--\r\n")
    assert len(msg.body) == int(msg.headers.get("Content-Length") or "")


def test_all_vectors_frame_identically_on_a_stream() -> None:
    """Vectors with a valid Content-Length frame on a stream as one message."""
    for name in ["wsinv", "esc01", "longreq", "mpart01", "unreason"]:
        data = load(name)
        framer = StreamFramer()
        frames = []
        for i in range(0, len(data), 7):
            frames.extend(framer.feed(data[i : i + 7]))
        assert len(frames) == 1
        assert parse_message(frames[0], stream=True).to_bytes() == parse_message(data).to_bytes()


def test_dblreq_frames_as_two_messages_on_a_stream() -> None:
    framer = StreamFramer()
    frames = framer.feed(load("dblreq"))
    methods = [m.method for m in map(parse_message, frames) if isinstance(m, Request)]
    assert methods == ["REGISTER", "INVITE"]
    assert framer.buffered == 0


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            del buf[pos : pos + rng.randint(1, 20)]
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
        elif op == 2:
            buf[pos:pos] = rng.choice([b"\r\n", b" ", b";", b",", b"<", b">", b'"', b"%", b":"])
        elif op == 3 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        else:
            start = rng.randrange(len(buf) + 1)
            buf[pos:pos] = buf[start : start + rng.randint(1, 40)]
    return bytes(buf)


def test_seeded_fuzz_raises_only_parse_errors() -> None:
    rng = random.Random(4475)
    seeds = [p.read_bytes() for p in sorted(VECTORS.glob("*.dat"))]
    parsed = rejected = 0
    layer = TransactionLayer()
    for i in range(3000):
        data = _mutate(rng.choice(seeds), rng)
        try:
            message = parse_message(data)
        except SipParseError:
            rejected += 1
        else:
            parsed += 1
            message.to_bytes()
            with contextlib.suppress(SipParseError):
                _ = message.contacts  # exercised for crashes
        framer = StreamFramer()
        with contextlib.suppress(SipParseError):
            framer.feed(data)
        layer.receive(data, ("192.0.2.1", 5060), "UDP", now=float(i))
        layer.outgoing()
    assert parsed > 100 and rejected > 100
