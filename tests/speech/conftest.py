"""Fixtures shared by the speech tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from callbridge.speech.asr.whisper import WhisperRecognizer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def whisper() -> AsyncIterator[WhisperRecognizer]:
    """One Whisper recognizer (one worker) per test module: loading the model costs seconds."""
    recognizer = WhisperRecognizer(workers=1)
    await recognizer.start()
    yield recognizer
    await recognizer.aclose()
