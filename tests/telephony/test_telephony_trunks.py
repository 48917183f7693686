"""Trunk registration options in the store and their status file (no SIP traffic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from callbridge.store import Store
from callbridge.telephony.model import Trunk
from callbridge.telephony.trunk_registration import STATUS_FILE, read_status


async def test_store_round_trip(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", migrate=True)
    try:
        workspace = await store.workspaces.create("w")
        now = datetime.now(UTC)
        item = Trunk(uuid.uuid4(), workspace.id, "carrier", "192.0.2.1", 5060, "udp", now, now,
                     username="u", password="p", detail="d", register=True,
                     register_expires=900)  # fmt: skip
        await store.trunks.insert(item)
        found = await store.trunks.find("carrier")
        assert found is not None
        assert (found.register, found.register_expires, found.detail) == (True, 900, "d")
        other = Trunk(uuid.uuid4(), workspace.id, "plain", "192.0.2.2", 5060, "udp", now, now)
        await store.trunks.insert(other)
        plain = await store.trunks.find("plain")
        assert plain is not None and (plain.register, plain.register_expires) == (False, 3600)
    finally:
        await store.close()


def test_read_status_tolerates_missing_and_bad_files(tmp_path: Path) -> None:
    assert read_status(tmp_path) == {}
    (tmp_path / STATUS_FILE).write_text("[not an object")
    assert read_status(tmp_path) == {}
    (tmp_path / STATUS_FILE).write_text('{"trunks": {"a": {"state": "registered"}, "b": 1}}')
    assert read_status(tmp_path) == {"a": {"state": "registered"}}
