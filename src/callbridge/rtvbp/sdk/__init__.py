"""The RTVBP application SDK: write a handler class, serve it (RTVBP spec §7).

A 15-line echo handler::

    import asyncio
    from callbridge.rtvbp.sdk import HandlerServer, RtvbpHandler, StaticToken

    class Echo(RtvbpHandler):
        async def on_audio(self, frame: bytes) -> None:
            self.send_audio(frame)            # any length; sent as paced 320-byte frames

        async def on_dtmf(self, event) -> None:
            if event.digit == "#":
                await self.hangup("caller pressed #")

    async def main() -> None:
        async with HandlerServer(Echo, port=9000, authenticate=StaticToken("secret")):
            await asyncio.Event().wait()

    asyncio.run(main())
"""

from callbridge.rtvbp.errors import NotInitialized, RemoteError, RequestTimeout, SessionClosed
from callbridge.rtvbp.sdk.handler import RtvbpHandler
from callbridge.rtvbp.sdk.server import HandlerServer, connect_handler, run_handler
from callbridge.rtvbp.tokens import JwtValidator, StaticToken

__all__ = [
    "HandlerServer",
    "JwtValidator",
    "NotInitialized",
    "RemoteError",
    "RequestTimeout",
    "RtvbpHandler",
    "SessionClosed",
    "StaticToken",
    "connect_handler",
    "run_handler",
]
