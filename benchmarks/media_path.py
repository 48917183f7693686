"""CPU cost of one call's per-frame media path (a figure, not a test).

Per 20 ms frame, for one call:

1. G.711 µ-law decode of an inbound 160-byte RTP payload,
2. fan-out of the decoded frame to 3 consumers (append to 3 bounded deques),
3. two producer frames: a tick of a PlayoutBuffer fed with audio and a tick of a second
   PlayoutBuffer (also fed with audio: the worst case, where the mixer really sums),
4. mix of the two producer frames,
5. G.711 µ-law encode of the mixed frame for the outbound RTP payload.

Measured with ``time.process_time`` (CPU time of this process) over many frames after a
warm-up; prints µs per call per frame and the number of calls one core could carry at that
cost (20 ms of audio per frame / cost per frame).

Run: ``.venv/bin/python benchmarks/media_path.py [frames]``
"""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np

from callbridge.media import (
    FRAME_BYTES,
    FRAME_SECONDS,
    PlayoutBuffer,
    mix,
    tone,
    ulaw_decode,
    ulaw_encode,
)

TARGET_US: float = 25.0
TARGET_CALLS: float = 800.0
CONSUMERS: int = 3
CONSUMER_QUEUE_FRAMES: int = 50
REFILL_SECONDS: float = 1.0


def _make_inputs() -> tuple[list[bytes], bytes, bytes]:
    rng = np.random.default_rng(20240601)
    payloads = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(64)]
    prompt = tone(440.0, REFILL_SECONDS * 1000, -12.0)
    music = tone(660.0, REFILL_SECONDS * 1000, -18.0)
    return payloads, prompt, music


def run(frames: int) -> float:
    """Run ``frames`` iterations of the media path; return CPU seconds spent."""
    payloads, prompt, music = _make_inputs()
    consumers = [deque[bytes](maxlen=CONSUMER_QUEUE_FRAMES) for _ in range(CONSUMERS)]
    appends = [q.append for q in consumers]
    tts = PlayoutBuffer(count_underruns=False)
    moh = PlayoutBuffer(count_underruns=False)
    refill_every = int(REFILL_SECONDS / FRAME_SECONDS)
    npay = len(payloads)
    sent = 0
    start = time.process_time()
    for i in range(frames):
        if i % refill_every == 0:
            # Producers push ahead of real time in big chunks, as TTS and file players do.
            tts.enqueue(prompt)
            moh.enqueue(music)
        inbound = ulaw_decode(payloads[i % npay])
        for append in appends:
            append(inbound)
        a = tts.tick().pcm
        b = moh.tick().pcm
        out = ulaw_encode(mix((a, b)))
        sent += len(out)
    elapsed = time.process_time() - start
    assert sent == frames * FRAME_BYTES // 2
    return elapsed


def main() -> None:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    run(min(20_000, frames))  # warm-up: tables, caches, allocator
    best = min(run(frames) for _ in range(3))
    us = best / frames * 1e6
    calls = FRAME_SECONDS * 1e6 / us
    print(f"frames per run: {frames}, best of 3 runs: {best:.3f} s CPU")
    print(f"cost per call per 20 ms frame: {us:.2f} us")
    print(f"implied calls per core: {calls:.0f}")
    print(
        f"RESULT media_path_cpu_per_frame={us:.2f} us target<={TARGET_US:g} "
        f"{'PASS' if us <= TARGET_US else 'FAIL'}"
    )
    print(
        f"RESULT media_path_calls_per_core={calls:.0f} calls target>={TARGET_CALLS:g} "
        f"{'PASS' if calls >= TARGET_CALLS else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
