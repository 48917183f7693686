"""``callbridge serve``: bind, start the platform, serve HTTP(S) with uvicorn, shut down cleanly.

Order of start-up, each failure being one ``callbridge: …`` line on stderr and exit code 2:

1. logging is configured;
2. TLS certificate and key are loaded (when configured) — a bad pair fails before anything
   else happens;
3. the listening socket is bound (``cannot listen on HOST:PORT: address already in use``) —
   before the platform starts, so a taken port never creates a database or a bootstrap key;
4. the platform starts (``database: …`` / ``data dir: …``); a freshly created bootstrap
   access key is printed once to **stdout** (never to the log);
5. uvicorn serves on the bound socket.

Shutdown on the first SIGINT or SIGTERM (handled by this module, not uvicorn, so the process
exits normally with code 0 instead of re-raising the signal):

* the listener closes at once (no new connections); idle keep-alive connections are closed;
  in-flight requests finish; WebSockets are asked to close (1012);
* concurrently ``platform.drain(grace)`` hangs up live calls;
* whatever still runs after ``shutdown_grace_seconds`` is cancelled; then the application
  lifespan ends and the platform closes the bus and the store;
* a second SIGINT during the grace period skips the remaining wait (force exit), still
  closing the store.

Garbage collection (decision 031): once the platform has started, everything allocated so far
(modules, the app, the store) is collected once and frozen (``gc.freeze``), so later full
collections only walk what live calls allocated, and the gen-0 threshold is raised
(``gc_gen0_threshold``) so the collector runs rarely; every collector pause is observed in
``callbridge_gc_pause_seconds{generation}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import signal
import socket
import ssl
import sys
import time
from collections.abc import Generator

import uvicorn

from callbridge import __version__
from callbridge.config import Settings
from callbridge.observability.logging import configure_logging, get_logger
from callbridge.observability.metrics import GC_PAUSES
from callbridge.platform import Platform, PlatformStartError
from callbridge.server.app import create_app
from callbridge.server.signals import StopSignalHandler
from callbridge.store import StoreError

log = get_logger(__name__)

EXIT_OK = 0
EXIT_STARTUP = 2
LISTEN_BACKLOG = 2048


class GcPauseObserver:
    """``gc.callbacks`` entry timing each collection into :data:`GC_PAUSES`."""

    def __init__(self) -> None:
        self._start = 0.0
        self._children = [GC_PAUSES.labels(generation=str(g)) for g in range(3)]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._start)


_GC_OBSERVER = GcPauseObserver()


def configure_gc(gen0_threshold: int) -> None:
    """Tune the garbage collector for a process that moves real-time audio.

    Collects and freezes what exists now (call after start-up: the long-lived heap of modules,
    app and store is then never walked again), raises the gen-0 threshold (``0`` keeps
    Python's default) and observes every pause in ``callbridge_gc_pause_seconds``. Idempotent.
    """
    gc.collect()
    gc.freeze()
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
    if _GC_OBSERVER not in gc.callbacks:
        gc.callbacks.append(_GC_OBSERVER)


class StartupError(Exception):
    """A start-up failure reported as one line ``callbridge: <message>`` and exit code 2."""


def fail(message: str) -> int:
    """Print ``callbridge: <message>`` on stderr and return the start-up failure exit code."""
    print(f"callbridge: {message}", file=sys.stderr, flush=True)
    return EXIT_STARTUP


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (first address ``host`` resolves to).

    Raises :class:`StartupError` with ``cannot listen on HOST:PORT: <reason>``.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {where}: cannot resolve host ({exc.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # SO_REUSEADDR lets a restart bind while old connections sit in TIME_WAIT; on Linux it
        # does not allow two live listeners, so "address already in use" is still detected.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)).lower()
        raise StartupError(f"cannot listen on {where}: {reason}") from None
    return sock


def check_tls(settings: Settings) -> None:
    """Load the configured certificate and key once; raise :class:`StartupError` if unusable."""
    if settings.tls_cert is None or settings.tls_key is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (ssl.SSLError, OSError) as exc:
        detail = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise StartupError(
            f"tls: cannot load certificate {str(settings.tls_cert)!r} with key "
            f"{str(settings.tls_key)!r}: {str(detail).lower()}"
        ) from None


class _ShutdownSignals(StopSignalHandler):
    """SIGINT/SIGTERM handling for the whole life of :func:`serve`.

    A signal before uvicorn runs is remembered (serving is skipped); during serving it sets
    uvicorn's ``should_exit``; a second SIGINT sets ``force_exit``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requested = False
        self.server: uvicorn.Server | None = None

    def on_signal(self, sig: signal.Signals) -> None:
        again = self.requested
        self.requested = True
        if again and sig == signal.SIGINT:
            log.warning("second SIGINT: not waiting for live sessions any longer")
            if self.server is not None:
                self.server.force_exit = True
            return
        if not again:
            log.info("shutting down", signal=sig.name)
        if self.server is not None:
            self.server.should_exit = True


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to :func:`serve` and the platform drained during
    uvicorn's own connection draining."""

    def __init__(self, config: uvicorn.Config, platform: Platform, grace_seconds: float) -> None:
        super().__init__(config)
        self._platform = platform
        self._grace_seconds = grace_seconds

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # serve() owns SIGINT/SIGTERM for its whole run; uvicorn's version would re-raise the
        # signal after a graceful exit and turn exit code 0 into death-by-signal.
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drain = asyncio.create_task(self._platform.drain(self._grace_seconds))
        try:
            await super().shutdown(sockets=sockets)
        finally:
            if self.force_exit:
                drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM; return the process exit code.

    0 after a graceful shutdown, 2 after a start-up failure (one line on stderr, no
    traceback). See the module docstring for the exact start-up and shutdown sequence.
    """
    configure_logging(settings.log_format, settings.log_level)
    signals = _ShutdownSignals()
    signals.install()
    try:
        return await _serve(settings, signals)
    except StartupError as exc:
        return fail(str(exc))
    finally:
        signals.remove()


async def _serve(settings: Settings, signals: _ShutdownSignals) -> int:
    check_tls(settings)
    sock = bind_listener(settings.host, settings.http_port)
    try:
        platform = Platform(settings)
        try:
            await platform.start()
        except StoreError as exc:
            text = str(exc)
            raise StartupError(
                text if text.startswith("database") else f"database: {text}"
            ) from None
        except PlatformStartError as exc:
            raise StartupError(str(exc)) from None
        try:
            configure_gc(settings.gc_gen0_threshold)
            announce_bootstrap(platform)
            if signals.requested:
                log.info("shutdown requested during start-up; not serving")
                await platform.stop(settings.shutdown_grace_seconds)
                return EXIT_OK
            config = uvicorn.Config(
                create_app(platform),
                loop="uvloop",
                http="httptools",
                ws="websockets-sansio",
                ws_max_size=settings.ws_max_message_bytes,
                ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
                ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
                lifespan="on",
                # uvicorn declares int but only hands it to asyncio.wait_for: a float works.
                timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]
                log_config=None,
                server_header=False,
                proxy_headers=False,
            )
            server = _Server(config, platform, settings.shutdown_grace_seconds)
            signals.server = server
            scheme = "https" if settings.tls_enabled else "http"
            host, port = sock.getsockname()[:2]
            shown_host = f"[{host}]" if ":" in str(host) else host
            log.info(
                "callbridge listening",
                url=f"{scheme}://{shown_host}:{port}",
                version=__version__,
                grace_seconds=settings.shutdown_grace_seconds,
            )
            await server.serve(sockets=[sock])
            if not server.started:
                return fail("http server failed to start (see the log above)")
        finally:
            signals.server = None
            await platform.close()
        log.info("callbridge stopped")
        return EXIT_OK
    finally:
        sock.close()


def announce_bootstrap(platform: Platform) -> None:
    """Print the first workspace's new access key once, to stdout (never to the log)."""
    result = platform.bootstrap_result
    if result is None or not result.created:
        return
    preset = platform.settings.bootstrap_access_key
    if preset is not None and preset.get_secret_value() == result.access_key_plaintext:
        # The operator chose this key; repeating it on stdout would only spread it further.
        log.info("first workspace created with the configured bootstrap access key")
        return
    # stdout, not the log: the key must be seen once by the operator and never stored in logs.
    print(
        "callbridge: created the first workspace; its access key (shown only once):\n"
        f"  {result.access_key_plaintext}",
        flush=True,
    )
    log.info("first workspace created; its access key was printed to stdout")
