"""``callbridge rtvbp-handler``: run an example RTVBP handler (RTVBP spec §7).

``callbridge rtvbp-handler --example echo --port 9000 [--token SECRET]
[--tls-cert FILE --tls-key FILE] [--jwt-public-key FILE --jwt-account ID]
[--tts piper|espeak|tones [--voice NAME]]``

With ``--token`` (or a JWT key), a missing or wrong ``Authorization: Bearer`` gets HTTP 401
before the WebSocket upgrade.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path

import uvloop

from callbridge.cli.common import CommandError
from callbridge.rtvbp.examples.barge_in import BargeInHandler
from callbridge.rtvbp.examples.echo import EchoHandler
from callbridge.rtvbp.examples.ivr import (
    TONE_PROMPTS,
    IvrHandler,
    IvrPrompts,
    ivr_handler,
    spoken_prompts,
)
from callbridge.rtvbp.sdk import HandlerServer, JwtValidator, StaticToken
from callbridge.rtvbp.sdk.handler import RtvbpHandler
from callbridge.rtvbp.tokens import Authenticator

EXAMPLES: dict[str, type[RtvbpHandler]] = {
    "echo": EchoHandler,
    "ivr": IvrHandler,
    "barge-in": BargeInHandler,
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rtvbp-handler`` command."""
    parser = subparsers.add_parser(
        "rtvbp-handler",
        help="Run an example RTVBP handler (application role) on a WebSocket port.",
    )
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="echo")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--path", default="/", help="URL path served (default /).")
    parser.add_argument("--token", default=None, help="Require this Bearer token.")
    parser.add_argument(
        "--jwt-public-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="Accept babelforce RS256 JWTs signed by this PEM public key.",
    )
    parser.add_argument(
        "--jwt-account",
        action="append",
        default=[],
        metavar="ID",
        help="Account id accepted as the JWT audience (repeatable).",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="FILE")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="FILE")
    parser.add_argument(
        "--tts",
        choices=("piper", "espeak", "tones"),
        default="piper",
        help="How the ivr example speaks its menus (default piper; tones when the "
        "speech engines are not installed).",
    )
    parser.add_argument("--voice", default=None, help="TTS voice name for --tts.")
    parser.set_defaults(handler=run)


async def ivr_prompts(engine: str, voice: str | None) -> IvrPrompts:
    """The ivr example's prompts: spoken by ``engine``, tones when it is not installed."""
    if engine == "tones":
        return TONE_PROMPTS
    from callbridge.speech import EngineUnavailable

    try:
        return await spoken_prompts(engine, voice)
    except EngineUnavailable as exc:
        print(f"rtvbp-handler: {exc}; the menus use tones", flush=True)
        return TONE_PROMPTS
    except ValueError as exc:
        raise CommandError(f"--voice: {exc}") from None


def build_server(args: argparse.Namespace, prompts: IvrPrompts = TONE_PROMPTS) -> HandlerServer:
    """The server described by ``args`` (validated; :class:`CommandError` otherwise);
    ``prompts`` are the ivr example's menus."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together")
    if args.token is not None and args.jwt_public_key is not None:
        raise CommandError("--token and --jwt-public-key are exclusive")
    auth: Authenticator | None = None
    if args.token is not None:
        if not args.token:
            raise CommandError("--token must not be empty")
        auth = StaticToken(args.token)
    elif args.jwt_public_key is not None:
        if not args.jwt_account:
            raise CommandError("--jwt-public-key needs at least one --jwt-account")
        try:
            pem = args.jwt_public_key.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {args.jwt_public_key}: {exc.strerror}") from None
        auth = JwtValidator({"default": pem}, args.jwt_account)
    context: ssl.SSLContext | None = None
    if args.tls_cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"cannot load the TLS certificate/key: {exc}") from None
    if not 0 <= args.port <= 65535:
        raise CommandError("--port must be 0-65535")
    handler = EXAMPLES[args.example]
    if handler is IvrHandler:
        handler = ivr_handler(prompts)
    return HandlerServer(
        {args.path: handler},
        host=args.host,
        port=args.port,
        authenticate=auth,
        ssl_context=context,
    )


def run(args: argparse.Namespace) -> int:
    build_server(args)  # validate the options before synthesising anything

    async def main() -> None:
        prompts = TONE_PROMPTS
        if args.example == "ivr":
            prompts = await ivr_prompts(args.tts, args.voice)
        server = build_server(args, prompts)
        try:
            await server.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror}"
            ) from None
        spoken = f" (menus: {prompts.source})" if args.example == "ivr" else ""
        print(
            f"rtvbp-handler {args.example} listening on {server.url}{args.path}{spoken}",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    # uvloop, like `callbridge serve`: a handler moves 50 audio frames a second per call.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    return 0
