"""Bearer credentials of an RTVBP upgrade (RTVBP spec §1.2).

* :class:`StaticToken` — compare a shared secret in constant time.
* :class:`JwtValidator` — the babelforce Cloud contract: RS256 only, PEM public key(s) given out
  of band (no JWKS), ``iss`` = ``auth.babelforce.com``, ``sub`` =
  ``com.babelforce.svc.telephony.realtime``, ``exp`` required (no lifetime is assumed), ``aud``
  one of the served account ids, ``iat`` checked when present, ``kid`` only picks among keys
  during rotation — the signature decides.
* :func:`mint_jwt` — what callbridge as voice sends when a bridge is configured with a key.

Tokens are never logged.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import jwt

__all__ = [
    "BABELFORCE_ISSUER",
    "BABELFORCE_SUBJECT",
    "Authenticator",
    "JwtValidator",
    "StaticToken",
    "mint_jwt",
]

BABELFORCE_ISSUER: Final = "auth.babelforce.com"
BABELFORCE_SUBJECT: Final = "com.babelforce.svc.telephony.realtime"
DEFAULT_KEY_ID: Final = "jwt-rsa-2048-v1"
DEFAULT_LIFETIME_SECONDS: Final = 3600


class Authenticator(Protocol):
    """Decides on the bearer token of an upgrade (``None``: no credential was sent)."""

    def __call__(self, token: str | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class StaticToken:
    """Accept exactly one shared secret."""

    secret: str

    def __call__(self, token: str | None) -> bool:
        if token is None:
            return False
        return hmac.compare_digest(token.encode(), self.secret.encode())


@dataclass(slots=True)
class JwtValidator:
    """Validate babelforce Cloud JWTs (§1.2). ``keys`` maps ``kid`` to a PEM public key."""

    keys: Mapping[str, str | bytes]
    accounts: Iterable[str]
    leeway_seconds: float = 5.0
    last_error: str = field(default="", repr=False)

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims; raises a ``jwt.PyJWTError`` saying what failed."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise jwt.InvalidAlgorithmError("only RS256 is accepted")
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self.keys:
            candidates = [self.keys[kid]]
        else:
            candidates = list(self.keys.values())
        if not candidates:
            raise jwt.InvalidKeyError("no public key configured")
        accounts = list(self.accounts)
        error: jwt.InvalidTokenError = jwt.InvalidSignatureError("no key matched")
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256"],
                    audience=accounts,
                    issuer=BABELFORCE_ISSUER,
                    leeway=self.leeway_seconds,
                    options={"require": ["exp", "iss", "sub", "aud"]},
                )
            except jwt.InvalidSignatureError as exc:
                error = exc
                continue
            if claims.get("sub") != BABELFORCE_SUBJECT:
                raise jwt.InvalidTokenError("unexpected subject")
            return claims
        raise error

    def __call__(self, token: str | None) -> bool:
        if token is None:
            self.last_error = "no bearer token"
            return False
        try:
            self.claims(token)
        except jwt.PyJWTError as exc:
            self.last_error = type(exc).__name__
            return False
        return True


def mint_jwt(
    private_key_pem: str | bytes,
    *,
    account_id: str,
    key_id: str = DEFAULT_KEY_ID,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    now: float | None = None,
) -> str:
    """An RS256 JWT shaped like babelforce Cloud's (``aud`` = ``account_id``)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": BABELFORCE_ISSUER,
        "sub": BABELFORCE_SUBJECT,
        "aud": account_id,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, private_key_pem, algorithm="RS256", headers={"kid": key_id})
