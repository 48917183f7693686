"""Fixtures of the RTVBP tests: a call service on the real clock (these tests move real audio
over real sockets), SQLite and the in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.service import CallService
from callbridge.media.clock import SystemClock
from callbridge.platform import register_adapter_actions
from callbridge.store import Store

# The flows of these tests use the adapters' actions (rtvbp_bridge, recording_*), which the
# composition root registers; do it here too so a single test file runs on its own.
register_adapter_actions()


@pytest_asyncio.fixture
async def rt_service(tmp_path: Path) -> AsyncIterator[CallService]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db' / 'callbridge.db'}")
    bus = InProcessBus()
    await bus.start()
    service = CallService(store, bus, SystemClock())
    try:
        yield service
    finally:
        await service.shutdown(8.0)
        await bus.close()
        await store.close()
