"""The OIDC-style token endpoint the uhlive SDK's examples call (h2b.md §1.1).

``POST /realms/<realm>/protocol/openid-connect/token``, form-encoded:

* ``grant_type=client_credentials`` with ``client_id`` and ``client_secret``;
* ``grant_type=password`` with ``client_id``, ``client_secret``, ``username``, ``password``.

The client secret is a callbridge access key (the workspace's credential); for the password
grant the password must be a credential of the same workspace too (user logins come with the
platform API). Success is ``{"access_token", "token_type": "Bearer", "expires_in": 300}``; an
opaque token that must open a ``/bots`` WebSocket within five minutes (the connection may
outlive it). Errors are OAuth 2.0 JSON: 401 ``invalid_client``, else 400 ``invalid_grant`` /
``unsupported_grant_type`` / ``invalid_request``. Unknown form fields are ignored.

The endpoint is served by the main HTTP server, over TLS when callbridge has a certificate.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from callbridge.auth.model import Workspace
from callbridge.auth.service import authenticate

__all__ = ["TOKEN_TTL_S", "TokenIssuer", "token_router"]

#: A token must be used within this many seconds of issue (h2b.md §1.1).
TOKEN_TTL_S: Final = 300
TOKEN_PREFIX: Final = "h2b_"  # noqa: S105 - a prefix, not a secret
MAX_FORM_BYTES: Final = 16 * 1024
MAX_TOKENS: Final = 100_000
DEFAULT_REALM: Final = "uhlive"

token_router = APIRouter()


class TokenIssuer:
    """In-memory opaque tokens (one process), each valid :data:`TOKEN_TTL_S` seconds."""

    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, max_tokens: int = MAX_TOKENS
    ) -> None:
        self._monotonic = monotonic
        self._max = max_tokens
        self._tokens: dict[str, tuple[float, Workspace]] = {}

    def issue(self, workspace: Workspace) -> str:
        """A new token for ``workspace``."""
        self._purge()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._tokens[token] = (self._monotonic() + TOKEN_TTL_S, workspace)
        return token

    def redeem(self, token: str) -> Workspace | None:
        """The workspace of a token still within its validity window."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        expiry, workspace = entry
        if self._monotonic() >= expiry:
            del self._tokens[token]
            return None
        return workspace

    def _purge(self) -> None:
        if len(self._tokens) < self._max:
            return
        now = self._monotonic()
        self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
        while len(self._tokens) >= self._max:  # still full: forget the oldest
            self._tokens.pop(next(iter(self._tokens)))


def issuer_of(app: object) -> TokenIssuer:
    """The app's issuer (created on first use)."""
    state = app.state  # type: ignore[attr-defined]
    issuer = getattr(state, "h2b_tokens", None)
    if not isinstance(issuer, TokenIssuer):
        issuer = TokenIssuer()
        state.h2b_tokens = issuer
    return issuer


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


@token_router.post("/realms/{realm}/protocol/openid-connect/token", include_in_schema=False)
async def token(realm: str, request: Request) -> JSONResponse:
    """Issue an access token (see the module docstring)."""
    expected = getattr(request.app.state, "h2b_realm", DEFAULT_REALM)
    if realm != expected:
        return _oauth_error(404, "invalid_request", f"unknown realm {realm[:64]!r}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _oauth_error(400, "invalid_request", "form too large")
    try:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the form is not UTF-8")
    grant = form.get("grant_type", "")
    if not grant:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant not in ("client_credentials", "password"):
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant[:40]!r}")
    if not form.get("client_id") or not form.get("client_secret"):
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
    store = request.app.state.platform.store
    workspace = await authenticate(store, form["client_secret"])
    if workspace is None:
        return _oauth_error(401, "invalid_client", "bad client credentials")
    if grant == "password":
        if not form.get("username") or not form.get("password"):
            return _oauth_error(400, "invalid_request", "username and password are required")
        user = await authenticate(store, form["password"])
        if user is None or user.id != workspace.id:
            return _oauth_error(400, "invalid_grant", "invalid user credentials")
    access = issuer_of(request.app).issue(workspace)
    return JSONResponse(
        {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_TTL_S},
        headers={"Cache-Control": "no-store"},
    )
