"""The ``/bots`` WebSocket endpoint (h2b.md §1): authentication, limits, accounting.

* ``Authorization: bearer <token>`` (scheme in any case) is checked with
  :func:`callbridge.auth.service.authenticate` (access keys) or against the tokens of
  :mod:`.tokens` **before** the upgrade; a missing or bad token
  gets an HTTP 401 JSON error (the ASGI denial-response extension; servers without it get the
  handshake refused).
* Text frames go to the engine (over-long ones answer ``METHOD-NOT-VALID``); a binary frame
  above :data:`~callbridge.h2b.audio.MAX_CHUNK_BYTES` closes the socket with 1009; a socket that
  sent nothing for :data:`IDLE_TIMEOUT_S` is closed with 1001.
* Every ended session is recorded in ``h2b_sessions`` with the workspace.

The recognizer is ``app.state.h2b_recognizer`` when set (tests, embedding), else one
:func:`~callbridge.speech.registry.create_recognizer` engine per app, created on first use
(``app.state.h2b_engine_name``, default ``auto``: Whisper for every request without word
timings, decision 045; ``fused`` adds PocketSphinx for JSGF grammars).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final

from fastapi import APIRouter, FastAPI, WebSocket
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from callbridge.auth.service import authenticate
from callbridge.h2b.accounting import record_session
from callbridge.h2b.adapter import H2BConnection, language_check
from callbridge.h2b.audio import MAX_CHUNK_BYTES
from callbridge.h2b.engine import H2BEngine, SessionRecord
from callbridge.h2b.tokens import issuer_of, token_router
from callbridge.observability.logging import get_logger
from callbridge.server.errors import error_response, request_id_of
from callbridge.speech.asr.base import Recognizer
from callbridge.store.errors import StoreError

__all__ = ["IDLE_TIMEOUT_S", "bearer_token", "include_h2b", "router"]

log = get_logger(__name__)

#: A connection that received no frame for this long is closed (h2b.md §1).
IDLE_TIMEOUT_S: Final = 60.0
#: How often the wall-clock silence rule is checked.
SILENCE_TICK_S: Final = 0.25
#: The engine ``/bots`` creates when none is configured: Whisper for every request, word
#: timings off (decision 045).
DEFAULT_ENGINE: Final = "auto"

router = APIRouter()


def include_h2b(app: FastAPI) -> None:
    """Add the ``/bots`` endpoint and the token endpoint to ``app``."""
    app.include_router(router)
    app.include_router(token_router)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: bearer <token>`` header (scheme in any case)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _recognizer(app: Any) -> Recognizer:
    state = app.state
    recognizer = getattr(state, "h2b_recognizer", None)
    if recognizer is None:
        from callbridge.speech.registry import create_recognizer

        recognizer = create_recognizer(getattr(state, "h2b_engine_name", DEFAULT_ENGINE))
        state.h2b_recognizer = recognizer
    assert isinstance(recognizer, Recognizer)
    return recognizer


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    extensions = websocket.scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        headers = {"WWW-Authenticate": 'Bearer realm="callbridge"'} if status == 401 else None
        response = error_response(request_id_of(websocket), status, message, headers=headers)
        await websocket.send_denial_response(response)
    else:  # pragma: no cover - every server we ship supports the extension
        await websocket.close(code=1008)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@router.websocket("/bots")
async def bots(websocket: WebSocket) -> None:
    """Stream H2B recognition sessions over one WebSocket."""
    platform = websocket.app.state.platform
    token = bearer_token(websocket.headers.get("authorization"))
    try:
        workspace = await authenticate(platform.store, token) if token else None
    except (StoreError, SQLAlchemyError, OSError) as exc:
        # The store could not answer (e.g. SQLite's write lock held by another process past
        # its timeout): a clean, retryable refusal instead of an HTTP 500 at the upgrade.
        log.warning("h2b connect refused: store unavailable", error=_reason(exc))
        await _deny(
            websocket,
            503,
            "the access key could not be checked: the store is not available right now; "
            "retry later",
        )
        return
    if workspace is None and token:
        workspace = issuer_of(websocket.app).redeem(token)
    if workspace is None:
        await _deny(websocket, 401, "a valid 'Authorization: bearer <token>' header is required")
        return
    try:
        recognizer = _recognizer(websocket.app)
    except Exception as exc:
        log.warning("h2b recognizer unavailable", error=str(exc) or type(exc).__name__)
        await _deny(websocket, 503, "speech recognition is not available on this server")
        return
    await websocket.accept()
    store = platform.store

    async def send_text(text: str) -> None:
        if websocket.application_state is WebSocketState.CONNECTED:
            await websocket.send_text(text)

    async def on_session_end(record: SessionRecord) -> None:
        try:
            await record_session(store, workspace.id, record)
        except (StoreError, SQLAlchemyError, OSError) as exc:
            # Visible, with everything needed to bill the session by hand; the client's
            # connection goes on.
            log.error(
                "h2b session accounting row not stored",
                error=_reason(exc),
                workspace_id=str(workspace.id),
                channel_id=record.channel_id,
                custom_id=record.custom_id,
                session_id=record.session_id,
                recognitions=record.recognitions,
                recognized_ms=record.recognized_ms,
                opened_ms=record.opened_ms,
                closed_ms=record.closed_ms,
            )
            return
        log.info(
            "h2b session ended",
            channel_id=record.channel_id,
            custom_id=record.custom_id,
            recognized_ms=record.recognized_ms,
        )

    engine = H2BEngine(
        epoch_ms=lambda: int(time.time() * 1000),
        language_supported=language_check(recognizer),
    )
    conn = H2BConnection(engine, recognizer, send_text, on_session_end=on_session_end)
    ticker = asyncio.create_task(_tick(conn))
    close_code = 1000
    try:
        while True:
            try:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    message = await websocket.receive()
            except TimeoutError:
                close_code = 1001
                break
            if message["type"] == "websocket.disconnect":
                close_code = 0
                break
            data = message.get("bytes")
            text = message.get("text")
            if data is not None:
                if len(data) > MAX_CHUNK_BYTES:
                    close_code = 1009
                    break
                await conn.on_audio(data)
            elif text is not None:
                await conn.on_text(text)
    except WebSocketDisconnect:
        close_code = 0
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await conn.close()
        if close_code and websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=close_code)


async def _tick(conn: H2BConnection) -> None:
    while True:
        await asyncio.sleep(SILENCE_TICK_S)
        await conn.fill_silence()
