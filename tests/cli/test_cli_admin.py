"""``callbridge admin extensions|trunks`` on a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callbridge.auth.service import bootstrap
from callbridge.cli.main import main
from callbridge.store import Store


def test_admin_extensions_and_trunks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main(["admin", "extensions", "add", "1001", "--password", "pw", *data]) == 2
    assert "run 'callbridge serve' once" in capsys.readouterr().err

    async def first_workspace() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'callbridge.db'}")
        try:
            await bootstrap(store, None)
        finally:
            await store.close()

    asyncio.run(first_workspace())
    assert main(["admin", "extensions", "add", "1001", "--password", "s3cr3t", *data]) == 0
    assert main(["admin", "extensions", "add", "1001", "--password", "x", *data]) == 2
    assert main(["admin", "extensions", "add", "bad name", "--password", "x", *data]) == 2
    assert main(["admin", "trunks", "add", "t1", "--address", "10.0.0.1", *data]) == 0
    capsys.readouterr()
    assert main(["admin", "extensions", "list", *data]) == 0
    assert main(["admin", "trunks", "list", *data]) == 0
    out = capsys.readouterr().out
    assert "1001" in out and "t1\tudp:10.0.0.1:5060" in out and "s3cr3t" not in out
    assert main(["admin", "extensions", "remove", "1001", *data]) == 0
    assert main(["admin", "extensions", "remove", "1001", *data]) == 2
    assert main(["admin", "trunks", "remove", "t1", *data]) == 0
