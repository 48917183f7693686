"""Helpers of the recordings tests: calls on file legs, WAV reading, bus collection."""

from __future__ import annotations

import uuid
import wave
from pathlib import Path
from typing import Any

import numpy as np

from callbridge.bus.base import Event, Subscription
from callbridge.calls.model import Address, Direction
from callbridge.calls.service import CallService, LiveCall
from callbridge.flows.model import Action
from callbridge.legs.file_leg import FileLeg


async def start_call(
    service: CallService, leg: FileLeg, actions: list[Action], workspace_id: uuid.UUID
) -> LiveCall:
    return await service.start_call(
        workspace_id=workspace_id,
        direction=Direction.INCOMING,
        source=Address(type="tel", target="+12025550100"),
        destination=Address(type="tel", target="+12025550101"),
        leg=leg,
        actions=actions,
    )


def read_stereo(path: Path) -> tuple[wave._wave_params, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The WAV's parameters and its left and right channels as int16 arrays."""
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        raw = w.readframes(w.getnframes())
    samples = np.frombuffer(raw, dtype="<i2")
    if params.nchannels == 2:
        return params, samples[0::2], samples[1::2]
    return params, samples, samples


def find_frame_offset(haystack: bytes, needle: np.ndarray[Any, Any]) -> int | None:
    """Sample offset (a multiple of 160) at which ``needle`` starts inside ``haystack``."""
    src = np.frombuffer(haystack, dtype="<i2")
    for off in range(0, len(src) - len(needle) + 1, 160):
        if np.array_equal(src[off : off + len(needle)], needle):
            return off
    return None


def contains(haystack: np.ndarray[Any, Any], needle: bytes) -> bool:
    """True when the int16 samples of ``needle`` appear contiguously in ``haystack``."""
    return needle in haystack.astype("<i2").tobytes()


async def drain_events(sub: Subscription, limit: float = 0.2) -> list[Event]:
    """Every event already queued (or arriving within ``limit`` real seconds)."""
    out: list[Event] = []
    while True:
        try:
            out.append(await sub.get(timeout=limit))
        except TimeoutError:
            return out
