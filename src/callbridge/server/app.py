"""The ASGI application: operational routes, the error envelope and the edge middleware.

``create_app(platform)`` returns a FastAPI app with

* ``GET /healthz`` — 200 ``{"status":"ok","version":…,"store":"ok"}``, or 503 with
  ``"store":"unreachable"`` when the store does not answer a ping within 2 s;
* ``GET /metrics`` — the process registry in Prometheus text format 0.0.4;
* the edge middleware (outermost): request ids (``X-Request-Id`` accepted or generated, echoed
  on every response and bound as ``request_id`` in the logging context), HTTP metrics, the
  request body limit (413), the WebSocket session gauge, and a last-resort 500 for exceptions;
* CORS per ``settings.cors_origins``;
* every error (404, 405, 400 for invalid requests, 413, 500, :class:`ApiError`) as the JSON
  envelope of platform-api.md §2. Request validation failures answer **400**
  ``INVALID_ARGUMENT`` (the spec's status table has no 422).

Feature modules add their routers to the returned app; they reach services through
``request.app.state.platform``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callbridge import __version__
from callbridge.observability.logging import get_logger, log_context
from callbridge.observability.metrics import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    REGISTRY,
    WEBSOCKETS_ACTIVE,
)
from callbridge.platform import Platform
from callbridge.server.errors import (
    REQUEST_ID_HEADER,
    ApiError,
    accept_request_id,
    error_body,
    error_response,
    request_id_of,
)

log = get_logger(__name__)

HEALTH_PING_TIMEOUT_SECONDS = 2.0
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def create_app(platform: Platform) -> FastAPI:
    """The HTTP application of ``platform`` (which need not be started yet).

    ``app.state.platform`` is ``platform``; limits and CORS come from ``platform.settings``.
    """
    settings = platform.settings
    app = FastAPI(
        title="callbridge",
        version=__version__,
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform

    _install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        store_ok = await _store_answers(platform)
        body = {
            "status": "ok",
            "version": __version__,
            "store": "ok" if store_ok else "unreachable",
        }
        return JSONResponse(body, status_code=200 if store_ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # The classic 0.0.4 text format: understood by every Prometheus version and agent.
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    # --- h2b (callbridge.h2b): the Stream H2B recognition WebSocket at /bots ---
    from callbridge.h2b.router import include_h2b

    include_h2b(app)
    # --- end h2b ---
    # --- platform REST API (callbridge.api): /v1.0 ---
    from callbridge.api import include_api

    include_api(app)
    # --- end platform REST API ---

    origins = list(settings.cors_origins)
    any_origin = "*" in origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if any_origin else origins,
        # Credentials (the `token` cookie) only for origins the operator listed explicitly.
        allow_credentials=not any_origin,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[REQUEST_ID_HEADER],
    )
    # Added last = outermost: ids, metrics and limits apply to CORS preflights and errors too.
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.http_max_body_bytes)
    return app


async def _store_answers(platform: Platform) -> bool:
    try:
        async with asyncio.timeout(HEALTH_PING_TIMEOUT_SECONDS):
            return bool(await platform.store.ping())
    except Exception as exc:  # any failure means "unreachable" for a health probe
        log.warning("store ping failed", error=str(exc) or type(exc).__name__)
        return False


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(
            request_id_of(request),
            exc.http_status,
            exc.message,
            reason=exc.reason,
            status=exc.status,
            details=exc.details,
            headers=exc.headers,
        )

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        rid = request_id_of(request)
        code = exc.status_code
        reason: str | None = None
        message = str(exc.detail)
        path = request.url.path
        if code == 404 and exc.detail == "Not Found":
            reason = "ROUTE_NOT_FOUND"
            message = f"no route for {request.method} {path}"
            if path.startswith("/v1.0/auth/"):
                message += f"; authentication routes are not under /v1.0, use {path[5:]}"
        elif code == 405 and exc.detail == "Method Not Allowed":
            message = f"method {request.method} is not allowed on {path}"
        elif code == 413:
            message = str(exc.detail)
        return error_response(rid, code, message, reason=reason, headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details: list[dict[str, Any]] = []
        reason = "INVALID_REQUEST_PARAMETER"
        for err in exc.errors():
            field = ".".join(str(part) for part in err.get("loc", ()))
            details.append({"field": field, "issue": str(err.get("msg", ""))})
            if err.get("type") == "json_invalid":
                reason = "INVALID_JSON_BODY"
            elif err.get("type") == "missing" and reason == "INVALID_REQUEST_PARAMETER":
                reason = "MISSING_REQUEST_PARAMETER"
        first = details[0] if details else {"field": "request", "issue": "invalid"}
        message = f"{first['field']}: {first['issue']}"
        return error_response(request_id_of(request), 400, message, reason=reason, details=details)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)


class BodyTooLarge(StarletteHTTPException):
    """A request body exceeded ``http_max_body_bytes`` while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class EdgeMiddleware:
    """Outermost ASGI middleware; see the module docstring for what it does.

    Bodies announced larger than the limit (``Content-Length``) are refused before the
    application runs; streamed bodies are counted as they are read and refused (413) as soon
    as they pass the limit. Unhandled exceptions are logged once, with the request id, and
    answered 500 if no response has started.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = accept_request_id(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = rid
        with log_context(request_id=rid):
            if scope["type"] == "websocket":
                WEBSOCKETS_ACTIVE.inc()
                try:
                    await self.app(scope, receive, send)
                finally:
                    WEBSOCKETS_ACTIVE.dec()
                return
            await self._http(scope, receive, send, headers, rid)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, rid: str
    ) -> None:
        started_at = time.perf_counter()
        method = str(scope.get("method", "GET")).upper()
        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                await error_response(rid, 413, f"request body exceeds {limit} bytes")(
                    scope, receive, send_with_id
                )
            else:
                await self.app(scope, receive_limited, send_with_id)
        except BodyTooLarge as exc:
            # Raised while reading outside a route's exception handling.
            if not response_started:
                await error_response(rid, 413, str(exc.detail))(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in request", method=method, path=scope.get("path"))
            if not response_started:
                response = JSONResponse(
                    error_body(rid, "INTERNAL", "INTERNAL", "internal error"), status_code=500
                )
                await response(scope, receive, send_with_id)
        finally:
            label = method if method in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(method=label, status=f"{status_code // 100}xx").inc()
            HTTP_LATENCY.observe(time.perf_counter() - started_at)


def _content_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
