"""Digest authentication for SIP, both directions (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Server (:class:`DigestServer`): challenges with one ``WWW-Authenticate`` (or
``Proxy-Authenticate``) header per algorithm, SHA-256 first and MD5 second (RFC 8760 §2.4).
Nonces are stateless: ``<timestamp>.<salt>.<mac>`` where ``mac`` is an HMAC-SHA-256 over the
timestamp, salt and realm keyed by an injected server secret; a nonce is valid for
``nonce_lifetime`` seconds of the ``now`` the caller passes. An expired nonce with an otherwise
correct response yields :attr:`AuthResult.STALE` (re-challenge with ``stale=true``). The last
``nc`` seen per nonce is remembered (for the nonce's lifetime only) to reject replays. Every
secret comparison uses :func:`hmac.compare_digest`.

Client (:class:`DigestClient`): answers 401/407 challenges with MD5 or SHA-256, ``qop=auth``
when offered, a fresh ``cnonce`` and an ``nc`` counted per nonce. It answers **once** per
challenge: a second challenge for the same realm without ``stale=true`` means the credentials
are wrong and :meth:`DigestClient.respond` returns ``None`` (no loop).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from callbridge.sip.errors import SipParseError
from callbridge.sip.headers import AuthParams, format_auth, parse_auth, parse_uri, uri_equal
from callbridge.sip.ids import IdSource
from callbridge.sip.message import Response

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def digest_hash(algorithm: str, text: str) -> str:
    """H(data) of RFC 7616 §3.4.1 for ``MD5`` or ``SHA-256``."""
    try:
        factory = ALGORITHMS[algorithm.upper()]
    except KeyError:
        raise SipParseError(f"Unsupported digest algorithm {algorithm}") from None
    return factory(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 2617 §3.2.2, RFC 7616 §3.4.1), ``qop=auth`` or none."""
    ha1 = digest_hash(algorithm, f"{username}:{realm}:{password}")
    ha2 = digest_hash(algorithm, f"{method}:{uri}")
    if qop:
        return digest_hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return digest_hash(algorithm, f"{ha1}:{nonce}:{ha2}")


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


class AuthResult(enum.Enum):
    OK = "ok"
    #: Correct response but an expired nonce: challenge again with ``stale=true``.
    STALE = "stale"
    #: Well-formed credentials with a wrong response (wrong password): challenge again.
    WRONG = "wrong"
    #: Missing, malformed, foreign-realm, forged-nonce, replayed or URI-mismatched credentials.
    INVALID = "invalid"


@dataclass(frozen=True)
class Verification:
    result: AuthResult
    username: str | None = None
    reason: str = ""


class DigestServer:
    """Challenges and verifies digest credentials for one realm."""

    def __init__(
        self,
        realm: str,
        secret: bytes,
        ids: IdSource,
        *,
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        if not secret:
            raise ValueError("the nonce secret must not be empty")
        self.realm = realm
        self._secret = secret
        self._ids = ids
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = algorithms
        self.opaque = hmac.new(secret, b"opaque:" + realm.encode(), "sha256").hexdigest()[:16]
        #: nonce -> (timestamp, last nc) for replay detection; pruned as nonces expire.
        self._nc: dict[str, tuple[float, int]] = {}

    def _mac(self, stamp: str, salt: str) -> str:
        data = f"{stamp}.{salt}:{self.realm}".encode()
        return hmac.new(self._secret, data, "sha256").hexdigest()[:32]

    def make_nonce(self, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        salt = self._ids.token(64)
        return f"{stamp}.{salt}.{self._mac(stamp, salt)}"

    def nonce_time(self, nonce: str) -> float | None:
        """The issue time of a nonce we made, or ``None`` when it is not ours."""
        parts = nonce.split(".")
        if len(parts) != 3 or not parts[0] or len(parts[0]) > 16:
            return None
        stamp, salt, mac = parts
        if not hmac.compare_digest(self._mac(stamp, salt), mac):
            return None
        try:
            return int(stamp, 16) / 1000
        except ValueError:
            return None

    def challenge(
        self, now: float, *, stale: bool = False, proxy: bool = False
    ) -> list[tuple[str, str]]:
        """Header fields for a 401 (or 407 with ``proxy``): one per algorithm, same nonce."""
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        nonce = self.make_nonce(now)
        headers = []
        for algorithm in self.algorithms:
            params = [
                ("realm", self.realm),
                ("nonce", nonce),
                ("opaque", self.opaque),
                ("algorithm", algorithm),
                ("qop", "auth"),
            ]
            if stale:
                params.append(("stale", "true"))
            headers.append((name, format_auth("Digest", params, challenge=True)))
        return headers

    def verify(
        self,
        header_value: str,
        *,
        method: str,
        request_uri: str,
        password_for: Mapping[str, str],
        now: float,
    ) -> Verification:
        """Check one ``Authorization``/``Proxy-Authorization`` value.

        ``password_for`` maps user names to passwords.
        """
        try:
            creds = parse_auth(header_value)
        except SipParseError as exc:
            return Verification(AuthResult.INVALID, reason=exc.reason)
        if creds.scheme.lower() != "digest":
            return Verification(AuthResult.INVALID, reason="unsupported auth scheme")
        username = creds.get("username")
        fields = {name: creds.get(name) for name in ("realm", "nonce", "uri", "response")}
        if username is None or any(v is None for v in fields.values()):
            return Verification(AuthResult.INVALID, username, "missing digest parameter")
        if fields["realm"] != self.realm:
            return Verification(AuthResult.INVALID, username, "foreign realm")
        algorithm = (creds.get("algorithm") or "MD5").upper()
        if algorithm not in ALGORITHMS or algorithm not in self.algorithms:
            return Verification(AuthResult.INVALID, username, "unsupported algorithm")
        if not _same_uri(fields["uri"] or "", request_uri):
            return Verification(AuthResult.INVALID, username, "uri does not match Request-URI")
        nonce = fields["nonce"] or ""
        issued = self.nonce_time(nonce)
        if issued is None:
            return Verification(AuthResult.INVALID, username, "unknown nonce")
        qop = creds.get("qop")
        nc_text = creds.get("nc")
        cnonce = creds.get("cnonce")
        if qop is not None and (
            qop.lower() != "auth" or nc_text is None or cnonce is None or not _is_nc(nc_text)
        ):
            return Verification(AuthResult.INVALID, username, "bad qop, nc or cnonce")
        password = password_for.get(username)
        if password is None:
            return Verification(AuthResult.WRONG, username, "unknown user")
        expected = digest_response(
            algorithm=algorithm,
            username=username,
            realm=self.realm,
            password=password,
            method=method,
            uri=fields["uri"] or "",
            nonce=nonce,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
        )
        if not hmac.compare_digest(expected, (fields["response"] or "").lower()):
            return Verification(AuthResult.WRONG, username, "wrong response")
        self._prune(now)
        if now - issued > self.nonce_lifetime or issued - now > self.nonce_lifetime:
            return Verification(AuthResult.STALE, username, "nonce expired")
        if qop is not None and nc_text is not None:
            nc = int(nc_text, 16)
            _issued, last = self._nc.get(nonce, (issued, 0))
            if nc <= last:
                return Verification(AuthResult.INVALID, username, "nonce count replayed")
            self._nc[nonce] = (issued, nc)
        return Verification(AuthResult.OK, username)

    def _prune(self, now: float) -> None:
        for nonce, (issued, _nc) in list(self._nc.items()):
            if now - issued > self.nonce_lifetime:
                del self._nc[nonce]


def _is_nc(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text)


def _same_uri(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return uri_equal(parse_uri(a), parse_uri(b))
    except SipParseError:
        return False


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


@dataclass
class _Challenge:
    header: str  # "Authorization" or "Proxy-Authorization"
    realm: str
    nonce: str
    algorithm: str
    qop: str | None
    opaque: str | None
    nc: int = 0


class DigestClient:
    """Answers digest challenges for one request chain (a call attempt, a registration)."""

    def __init__(self, username: str, password: str, ids: IdSource) -> None:
        self.username = username
        self._password = password
        self._ids = ids
        self._challenges: dict[str, _Challenge] = {}

    def respond(self, response: Response, method: str, uri: str) -> list[tuple[str, str]] | None:
        """Credentials headers for the retry after a 401/407, or ``None`` to give up.

        ``None`` when the response carries no usable Digest challenge, or when a realm we
        already answered challenges again without ``stale=true`` (wrong credentials).
        """
        if response.status not in (401, 407):
            return None
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        source = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        best: dict[str, AuthParams] = {}
        for value in response.headers.get_all(source):
            try:
                challenge = parse_auth(value)
            except SipParseError:
                continue
            algorithm = (challenge.get("algorithm") or "MD5").upper()
            realm = challenge.get("realm")
            if challenge.scheme.lower() != "digest" or algorithm not in ALGORITHMS:
                continue
            if realm is None or challenge.get("nonce") is None:
                continue
            if realm not in best or algorithm == "SHA-256":
                best[realm] = challenge
        if not best:
            return None
        headers: list[tuple[str, str]] = []
        for realm, challenge in best.items():
            stale = (challenge.get("stale") or "").lower() == "true"
            if realm in self._challenges and not stale:
                return None  # answered once already: wrong credentials, never loop
            qops = [q.strip().lower() for q in (challenge.get("qop") or "").split(",")]
            self._challenges[realm] = _Challenge(
                header=header,
                realm=realm,
                nonce=challenge.get("nonce") or "",
                algorithm=(challenge.get("algorithm") or "MD5").upper(),
                qop="auth" if "auth" in qops else None,
                opaque=challenge.get("opaque"),
            )
            headers.append(self.credentials(realm, method, uri))
        return headers

    def credentials(self, realm: str, method: str, uri: str) -> tuple[str, str]:
        """A credentials header for ``realm``'s last challenge (``nc`` incremented)."""
        state = self._challenges[realm]
        state.nc += 1
        nc = f"{state.nc:08x}"
        cnonce = self._ids.token(64)
        response = digest_response(
            algorithm=state.algorithm,
            username=self.username,
            realm=realm,
            password=self._password,
            method=method,
            uri=uri,
            nonce=state.nonce,
            qop=state.qop,
            nc=nc,
            cnonce=cnonce,
        )
        params = [
            ("username", self.username),
            ("realm", realm),
            ("nonce", state.nonce),
            ("uri", uri),
            ("response", response),
            ("algorithm", state.algorithm),
        ]
        if state.qop:
            params += [("qop", state.qop), ("nc", nc), ("cnonce", cnonce)]
        if state.opaque is not None:
            params.append(("opaque", state.opaque))
        return state.header, format_auth("Digest", params, challenge=False)

    @property
    def realms(self) -> list[str]:
        return list(self._challenges)
