"""Trunk registration against sipp as the trunk's registrar (spec ``sip.md`` §8).

sipp (``sipp/trunk_register.xml``) answers the first REGISTER with 503, then challenges every
REGISTER with 401 and verifies callbridge's digest; it grants 2 s, then 60 s on the refresh,
and expects the unregister (``Expires: 0``) when the platform stops.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from sipp_harness import SIPP, finish, free_port, running, until

from callbridge.sip.registration import RegState
from callbridge.telephony.trunk_registration import STATUS_FILE, read_status

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")


async def admin_trunks_list(data_dir: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callbridge", "admin", "trunks", "list", "--data-dir", str(data_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_trunk_registers_with_digest_refreshes_backs_off_and_unregisters(
    tmp_path: Path,
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    sipp = None
    try:
        async with running(tmp_path) as h:
            registrations = h.telephony.trunk_registrations
            registrations.backoff_first = 0.5
            sipp = await h.sipp("trunk_register.xml", server=True, port=port)
            await asyncio.sleep(0.3)  # sipp binds its port
            loop = asyncio.get_running_loop()
            started = loop.time()
            await h.add_trunk(
                "carrier", port, "trunkuser", "trunkpw", register=True, register_expires=300
            )
            registration = registrations.get("carrier")
            assert registration is not None
            # 503 -> FAILED, then the back-off (0.5 s) -> 401 -> digest -> 200 (2 s granted).
            await until(lambda: registration.state is RegState.REGISTERED, limit=5.0)
            assert loop.time() - started >= 0.5
            assert registration.attempts == 3
            assert registration.aor == "sip:trunkuser@127.0.0.1"
            status = read_status(data_dir)["carrier"]
            assert status["state"] == "registered" and status["last_status"] == 200
            # The refresh at 90 % of 2 s: 401 -> digest -> 200 granting 60 s.
            await until(lambda: registration.attempts == 5, limit=5.0)
            await until(lambda: registration.state is RegState.REGISTERED, limit=2.0)
            assert registration.expires_at is not None
            left = registration.expires_at - h.telephony.clock.monotonic()
            assert 55 < left <= 60
            listing = await admin_trunks_list(data_dir)
            assert "carrier\tudp:127.0.0.1:" in listing
            assert "register: registered (200) until " in listing
        # Platform stopped: the unregister went out and was answered (after its challenge).
        assert registration.state is RegState.STOPPED
        assert registration.attempts == 7
        assert await finish(sipp, tmp_path) == 0
        saved = json.loads((data_dir / STATUS_FILE).read_text())
        assert saved == {"trunks": {}, "running": False}
    finally:
        if sipp is not None and sipp.returncode is None:
            sipp.kill()
            await sipp.communicate()
