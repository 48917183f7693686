"""The composition root: one :class:`Platform` owns every long-lived service of the process.

Lifecycle::

    platform = Platform(settings)
    await platform.start()          # data dir, store (migrated), bootstrap, bus
    ...                             # serve HTTP/SIP; routes reach services through `platform`
    await platform.stop(grace)      # = drain(grace) then close()

``drain`` ends live work (calls) within the grace period while the store and the bus still
work, so hangups can be recorded and published; ``close`` then releases the bus and the store.
The HTTP server calls ``drain`` concurrently with its own connection draining and ``close``
after both, so a shutdown takes at most about ``grace`` seconds overall.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from callbridge.auth.service import BootstrapResult, bootstrap
from callbridge.bus.base import BusError, EventBus
from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.service import CallService
from callbridge.config import Settings
from callbridge.media.clock import Clock, SystemClock
from callbridge.observability.logging import get_logger
from callbridge.store import Store

if TYPE_CHECKING:
    from callbridge.recordings.service import RecordingService
    from callbridge.telephony.service import TelephonyService

log = get_logger(__name__)


def register_adapter_actions() -> None:
    """Register the flow actions that adapters provide (``rtvbp_bridge``, …).

    Done here, in the composition root, so the flow runner (domain) never imports an adapter.
    Idempotent: modules register on first import.
    """
    # recording_start, recording_stop
    import callbridge.recordings.actions
    import callbridge.rtvbp.action  # noqa: F401


register_adapter_actions()


class PlatformStartError(Exception):
    """The platform cannot start for a reason the operator fixes in the configuration.

    The message starts with the subject: ``data dir: …`` or ``bootstrap_access_key: …``.
    (An unreachable or unmigratable database raises ``StoreError`` instead.)
    """


class Platform:
    """Every service of one callbridge process, started and stopped together.

    Attributes (valid after :meth:`start`): ``settings``, ``clock``, ``store``, ``bus``,
    ``calls`` (the :class:`~callbridge.calls.service.CallService`) and ``bootstrap_result``
    (the first workspace and, when it was just created, its plaintext access key; ``None``
    when nothing needed bootstrapping).
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._store: Store | None = None
        self._bus: EventBus | None = None
        self.bootstrap_result: BootstrapResult | None = None
        # Created by start(); drain() ends live calls through it before the store and bus close.
        self._calls: CallService | None = None
        # --- SIP (callbridge.telephony): started when settings.sip_port != 0 ---
        self.telephony: TelephonyService | None = None
        # --- recordings (callbridge.recordings): created by start() ---
        self.recordings: RecordingService | None = None
        self._started = False
        self._closed = False

    @property
    def store(self) -> Store:
        """The open store. Raises ``RuntimeError`` before :meth:`start` or after :meth:`close`."""
        if self._store is None:
            raise RuntimeError("Platform.store used before start() or after close()")
        return self._store

    @property
    def bus(self) -> EventBus:
        """The running event bus. Raises ``RuntimeError`` outside start()…close()."""
        if self._bus is None:
            raise RuntimeError("Platform.bus used before start() or after close()")
        return self._bus

    @property
    def calls(self) -> CallService:
        """The call service. Raises ``RuntimeError`` outside start()…close()."""
        if self._calls is None:
            raise RuntimeError("Platform.calls used before start() or after close()")
        return self._calls

    async def start(self) -> None:
        """Create the data directory, open and migrate the store, bootstrap, start the bus.

        Raises :class:`PlatformStartError` when the data directory or the preset key is unusable
        and
        ``callbridge.store.StoreError`` when the database is unreachable or cannot be
        migrated; whatever was opened is closed again before the error propagates.
        """
        if self._started:
            raise RuntimeError("Platform.start() called twice")
        self._started = True
        data_dir = self.settings.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise PlatformStartError(
                f"data dir: cannot create {str(data_dir)!r}: {reason}"
            ) from None
        try:
            self._store = await Store.open(self.settings.database, migrate=True)
            preset = self.settings.bootstrap_access_key
            try:
                self.bootstrap_result = await bootstrap(
                    self._store, preset.get_secret_value() if preset is not None else None
                )
            except ValueError as exc:  # malformed preset key; the message never repeats it
                raise PlatformStartError(f"bootstrap_access_key: {exc}") from None
            bus = await self._start_bus()
            self._bus = bus
            self._calls = CallService(
                self._store,
                bus,
                self.clock,
                max_lead_seconds=self.settings.playout_max_lead_seconds,
            )
            # --- recordings and RTVBP bridge defaults ---
            self._start_recordings_and_rtvbp(data_dir)
            # --- end recordings and RTVBP ---
            # --- SIP (callbridge.telephony) ---
            if self.settings.sip_port != 0:
                from callbridge.telephony.service import SipStartError, TelephonyService

                telephony = TelephonyService(self.settings, self._store, self._calls, self.clock)
                try:
                    await telephony.start()
                except SipStartError as exc:
                    raise PlatformStartError(str(exc)) from None
                self.telephony = telephony
            # --- end SIP ---
        except BaseException:
            await self.close()
            raise
        log.info("platform started", data_dir=str(data_dir))

    async def _start_bus(self) -> EventBus:
        """The in-process bus, or the NATS bus of a cluster when ``settings.bus`` is set."""
        bus: EventBus
        if self.settings.bus:
            from callbridge.bus.nats import NatsBus

            bus = NatsBus(self.settings.bus, namespace=self.settings.bus_namespace)
            try:
                await bus.start()
            except BusError as exc:
                raise PlatformStartError(f"bus: {exc}") from None
            return bus
        bus = InProcessBus()
        await bus.start()
        return bus

    def _start_recordings_and_rtvbp(self, data_dir: Path) -> None:
        """The recording service (attached to the call service) and the ``rtvbp_bridge``
        defaults: ``rtvbp_token`` and the RS256 keys of ``rtvbp_jwt_keys_dir``."""
        from callbridge.recordings.service import RecordingService
        from callbridge.rtvbp.voice import load_signing_keys, set_default_token

        assert self._store is not None and self._bus is not None and self._calls is not None
        recordings = RecordingService(self._store, self._bus, self.clock, data_dir)
        recordings.attach(self._calls)
        self.recordings = recordings
        token = self.settings.rtvbp_token
        set_default_token(token.get_secret_value() if token is not None else None)
        keys_dir = self.settings.rtvbp_jwt_keys_dir
        if keys_dir is not None:
            try:
                key_ids = load_signing_keys(keys_dir)
            except ValueError as exc:
                raise PlatformStartError(f"rtvbp_jwt_keys_dir: {exc}") from None
            log.info("rtvbp signing keys loaded", key_ids=key_ids)

    async def drain(self, grace_seconds: float) -> None:
        """End live calls within ``grace_seconds`` (the call service enforces its deadline;
        this bounds it once more with a small margin so shutdown cannot hang)."""
        if self._calls is None:
            return
        try:
            async with asyncio.timeout(grace_seconds + 1.0):
                await self._calls.shutdown(grace_seconds)
        except TimeoutError:
            log.warning("calls did not end within the grace period", grace_seconds=grace_seconds)
        # --- recordings: the calls' hangups ended them; wait for their files and rows ---
        if self.recordings is not None:
            await self.recordings.shutdown(max(1.0, grace_seconds))

    async def close(self) -> None:
        """Close the bus and the store. Idempotent; safe after a failed :meth:`start`."""
        if self._closed:
            return
        self._closed = True
        # --- SIP: stop after drain (hangups went out as BYE/CANCEL), before the store ---
        telephony, self.telephony = self.telephony, None
        if telephony is not None:
            await telephony.close()
        # --- end SIP ---
        # --- recordings and RTVBP: forget this platform's default bridge token ---
        if self.recordings is not None:
            from callbridge.rtvbp.voice import set_default_token

            set_default_token(None)
            self.recordings = None
        # --- end recordings and RTVBP ---
        bus, self._bus = self._bus, None
        store, self._store = self._store, None
        self._calls = None
        if bus is not None:
            await bus.close()
        if store is not None:
            await store.close()

    async def stop(self, grace_seconds: float) -> None:
        """Drain (calls get ``grace_seconds`` to end), then close the bus and the store.

        A no-op once the platform is closed.
        """
        if self._closed:
            return
        try:
            await self.drain(grace_seconds)
        finally:
            await self.close()
