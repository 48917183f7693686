"""Credentials of ``/v1.0`` requests (platform API spec §3).

Lookup order — the first form **present** decides, access keys are looked at only when no
token form is present:

1. cookie ``token``; 2. query ``?token=``; 3. header ``Authorization: Bearer <value>``;
4. cookie ``accesskey``; 5. query ``?accesskey=``.

Values are classified by shape: ``vb_…`` is an access key (accepted in every form), three
dot-separated segments a JWT. Nothing found → 401 ``AUTHENTICATION_REQUIRED``; anything that
does not authenticate → 401 ``INVALID_CREDENTIALS``. JWT login is not implemented yet, so a
JWT never authenticates (401 ``INVALID_CREDENTIALS``).
"""

from __future__ import annotations

from fastapi import Request

from callbridge.auth.model import Workspace
from callbridge.auth.service import authenticate
from callbridge.platform import Platform
from callbridge.server.errors import ApiError

BEARER = "Bearer "


def presented_credential(request: Request) -> str | None:
    """The credential the request carries, by the spec's lookup order (``None``: none)."""
    authorization = request.headers.get("authorization")
    bearer = (
        authorization[len(BEARER) :] if authorization and authorization.startswith(BEARER) else None
    )
    for value in (
        request.cookies.get("token"),
        request.query_params.get("token"),
        bearer,
        request.cookies.get("accesskey"),
        request.query_params.get("accesskey"),
    ):
        if value is not None:
            return value
    return None


async def require_workspace(request: Request) -> Workspace:
    """FastAPI dependency: the workspace the request's credential acts for, else 401."""
    credential = presented_credential(request)
    if credential is None:
        raise ApiError(
            401, "authentication required: send an access key or a token",
            reason="AUTHENTICATION_REQUIRED",
        )  # fmt: skip
    platform: Platform = request.app.state.platform
    workspace = await authenticate(platform.store, credential.strip())
    if workspace is None:
        raise ApiError(401, "invalid credentials", reason="INVALID_CREDENTIALS")
    return workspace


__all__ = ["presented_credential", "require_workspace"]
