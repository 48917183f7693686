"""Message parsing, limits, validation, serialisation, stream framing and responses."""

from __future__ import annotations

import pytest

from callbridge.sip.errors import SipParseError
from callbridge.sip.message import (
    KEEPALIVE,
    Headers,
    Limits,
    Request,
    Response,
    StreamFramer,
    canonical_name,
    error_response,
    make_response,
    parse_message,
)

BASE = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    "Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK0,"
    " SIP/2.0/UDP p2.example.com;branch=z9hG4bK9\r\n"
    "Max-Forwards: 70\r\n"
    "f: <sip:alice@example.com>;tag=1\r\n"
    "t: <sip:bob@example.com>\r\n"
    "i: abc@192.0.2.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "m: <sip:alice@192.0.2.1>\r\n"
    "X-Custom: one\r\n"
    "x-custom: two\r\n"
    "l: 4\r\n"
    "\r\n"
    "body"
)


def msg(text: str = BASE) -> Request | Response:
    return parse_message(text.encode())


def test_compact_forms_multiple_instances_and_canonical_output() -> None:
    m = msg()
    assert isinstance(m, Request)
    assert m.call_id == "abc@192.0.2.1"
    assert [v.host for v in m.vias] == ["192.0.2.1", "proxy.example.com", "p2.example.com"]
    assert m.headers.get_all("X-CUSTOM") == ["one", "two"]
    assert m.body == b"body"
    out = m.to_bytes().decode()
    assert "Call-ID: abc@192.0.2.1\r\n" in out and "From: <sip:alice" in out
    assert "Content-Length: 4\r\n\r\nbody" in out
    assert out.index("X-Custom: one") < out.index("x-custom: two")
    assert canonical_name("WWW-AUTHENTICATE") == "WWW-Authenticate"
    assert canonical_name("cseq") == "CSeq" and canonical_name("X-Odd") == "X-Odd"
    assert "call-id" in m.headers and 5 not in m.headers


def test_headers_container() -> None:
    h = Headers([("x-a", "1"), ("X-B", "2"), ("X-A", "3"), ("b", "r")])
    assert h.get("Referred-By") == "r"  # compact form
    h.set("X-A", "9")
    assert list(h) == [("X-A", "9"), ("X-B", "2"), ("Referred-By", "r")]
    h.set("new", "x")
    h.add_first("Via", "v")
    assert next(iter(h)) == ("Via", "v")
    h.remove("x-b")
    assert h.get("X-B") is None and len(h) == 4
    assert h.copy() == h and h != "x"
    assert "Headers(" in repr(h)
    h2 = Headers([("Route", "<sip:a;lr>, <sip:b;lr>"), ("Route", "<sip:c>")])
    assert h2.values("route") == ["<sip:a;lr>", "<sip:b;lr>", "<sip:c>"]


def test_response_parsing_and_round_trip() -> None:
    text = (
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
        "To: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    r = parse_message(b"\r\n\r\n" + text.encode())  # leading CRLFs are ignored
    assert isinstance(r, Response) and r.status == 180 and r.reason == "Ringing"
    assert r.to_bytes().decode() == text
    r2 = parse_message(text.replace("180 Ringing", "100").encode())
    assert isinstance(r2, Response) and r2.reason == ""


@pytest.mark.parametrize(
    ("mutation", "status", "fragment"),
    [
        (("SIP/2.0\r\n", "SIP/3.0\r\n"), 505, "Version"),
        (("INVITE sip", "INVITE  sip"), 400, "request line"),
        (("INVITE sip", "INV<ITE sip"), 400, "method"),
        (("SIP/2.0\r\nv", "SIP/2.0X\r\nv"), 400, "request line"),
        (("Max-Forwards: 70", "Max-Forwards: 256"), 400, "Max-Forwards"),
        (("Max-Forwards: 70", "Max-Forwards: -1"), 400, "Max-Forwards"),
        (("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400, "CSeq method"),
        (("CSeq: 1 INVITE", "CSeq: 99999999999 INVITE"), 400, "CSeq"),
        (("l: 4", "l: 40"), 400, "Content-Length"),
        (("l: 4", "l: four"), 400, "Content-Length"),
        (("i: abc@192.0.2.1", "i: a b"), 400, "Call-ID"),
        (("X-Custom: one", "X Custom one"), 400, "header line"),
        (("X-Custom: one", "Expires: soon"), 400, "Expires"),
        (("X-Custom: one", "Date: yesterday"), 400, "Date"),
        (("m: <sip:alice@192.0.2.1>", "m: *, <sip:a@b>"), 400, "Contact"),
        (("sip:bob@example.com SIP", "<sip:bob@example.com> SIP"), 400, "Request-URI"),
        (("sip:bob@example.com SIP", "sip:bob@ex ample SIP"), 400, "request line"),
        (("sip:bob@example.com SIP", "sip:bob@@example.com SIP"), 400, "Request-URI"),
        (("\r\n\r\nbody", "\r\nbody"), 400, "empty line"),
        (("CSeq: 1 INVITE\r\n", ""), 400, "Missing CSeq"),
    ],
)
def test_request_errors(mutation: tuple[str, str], status: int, fragment: str) -> None:
    old, new = mutation
    assert old in BASE
    with pytest.raises(SipParseError) as info:
        msg(BASE.replace(old, new, 1))
    assert info.value.status == status
    assert fragment.lower() in info.value.reason.lower()
    assert info.value.is_request is True


@pytest.mark.parametrize(
    "start",
    ["SIP/2.0 99 Low", "SIP/2.0 700 High", "SIP/2.0 2000 Big", "SIP/2.0 abc X", "SIP/1.0 200 OK"],
)
def test_bad_status_lines(start: str) -> None:
    text = f"{start}\r\nVia: SIP/2.0/UDP h\r\n\r\n"
    with pytest.raises(SipParseError) as info:
        parse_message(text.encode())
    assert info.value.is_request is False


def test_limits() -> None:
    limits = Limits(max_message=2000, max_line=100, max_headers=12)
    with pytest.raises(SipParseError) as info:
        parse_message(b"x" * 3000, limits=limits)
    assert info.value.status == 513
    long_header = BASE.replace("X-Custom: one", "X-Custom: " + "a" * 200)
    with pytest.raises(SipParseError) as info:
        parse_message(long_header.encode(), limits=limits)
    assert info.value.status == 513
    folded = BASE.replace("X-Custom: one", "X-Custom: " + "a" * 60 + "\r\n " + "b" * 60)
    with pytest.raises(SipParseError):
        parse_message(folded.encode(), limits=limits)
    long_start = BASE.replace("sip:bob@example.com SIP", "sip:" + "b" * 200 + "@x SIP")
    with pytest.raises(SipParseError):
        parse_message(long_start.encode(), limits=limits)
    many = BASE.replace("X-Custom: one\r\n", "X-A: 1\r\n" * 10)
    with pytest.raises(SipParseError) as info:
        parse_message(many.encode(), limits=limits)
    assert "Too many" in info.value.reason


def test_folding_and_continuation_errors() -> None:
    folded = BASE.replace("CSeq: 1 INVITE", "CSeq: 1\r\n\tINVITE")
    m = msg(folded)
    assert m.cseq.method == "INVITE"
    with pytest.raises(SipParseError):
        parse_message(b"INVITE sip:a@b SIP/2.0\r\n continuation\r\n\r\n")


def test_stream_requires_content_length() -> None:
    without = BASE.replace("l: 4\r\n", "")
    m = msg(without)
    assert m.body == b"body"  # datagram: the body runs to the end
    with pytest.raises(SipParseError):
        parse_message(without.encode(), stream=True)


def test_stream_framer_splits_and_joins() -> None:
    one = BASE.encode()
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    frames = framer.feed(one[:10])
    assert frames == [] and framer.buffered > 0
    frames = framer.feed(one[10:] + one + KEEPALIVE + one[:50])
    assert frames == [one, one, KEEPALIVE]
    assert framer.feed(one[50:]) == [one]
    assert framer.buffered == 0
    folded_cl = BASE.replace("l: 4", "Content-Length:\r\n 4").encode()
    assert StreamFramer().feed(folded_cl) == [folded_cl]


@pytest.mark.parametrize(
    "data",
    [
        BASE.replace("l: 4\r\n", "").encode(),
        BASE.replace("l: 4", "l: x").encode(),
        BASE.replace("l: 4", "l: 4\r\nContent-Length: 4").encode(),
    ],
)
def test_stream_framer_errors(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


def test_stream_framer_limits() -> None:
    framer = StreamFramer(Limits(max_message=100))
    with pytest.raises(SipParseError):
        framer.feed(b"x" * 101)
    with pytest.raises(SipParseError):
        StreamFramer(Limits(max_message=300)).feed(BASE.replace("l: 4", "l: 900").encode())


def test_make_response_copies_headers_and_adds_tag() -> None:
    m = msg()
    assert isinstance(m, Request)
    m.headers.add("Timestamp", "54")
    r = make_response(m, 486, to_tag="xyz")
    assert r.reason == "Busy Here"
    assert r.headers.get_all("Via") == m.headers.get_all("Via")
    assert r.to.tag == "xyz" and r.cseq == m.cseq and r.call_id == m.call_id
    trying = make_response(m, 100, to_tag="xyz")
    assert trying.to.tag is None and trying.headers.get("Timestamp") == "54"
    tagged = make_response(make_response_request_with_tag(), 200, to_tag="new")
    assert tagged.to.tag == "old"
    assert make_response(m, 299).reason == "Unknown"
    parse_message(r.to_bytes())


def make_response_request_with_tag() -> Request:
    m = msg(BASE.replace("t: <sip:bob@example.com>", "t: <sip:bob@example.com>;tag=old"))
    assert isinstance(m, Request)
    return m


def test_error_response_needs_the_mandatory_headers() -> None:
    with pytest.raises(SipParseError) as info:
        msg(BASE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"))
    answer = error_response(info.value)
    assert answer is not None and answer.status == 400
    assert answer.headers.get_all("Via") == msg().headers.get_all("Via")
    with pytest.raises(SipParseError) as info:
        msg(BASE.replace("i: abc@192.0.2.1\r\n", "").replace("CSeq: 1 INVITE", "CSeq: x"))
    assert error_response(info.value) is None


def test_message_properties() -> None:
    m = msg()
    assert isinstance(m, Request)
    assert m.max_forwards == 70
    assert m.request_uri.user == "bob"
    assert m.contacts[0].uri.__class__.__name__ == "SipUri"
    tel = msg(BASE.replace("sip:bob@example.com SIP", "tel:+15551234 SIP"))
    assert isinstance(tel, Request)
    with pytest.raises(SipParseError) as info:
        _ = tel.request_uri
    assert info.value.status == 416
    star = msg(BASE.replace("m: <sip:alice@192.0.2.1>", "m: *"))
    assert star.contacts == []
    empty = Response()
    with pytest.raises(SipParseError):
        _ = empty.top_via


def test_malformed_ack_is_never_answered() -> None:
    """RFC 3261 §17.2.1: no response is ever sent to an ACK, even a broken one."""
    from callbridge.sip.errors import SipParseError
    from callbridge.sip.message import error_response, parse_message

    bad_ack = (
        b"ACK sip:bob@callbridge.test SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ack1\r\n"
        b"From: <sip:alice@example.test>;tag=a1\r\n"
        b"To: <sip:bob@callbridge.test>;tag=b1\r\n"
        b"Call-ID: ack-test@example.test\r\n"
        b"CSeq: not-a-number ACK\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    try:
        parse_message(bad_ack)
    except SipParseError as exc:
        assert exc.is_request and exc.method == "ACK"
        assert error_response(exc) is None
    else:
        raise AssertionError("the malformed ACK parsed")
    bad_invite = bad_ack.replace(b"ACK sip:", b"INVITE sip:").replace(b" ACK\r\n", b" INVITE\r\n")
    try:
        parse_message(bad_invite)
    except SipParseError as exc:
        answer = error_response(exc)
        assert answer is not None and answer.status == 400
    else:
        raise AssertionError("the malformed INVITE parsed")
