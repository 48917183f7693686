"""RTP legs benchmark: N legs in pairs on 127.0.0.1, one process, one event loop.

Each pair is a *caller* leg playing a 1 kHz tone and an *echo* leg whose outbound source
returns the last frame it received (the platform's echo flow in miniature). Every leg owns its
20 ms pacer, encodes G.711, sends over UDP, receives, decodes, jitter-buffers and delivers one
frame per tick, and sends RTCP every 5 s.

Figures:
* CPU per leg: process CPU time over the run / (legs × seconds), in % of one core. An echo call
  on the platform costs one RTP leg (the far end is the caller's phone), so echo calls per core
  = 100 / (CPU % per leg).
* Send jitter: actual send time minus the frame's deadline (``t0 + n × 20 ms``), p99 over all
  frames of all legs.
* Late packets: frames sent more than 20 ms after their deadline; skipped frames (burst rule);
  lost packets as seen by the receivers' RTCP statistics.

As in ``callbridge serve``: uvloop (``--asyncio`` for the stdlib loop), the garbage collector
set up by :func:`callbridge.server.run.configure_gc`, and every leg's pacer woken by the
process's shared media tick (decision 031). The load average and the share of the run this
process spent waiting for a CPU (``/proc/self/schedstat``) are printed with the figures.

Usage: ``python benchmarks/rtp_legs.py [--legs 200] [--seconds 10] [--asyncio]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from callbridge.config import Settings
from callbridge.legs.base import DtmfEvent, LegEnd, LegState
from callbridge.legs.pacer import ticker_for
from callbridge.media.clock import SystemClock
from callbridge.media.constants import SAMPLE_RATE, SILENCE_FRAME
from callbridge.rtp.leg import RtpLeg
from callbridge.rtp.port_pool import PortPool
from callbridge.server.run import configure_gc

HOST = "127.0.0.1"
TARGET_CALLS_PER_CORE = 300
TARGET_P99_MS = 5.0


class Sink:
    """Listener that keeps the last frame (for the echo source) and counts frames."""

    def __init__(self) -> None:
        self.last: deque[bytes] = deque(maxlen=3)
        self.frames = 0

    def on_leg_audio(self, frame: bytes) -> None:
        self.frames += 1
        self.last.append(frame)

    def on_leg_dtmf(self, event: DtmfEvent) -> None:
        pass

    def on_leg_state(self, state: LegState, end: LegEnd | None) -> None:
        pass

    def echo(self) -> bytes:
        return self.last.popleft() if self.last else SILENCE_FRAME


def tone_source() -> Callable[[], bytes]:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    one_second = (np.sin(2 * np.pi * 1000 * t) * 8000).astype("<i2").tobytes()
    frames = [one_second[i : i + 320] for i in range(0, len(one_second), 320)]
    state = {"n": 0}

    def source() -> bytes:
        state["n"] += 1
        return frames[state["n"] % len(frames)]

    return source


def runqueue_wait_seconds() -> float:
    """Time this process spent runnable but not running (0 where unavailable)."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def run(legs: int, seconds: float) -> list[str]:
    configure_gc(Settings().gc_gen0_threshold)  # as `callbridge serve` does before any call
    pairs = legs // 2
    base = random.randrange(30000, 50000, 2)
    pool = PortPool(base, base + 4 * pairs + 200)
    all_legs: list[RtpLeg] = []
    sinks: list[Sink] = []
    for i in range(pairs):
        caller = await RtpLeg.open(f"caller-{i}", pool=pool, record_lateness=True)
        echo = await RtpLeg.open(f"echo-{i}", pool=pool, record_lateness=True)
        s_caller, s_echo = Sink(), Sink()
        caller.attach(s_caller, tone_source())
        echo.attach(s_echo, s_echo.echo)
        caller.set_remote(HOST, echo.port, 0, 101, signalling_host=HOST)
        echo.set_remote(HOST, caller.port, 0, 101, signalling_host=HOST)
        all_legs += [caller, echo]
        sinks += [s_caller, s_echo]
    for leg in all_legs:
        await leg.start()
    # stagger the legs' clocks across one 20 ms frame like real calls arriving at random times
    # (absolute start times: uvloop's millisecond timers would bunch tiny relative sleeps)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, leg in enumerate(all_legs):
        await asyncio.sleep(max(0.0, start + i * 0.02 / len(all_legs) - loop.time()))
        leg.answered()
    await asyncio.sleep(1.0)  # warm-up
    for leg in all_legs:
        assert leg.send_lateness is not None
        leg.send_lateness.clear()
    ticker = ticker_for(SystemClock())
    wakeups0, wait0 = ticker.wakeups, runqueue_wait_seconds()
    cpu0, wall0 = time.process_time(), time.monotonic()
    lost0 = sum(leg.stats.packets_lost for leg in all_legs)
    skipped0 = sum(leg._pacer.skipped for leg in all_legs)
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    wakeups, waited = ticker.wakeups - wakeups0, runqueue_wait_seconds() - wait0
    lateness = np.concatenate([np.fromiter(leg.send_lateness or (), float) for leg in all_legs])
    lost = sum(leg.stats.packets_lost for leg in all_legs) - lost0
    skipped = sum(leg._pacer.skipped for leg in all_legs) - skipped0
    sent = sum(leg.stats.packets_sent for leg in all_legs)
    for leg in all_legs:
        await leg.hangup()

    cpu_pct_per_leg = 100.0 * cpu / wall / len(all_legs)
    calls_per_core = 100.0 / cpu_pct_per_leg if cpu_pct_per_leg > 0 else float("inf")
    p99 = float(np.percentile(lateness, 99)) * 1000 if len(lateness) else 0.0
    late = int(np.sum(lateness > 0.020))
    frames = len(lateness)
    lines = [
        f"legs={len(all_legs)} seconds={wall:.1f} cpu={cpu:.2f}s packets_sent={sent}"
        f" frames_measured={frames} loop={type(asyncio.get_running_loop()).__module__}",
        f"cpu_per_leg={cpu_pct_per_leg:.3f}% of a core; p50 send jitter="
        f"{float(np.percentile(lateness, 50)) * 1000:.2f} ms; max={lateness.max() * 1000:.2f} ms",
        f"late_packets={late} skipped_frames={skipped} lost_packets={lost}",
        f"media tick wake-ups={wakeups / wall:.0f}/s for {len(all_legs)} legs; waited for a CPU "
        f"{100 * waited / wall:.1f}% of the run; load average {os.getloadavg()[0]:.2f}",
    ]
    ok_calls = calls_per_core >= TARGET_CALLS_PER_CORE
    ok_p99 = p99 <= TARGET_P99_MS
    lines += [
        f"RESULT cpu_per_echo_call={cpu_pct_per_leg:.3f} %core "
        f"target<={100 / TARGET_CALLS_PER_CORE:.3f} {'PASS' if ok_calls else 'FAIL'}",
        f"RESULT echo_calls_per_core={calls_per_core:.0f} calls "
        f"target>={TARGET_CALLS_PER_CORE} {'PASS' if ok_calls else 'FAIL'}",
        f"RESULT p99_send_jitter={p99:.2f} ms target<={TARGET_P99_MS} "
        f"{'PASS' if ok_p99 else 'FAIL'}",
        f"RESULT late_packets={late} packets target<=0 {'PASS' if late == 0 else 'FAIL'}",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--asyncio", action="store_true", help="run on the stdlib event loop instead of uvloop"
    )
    args = parser.parse_args()
    if args.legs < 2:
        parser.error("--legs must be at least 2")
    runner = asyncio.run
    if not args.asyncio:
        import uvloop

        runner = uvloop.run
    lines = runner(run(args.legs, args.seconds))
    for line in lines:
        print(line)
    return 0 if all(line.endswith("PASS") for line in lines if line.startswith("RESULT")) else 1


if __name__ == "__main__":
    sys.exit(main())
