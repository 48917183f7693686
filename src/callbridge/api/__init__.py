"""callbridge.api: the VoIPBIN-compatible platform REST API (``/v1.0``, platform-api.md).

A thin adapter: routers and pydantic models translate requests into calls of the domain
services (the call service, telephony) and domain objects back into the spec's JSON. Errors use
the envelope of :mod:`callbridge.server.errors`. So far: ``POST /v1.0/calls`` (what
``callbridge call`` needs); the rest of the API grows here.
"""

from __future__ import annotations

from fastapi import FastAPI


def include_api(app: FastAPI) -> None:
    """Mount the ``/v1.0`` routers on ``app`` (whose ``state.platform`` is the platform)."""
    from callbridge.api.calls import router as calls_router

    app.include_router(calls_router)


__all__ = ["include_api"]
