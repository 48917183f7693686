"""The real uhlive SDK against a live callbridge with a real speech engine (Whisper tiny.en).

Audio is the Piper-voiced "Yes please." of the H2B fixtures (decoded from G.711 µ-law) sent as
a caller would: 8 kHz linear PCM in 60 ms chunks with silence around it. A fixed clip, not a
fresh synthesis: Piper's synthesis is random (its model samples noise), and this test is about
the SDK's wire path, not about recognising every rendering (the speech benchmarks measure
that). OPEN → RECOGNIZE boolean → START-OF-INPUT → COMPLETE (Success, value true) → CLOSE.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

uhlive = pytest.importorskip("uhlive.stream.recognition")

from websockets.asyncio.client import connect  # noqa: E402

from callbridge.config.settings import load_settings  # noqa: E402
from callbridge.media.g711 import ulaw_decode  # noqa: E402
from callbridge.platform import Platform  # noqa: E402
from callbridge.server.app import create_app  # noqa: E402
from callbridge.speech.asr.whisper import WhisperRecognizer  # noqa: E402

KEY = "vb_" + "h2bLiveSdkKey0123456789abcdef"
YES_PLEASE = Path(__file__).resolve().parents[1] / "fixtures/h2b/boolean-01-piper-clean.g711u"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def live_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = load_settings(
        None,
        {},
        {"data_dir": str(tmp_path / "data"), "sip_port": 0, "bootstrap_access_key": KEY},
    )
    platform = Platform(settings)
    await platform.start()
    recognizer = WhisperRecognizer(workers=1)
    await recognizer.start()
    app = create_app(platform)
    app.state.h2b_recognizer = recognizer
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes no started event
            await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}/x/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await recognizer.aclose()
        await platform.close()


async def test_sdk_recognizes_a_synthesized_yes(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK joins UHLIVE_API_URL with the absolute path /bots (any path is discarded).
    from urllib.parse import urljoin

    url = urljoin(live_url, "/bots")
    assert url.endswith("/bots")
    yes = ulaw_decode(YES_PLEASE.read_bytes())  # a 10 kB local fixture
    audio = bytes(8000) + yes + bytes(32000)
    rec = uhlive.Recognizer()
    _u, headers = uhlive.build_connection_request(KEY)
    async with connect(url, additional_headers=headers) as ws:

        async def recv() -> object:
            async with asyncio.timeout(30):
                data = await ws.recv()
            return rec.receive(data)

        await ws.send(rec.open(custom_id="live-test"))
        assert isinstance(await recv(), uhlive.Opened)
        await ws.send(
            rec.recognize(
                "builtin:speech/boolean", speech_complete_timeout=500, no_input_timeout=5000
            )
        )
        assert isinstance(await recv(), uhlive.RecognitionInProgress)
        for i in range(0, len(audio), 960):
            await ws.send(audio[i : i + 960])
        events = []
        while True:
            event = await recv()
            events.append(event)
            if isinstance(event, uhlive.RecognitionComplete):
                break
        assert [type(e) for e in events] == [uhlive.StartOfInput, uhlive.RecognitionComplete]
        done = events[-1]
        assert done.completion_cause is uhlive.CompletionCause.Success, (
            done.completion_reason,
            str(done.body),
        )
        assert done.body.nlu.value is True
        assert done.body.nlu.type == "builtin:speech/boolean"
        assert "yes" in done.body.asr.transcript.lower()
        await ws.send(rec.close())
        assert isinstance(await recv(), uhlive.Closed)
