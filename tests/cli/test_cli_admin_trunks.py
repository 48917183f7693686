"""``callbridge admin trunks add --register`` and the registration column of ``list``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from callbridge.auth.service import bootstrap
from callbridge.cli.main import main
from callbridge.store import Store
from callbridge.telephony.trunk_registration import STATUS_FILE


def test_registering_trunk_add_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]

    async def first_workspace() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'callbridge.db'}")
        try:
            await bootstrap(store, None)
        finally:
            await store.close()

    asyncio.run(first_workspace())
    add = ["admin", "trunks", "add", "carrier", "--address", "192.0.2.1", *data]
    assert main([*add, "--register"]) == 2
    assert "--register needs --username and --password" in capsys.readouterr().err
    creds = ["--username", "acct", "--password", "s3cr3t", "--register"]
    assert main([*add, *creds, "--register-expires", "10"]) == 2
    assert "--register-expires must be 60-86400" in capsys.readouterr().err
    assert main([*add, *creds, "--register-expires", "600"]) == 0
    assert main(["admin", "trunks", "add", "plain", "--address", "192.0.2.2", *data]) == 0
    capsys.readouterr()
    assert main(["admin", "trunks", "list", *data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "carrier\tudp:192.0.2.1:5060\tacct\tregister: not running",
        "plain\tudp:192.0.2.2:5060\t",
    ]
    status = {"state": "failed", "last_status": 403, "expires_at": None,
              "retry_at": "2026-01-01T00:00:30+00:00"}  # fmt: skip
    (tmp_path / STATUS_FILE).write_text(json.dumps({"trunks": {"carrier": status}}))
    assert main(["admin", "trunks", "list", *data]) == 0
    out = capsys.readouterr().out
    assert "register: failed (403), retry at 2026-01-01T00:00:30+00:00" in out
    assert "s3cr3t" not in out
