"""Digest authentication: RFC 2617 / RFC 7616 known answers, server nonces, client retries."""

from __future__ import annotations

import pytest

from callbridge.sip.auth import (
    AuthResult,
    DigestClient,
    DigestServer,
    digest_hash,
    digest_response,
)
from callbridge.sip.errors import SipParseError
from callbridge.sip.headers import parse_auth
from callbridge.sip.ids import SeededIdSource
from callbridge.sip.message import Headers, Response

URI = "sip:callbridge.example.com"
USERS = {"1001": "s3cret"}


def test_rfc2617_3_5_known_answer() -> None:
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_3_9_1_known_answers(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm,
            username="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop="auth",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == expected
    )


def test_no_qop_and_unknown_algorithm() -> None:
    value = digest_response(
        algorithm="md5", username="u", realm="r", password="p", method="REGISTER",
        uri="sip:r", nonce="n",
    )  # fmt: skip
    ha1 = digest_hash("MD5", "u:r:p")
    ha2 = digest_hash("MD5", "REGISTER:sip:r")
    assert value == digest_hash("MD5", f"{ha1}:n:{ha2}")
    with pytest.raises(SipParseError):
        digest_hash("SHA-512-256", "x")


def server() -> DigestServer:
    return DigestServer("callbridge", b"k" * 32, SeededIdSource(7))


def challenge_response(srv: DigestServer, now: float, **kw: bool) -> Response:
    headers = Headers()
    for name, value in srv.challenge(now, **kw):
        headers.add(name, value)
    return Response(headers=headers, status=407 if kw.get("proxy") else 401)


def test_server_challenge_offers_sha256_then_md5() -> None:
    srv = server()
    (h1, v1), (h2, v2) = srv.challenge(1000.0)
    assert h1 == h2 == "WWW-Authenticate"
    c1, c2 = parse_auth(v1), parse_auth(v2)
    assert c1.get("algorithm") == "SHA-256" and c2.get("algorithm") == "MD5"
    assert c1.get("nonce") == c2.get("nonce")
    assert c1.get("qop") == "auth" and c1.get("realm") == "callbridge"
    assert 'qop="auth"' in v1 and c1.get("stale") is None
    assert srv.nonce_time(c1.get("nonce") or "") == 1000.0
    stale = parse_auth(srv.challenge(1.0, stale=True, proxy=True)[0][1])
    assert stale.get("stale") == "true"
    assert srv.challenge(1.0, proxy=True)[0][0] == "Proxy-Authenticate"
    with pytest.raises(ValueError):
        DigestServer("r", b"", SeededIdSource())


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip_client_server(algorithm: str) -> None:
    srv = DigestServer("callbridge", b"k" * 32, SeededIdSource(7), algorithms=(algorithm,))
    client = DigestClient("1001", "s3cret", SeededIdSource(8))
    (header,) = client.respond(challenge_response(srv, 100.0), "REGISTER", URI) or []
    assert header[0] == "Authorization"
    creds = parse_auth(header[1])
    assert creds.get("algorithm") == algorithm and creds.get("nc") == "00000001"
    assert creds.get("qop") == "auth" and creds.get("opaque") == srv.opaque
    result = srv.verify(
        header[1], method="REGISTER", request_uri=URI, password_for=USERS, now=101.0
    )
    assert result.result is AuthResult.OK and result.username == "1001"
    # Replay of the same nc is refused; the next nc on the same nonce is fine.
    again = srv.verify(header[1], method="REGISTER", request_uri=URI, password_for=USERS, now=102.0)
    assert again.result is AuthResult.INVALID and "replayed" in again.reason
    _name, value = client.credentials("callbridge", "REGISTER", URI)
    assert parse_auth(value).get("nc") == "00000002"
    ok = srv.verify(value, method="REGISTER", request_uri=URI, password_for=USERS, now=103.0)
    assert ok.result is AuthResult.OK


def test_client_prefers_sha256_and_answers_once() -> None:
    srv = server()
    client = DigestClient("1001", "wrong", SeededIdSource(8))
    first = client.respond(challenge_response(srv, 100.0), "INVITE", URI)
    assert first is not None and parse_auth(first[0][1]).get("algorithm") == "SHA-256"
    verdict = srv.verify(
        first[0][1], method="INVITE", request_uri=URI, password_for=USERS, now=100.5
    )
    assert verdict.result is AuthResult.WRONG
    # A second challenge without stale=true means the password is wrong: give up, no loop.
    assert client.respond(challenge_response(srv, 101.0), "INVITE", URI) is None
    assert client.realms == ["callbridge"]


def test_client_retries_on_stale_and_handles_407() -> None:
    srv = server()
    client = DigestClient("1001", "s3cret", SeededIdSource(8))
    first = client.respond(challenge_response(srv, 100.0, proxy=True), "INVITE", URI)
    assert first is not None and first[0][0] == "Proxy-Authorization"
    second = client.respond(challenge_response(srv, 500.0, proxy=True, stale=True), "INVITE", URI)
    assert second is not None
    assert parse_auth(second[0][1]).get("nc") == "00000001"  # new nonce, nc restarts


def test_client_ignores_unusable_challenges() -> None:
    client = DigestClient("u", "p", SeededIdSource(1))
    assert client.respond(Response(status=403), "INVITE", URI) is None
    headers = Headers(
        [
            ("WWW-Authenticate", "Basic realm=x"),
            ("WWW-Authenticate", 'Digest realm="x", nonce="n", algorithm=SHA-512-256'),
            ("WWW-Authenticate", 'Digest nonce="n"'),
            ("WWW-Authenticate", "Digest realm"),
        ]
    )
    assert client.respond(Response(headers=headers, status=401), "INVITE", URI) is None
    # No qop offered: RFC 2069-style response without nc/cnonce.
    plain = Headers([("WWW-Authenticate", 'Digest realm="x", nonce="n"')])
    creds = client.respond(Response(headers=plain, status=401), "INVITE", URI)
    assert creds is not None
    parsed = parse_auth(creds[0][1])
    assert parsed.get("qop") is None and parsed.get("nc") is None
    assert parsed.get("algorithm") == "MD5" and parsed.get("opaque") is None


def test_stale_nonce_with_correct_response() -> None:
    srv = server()
    client = DigestClient("1001", "s3cret", SeededIdSource(8))
    creds = client.respond(challenge_response(srv, 100.0), "REGISTER", URI)
    assert creds is not None
    late = srv.verify(
        creds[0][1], method="REGISTER", request_uri=URI, password_for=USERS, now=401.0
    )
    assert late.result is AuthResult.STALE
    in_time = srv.verify(
        creds[0][1], method="REGISTER", request_uri=URI, password_for=USERS, now=399.0
    )
    assert in_time.result is AuthResult.OK


def _creds(srv: DigestServer, **overrides: str | None) -> str:
    nonce = srv.make_nonce(100.0)
    params = {
        "username": "1001",
        "realm": "callbridge",
        "nonce": nonce,
        "uri": URI,
        "algorithm": "MD5",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "abc",
    }
    params.update(overrides)
    response = digest_response(
        algorithm="MD5" if params["algorithm"] == "SHA-512" else params["algorithm"] or "MD5",
        username="1001",
        realm="callbridge",
        password="s3cret",
        method="REGISTER",
        uri=URI,
        nonce=params["nonce"] or "",
        qop=params["qop"],
        nc=params["nc"],
        cnonce=params["cnonce"],
    )
    if "response" not in overrides:
        params["response"] = response
    return "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items() if v is not None)


@pytest.mark.parametrize(
    ("overrides", "result", "reason"),
    [
        ({}, AuthResult.OK, ""),
        ({"realm": "other"}, AuthResult.INVALID, "realm"),
        ({"algorithm": "SHA-512"}, AuthResult.INVALID, "algorithm"),
        ({"uri": "sip:elsewhere.example.com"}, AuthResult.INVALID, "uri"),
        ({"uri": "not a uri"}, AuthResult.INVALID, "uri"),
        ({"nonce": "forged.nonce.value"}, AuthResult.INVALID, "nonce"),
        ({"nonce": "zz.salt.mac"}, AuthResult.INVALID, "nonce"),
        ({"qop": "auth-int"}, AuthResult.INVALID, "qop"),
        ({"nc": "1"}, AuthResult.INVALID, "qop"),
        ({"cnonce": None}, AuthResult.INVALID, "qop"),
        ({"response": "0" * 32}, AuthResult.WRONG, "wrong"),
        ({"username": "nobody"}, AuthResult.WRONG, "unknown user"),
        ({"username": None}, AuthResult.INVALID, "missing"),
        ({"qop": None, "nc": None, "cnonce": None}, AuthResult.OK, ""),
        ({"uri": "SIP:CALLBRIDGE.example.com"}, AuthResult.WRONG, "wrong"),
    ],
)
def test_server_verification_cases(
    overrides: dict[str, str | None], result: AuthResult, reason: str
) -> None:
    srv = server()
    verdict = srv.verify(
        _creds(srv, **overrides), method="REGISTER", request_uri=URI, password_for=USERS,
        now=150.0,
    )  # fmt: skip
    assert verdict.result is result
    assert reason in verdict.reason


def test_server_rejects_other_schemes_and_garbage() -> None:
    srv = server()
    for value in ["NoOneKnowsThisScheme opaque-data=here", "Digest realm", ""]:
        verdict = srv.verify(value, method="REGISTER", request_uri=URI, password_for=USERS, now=1.0)
        assert verdict.result is AuthResult.INVALID
    assert srv.nonce_time("a.b") is None
    mac_ok = srv.make_nonce(5.0)
    assert srv.nonce_time(mac_ok + "x") is None


def test_nonce_counts_are_pruned_after_lifetime() -> None:
    srv = server()
    creds = _creds(srv)
    first = srv.verify(creds, method="REGISTER", request_uri=URI, password_for=USERS, now=101.0)
    assert first.result is AuthResult.OK
    assert srv._nc
    late = srv.verify(creds, method="REGISTER", request_uri=URI, password_for=USERS, now=1000.0)
    assert late.result is AuthResult.STALE
    assert not srv._nc
