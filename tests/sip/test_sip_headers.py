"""URIs, name-addr, Via, CSeq, Contact, auth parameters and §19.1.4 URI comparison."""

from __future__ import annotations

import pytest

from callbridge.sip.errors import SipParseError
from callbridge.sip.headers import (
    AbsoluteUri,
    ContactStar,
    SipUri,
    escape,
    format_auth,
    format_hostport,
    get_param,
    iter_tokens,
    parse_auth,
    parse_contacts,
    parse_cseq,
    parse_hostport,
    parse_name_addr,
    parse_params,
    parse_sip_uri,
    parse_uri,
    parse_via,
    quote,
    set_param,
    split_outside,
    unescape,
    unquote,
    uri_equal,
)


def test_full_sip_uri_components_and_round_trip() -> None:
    text = "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi%20there&x=1"
    uri = parse_sip_uri(text)
    assert uri.scheme == "sips"
    assert uri.user == "alice" and uri.password == "secret"
    assert uri.host == "[2001:db8::1]" and uri.port == 5061
    assert uri.params == (("transport", "tcp"), ("lr", None))
    assert uri.transport == "tcp" and uri.param("lr") == "" and uri.param("x") is None
    assert uri.headers == (("subject", "hi%20there"), ("x", "1"))
    assert str(uri) == text
    assert str(uri.without_headers()) == "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr"
    assert uri.with_param("transport", "udp").transport == "udp"
    assert uri.with_param("maddr", "1.2.3.4").param("maddr") == "1.2.3.4"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:user@",
        "sip:user@exa mple.com",
        "sip:user@example.com:99999",
        "sip:user@example.com:5o60",
        "sip:user@[::1",
        "sip:user@[zz::1]",
        "sip:us<er@example.com",
        "sip:user@example.com;",
        "sip:user@example.com;a=",
        "sip:user@example.com?x",
        "sip:user%4@example.com",
        "sip:user:p@ss@example.com",
        "1sip:foo",
        "nocolon",
        "tel:",
        "http:<x>",
    ],
)
def test_bad_uris_raise_parse_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_absolute_uris_and_sip_only_helper() -> None:
    uri = parse_uri("TEL:+1-212-555-0100")
    assert uri == AbsoluteUri("tel", "+1-212-555-0100")
    assert str(uri) == "tel:+1-212-555-0100"
    with pytest.raises(SipParseError):
        parse_sip_uri("tel:+1")


def test_escaping() -> None:
    assert unescape("I%20have%20spaces") == "I have spaces"
    assert unescape("%C3%A9t%C3%A9") == "été"
    assert escape("a b@c", frozenset("abc")) == "a%20b%40c"
    assert escape("é", frozenset()) == "%C3%A9"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("sip:a@b;transport=UDP", "sip:a@b;transport=udp"),
        ("SIP:a@B", "sip:a@b"),
        ("tel:+1", "tel:+1"),
    ],
)
def test_rfc3261_19_1_4_equivalent_uris(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:a@b", "sips:a@b"),
        ("sip:a@b;user=phone", "sip:a@b"),
        ("sip:a@b;maddr=1.2.3.4", "sip:a@b"),
        ("sip:a@b;ttl=1", "sip:a@b;ttl=2"),
        ("sip:a:x@b", "sip:a@b"),
        ("sip:a:x@b", "sip:a:y@b"),
        ("sip:b", "sip:a@b"),
        ("sip:a@b", "tel:a"),
        ("tel:+1", "tel:+2"),
    ],
)
def test_rfc3261_19_1_4_different_uris(a: str, b: str) -> None:
    assert not uri_equal(parse_uri(a), parse_uri(b))
    assert not uri_equal(parse_uri(b), parse_uri(a))


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Alice \\"A\\"" <sip:alice@example.com;transport=tcp>;tag=abc;x')
    assert na.display_name == 'Alice "A"'
    assert isinstance(na.uri, SipUri) and na.uri.transport == "tcp"
    assert na.tag == "abc" and na.param("x") == ""
    assert str(na) == '"Alice \\"A\\"" <sip:alice@example.com;transport=tcp>;tag=abc;x'
    plain = parse_name_addr("sip:bob@example.com ; tag = 77")
    assert plain.display_name is None and plain.tag == "77"
    assert isinstance(plain.uri, SipUri) and plain.uri.params == ()
    tokens = parse_name_addr("Bob  Smith <sip:bob@example.com>")
    assert tokens.display_name == "Bob Smith"
    assert tokens.with_tag("t9").tag == "t9"
    contact = parse_name_addr("<sip:c@h>;expires=60;q=0.5")
    assert contact.expires == 60 and contact.q == 0.5
    odd = parse_name_addr("<sip:c@h>;expires=soon;q=high")
    assert odd.expires is None and odd.q is None
    assert parse_name_addr("<sip:c@h>").q is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"unterminated <sip:a@b>',
        '"name" sip:a@b',
        "Bell, Alexander <sip:a@b>",
        "< sip:a@b >",
        "<sip:a@b",
        "<sip:a@b> junk",
        "<sip:a@b>;;",
        "<sip:a@b>;tag=",
        '<sip:a@b>;x="open',
        "sip:a@b?x=y",
        "sip:a@b junk",
        "<sip:a@b>;a b=c",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_via_forms() -> None:
    via = parse_via("SIP / 2.0 / udp  host.example.com:5070 ; branch = z9hG4bKx ; rport ;ttl=3")
    assert via.transport == "UDP" and via.host == "host.example.com" and via.port == 5070
    assert via.branch == "z9hG4bKx" and via.is_rfc3261
    assert via.has_rport and via.rport is None and via.received is None
    assert via.sent_by == ("host.example.com", 5070)
    filled = via.with_param("rport", "4000").with_param("received", "192.0.2.1")
    assert filled.rport == 4000 and filled.received == "192.0.2.1"
    assert str(filled) == (
        "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bKx;rport=4000;ttl=3;received=192.0.2.1"
    )
    v6 = parse_via("SIP/2.0/TCP [2001:db8::9]:5060;branch=z9hG4bK1")
    assert v6.host == "[2001:db8::9]" and v6.transport == "TCP"
    old = parse_via("SIP/2.0/UDP iftgw.example.com")
    assert old.branch is None and not old.is_rfc3261


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP host;received",
        "SIP/2.0/UDP host;ttl=999",
        "SIP/2.0/UDP host;;",
        "SI@P/2.0/UDP host",
        "SIP/2.0/UDP ho$t",
    ],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_cseq() -> None:
    cseq = parse_cseq(" 0009   INVITE ")
    assert cseq.number == 9 and cseq.method == "INVITE" and str(cseq) == "9 INVITE"
    assert parse_cseq("4294967295 BYE").number == 2**32 - 1
    for bad in ["4294967296 BYE", "1", "x INVITE", "1 INV ITE", "-1 BYE", "1 <BYE>"]:
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_contacts_and_star() -> None:
    contacts = parse_contacts(['<sip:a@h1>;expires=30, "B, C" <sip:b@h2>', "sip:c@h3;q=0.1"])
    assert isinstance(contacts, list) and len(contacts) == 3
    assert contacts[1].display_name == "B, C"
    assert isinstance(parse_contacts([" * "]), ContactStar)
    assert str(ContactStar()) == "*"
    with pytest.raises(SipParseError):
        parse_contacts(["*, <sip:a@b>"])


def test_params_and_splitting() -> None:
    params = parse_params(' a = 1 ; b ; c="x;y" ; d=[::1]')
    assert params == (("a", "1"), ("b", None), ("c", '"x;y"'), ("d", "[::1]"))
    assert get_param(params, "B") == "" and get_param(params, "z") is None
    assert set_param(params, "A", "2")[0] == ("a", "2")
    assert set_param(params, "e", None)[-1] == ("e", None)
    assert unquote('"x;y"') == "x;y" and unquote("plain") == "plain" and unquote(None) is None
    assert unquote('"a"b') == '"a"b'
    assert quote('a"b\\') == '"a\\"b\\\\"'
    assert split_outside('a, "b,c", <d,e>, f', ",") == ["a", ' "b,c"', " <d,e>", " f"]
    with pytest.raises(SipParseError):
        split_outside('"open, x', ",")
    with pytest.raises(SipParseError):
        parse_params('c="x" y')
    assert list(iter_tokens(" a, ,b ,")) == ["a", "b"]


def test_hostport() -> None:
    assert parse_hostport("example.com") == ("example.com", None)
    assert parse_hostport("[::1]:5060") == ("[::1]", 5060)
    assert format_hostport("::1", 5060) == "[::1]:5060"
    assert format_hostport("h", None) == "h"
    for bad in ["[::1]x", "h:", "h:123456", ":5060"]:
        with pytest.raises(SipParseError):
            parse_hostport(bad)


def test_auth_params() -> None:
    challenge = parse_auth(
        'Digest realm="callbridge", nonce="abc,def", algorithm=SHA-256, qop="auth,auth-int",'
        " stale=TRUE"
    )
    assert challenge.scheme == "Digest"
    assert challenge.get("realm") == "callbridge"
    assert challenge.get("NONCE") == "abc,def"
    assert challenge.get("qop") == "auth,auth-int"
    assert challenge.get("stale") == "TRUE"
    assert parse_auth("NoOneKnowsThisScheme opaque-data=here").get("opaque-data") == "here"
    assert parse_auth("Basic").params == {}
    text = format_auth(
        "Digest", [("realm", "r"), ("qop", "auth"), ("nc", "00000001")], challenge=False
    )
    assert text == 'Digest realm="r", qop=auth, nc=00000001'
    assert 'qop="auth"' in format_auth("Digest", [("qop", "auth")], challenge=True)
    for bad in ["", "Digest realm", 'Digest realm="x" y', "Digest realm=a b", "Digest realm="]:
        with pytest.raises(SipParseError):
            parse_auth(bad)
