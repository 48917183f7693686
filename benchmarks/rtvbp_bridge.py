"""N simultaneous RTVBP-bridged calls: file legs ↔ SDK echo handlers in another process.

The voice side (this process, one asyncio loop, so one core): a call service on SQLite and the
real clock, N incoming calls on file legs whose caller audio carries a frame counter, each
bridged by a :class:`~callbridge.rtvbp.voice.VoiceBridge` to the ``echo`` example served by
``callbridge rtvbp-handler`` in a child process.

Figures:

* **added latency** — from the voice writing a caller frame to the WebSocket to the same frame
  coming back from the handler (leg → handler → leg, without the leg's 20 ms tick), p50/p99;
* **frame jitter at the leg** — how late each 20 ms tick of the legs' playout clocks ran, p99;
  a *late frame* is a tick more than one frame period late, or an echoed frame that came back
  too late for the tick after the one that sent it;
* **CPU per call** — CPU time of this process per call, as a share of one core.

Realism of the set-up (and how it differs from a naive one):

* calls **arrive at random times** (Poisson arrivals, ``--arrival-rate`` calls/s, default 50),
  so the legs' 20 ms clocks run at random phases, as real calls' do — not all aligned;
* the voice process runs on **uvloop**, like ``callbridge serve`` (``--loop asyncio`` for the
  standard loop);
* the echo handlers (the customer's application, not part of callbridge) run in
  ``--handlers`` processes (default 2), calls spread over them round-robin;
* the garbage collector is set up as ``callbridge serve`` sets it up
  (:func:`callbridge.server.run.configure_gc`, decision 031; ``--gc default`` keeps Python's
  defaults), and every collector pause in the window is timed (histogram printed);
* the legs' pacers are woken by the process's shared media tick, as in production.

The load average is printed with the results: the figures depend on what else runs.

Run: ``.venv/bin/python benchmarks/rtvbp_bridge.py [--calls 200] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import structlog

from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.model import Address, Direction
from callbridge.calls.service import CallService
from callbridge.config import Settings
from callbridge.flows.model import Action
from callbridge.legs.file_leg import FileLeg
from callbridge.media.clock import SystemClock
from callbridge.media.constants import FRAME_BYTES, FRAME_SECONDS
from callbridge.rtvbp.voice import BridgeOptions, VoiceBridge
from callbridge.server.run import configure_gc
from callbridge.store import Store

TARGET_CALLS = 200
TARGET_P99_MS = 10.0
TARGET_LATE = 0


class TimedLeg(FileLeg):
    """A file leg that notes how late each tick of its playout clock ran (against its pacer's
    own deadlines ``t0 + n × 20 ms``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tick_delays: list[float] = []

    def _on_tick(self, n: int) -> None:
        self.tick_delays.append(time.monotonic() - (self._pacer.t0 + n * FRAME_SECONDS))
        super()._on_tick(n)


class TimedBridge(VoiceBridge):
    """Notes when each caller frame was written and when it came back."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        send = self.session.send_audio

        def timed_send(frame: bytes) -> None:
            self.sent[struct.unpack_from("<I", frame)[0]] = time.perf_counter()
            send(frame)

        self.session.send_audio = timed_send  # type: ignore[method-assign]

    def _on_handler_audio(self, frame: bytes) -> None:
        sent = self.sent.pop(struct.unpack_from("<I", frame)[0], None)
        if sent is not None:
            self.latencies.append(time.perf_counter() - sent)
        super()._on_handler_audio(frame)


class GcPauses:
    """Durations of the garbage collector's runs (a stop-the-world pause of the loop).

    Each run is ``(generation, wall seconds, CPU seconds)``: the wall time is what the loop
    lost, the CPU time is the collector's own work (the same whatever else runs on the host).
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []
        self._start = self._cpu = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start, self._cpu = time.perf_counter(), time.thread_time()
        else:
            wall, cpu = time.perf_counter() - self._start, time.thread_time() - self._cpu
            self.pauses.append((info["generation"], wall, cpu))

    def describe(self, since: int = 0) -> str:
        runs = self.pauses[since:]
        if not runs:
            return "none"
        gens = "/".join(str(sum(1 for g, _, _ in runs if g == gen)) for gen in range(3))
        return (
            f"{len(runs)} (gen0/1/2 {gens}), CPU total {1000 * sum(c for _, _, c in runs):.1f} ms, "
            f"longest {1000 * max(w for _, w, _ in runs):.1f} ms wall / "
            f"{1000 * max(c for _, _, c in runs):.1f} ms CPU; wall {gc_histogram(runs)}"
        )


class StallMonitor:
    """Tells the loop's own long pauses apart from the process waiting for a CPU.

    Wakes every millisecond; a gap longer than ``threshold`` is a stall. If the process's CPU
    time grew by most of the gap, the loop was busy (our code, or the collector); if not, the
    process was runnable but not running (another process had the CPU).
    """

    def __init__(self, threshold: float = 0.010) -> None:
        self.threshold = threshold
        self.busy: list[float] = []
        self.waiting: list[float] = []

    async def run(self) -> None:
        last_wall, last_cpu = time.perf_counter(), time.process_time()
        while True:
            await asyncio.sleep(0.001)
            wall, cpu = time.perf_counter(), time.process_time()
            gap = wall - last_wall
            if gap > self.threshold:
                (self.busy if cpu - last_cpu > 0.5 * gap else self.waiting).append(gap)
            last_wall, last_cpu = wall, cpu


def runqueue_wait_seconds(pid: int | str = "self") -> float:
    """Time the process spent runnable but not running (``/proc/<pid>/schedstat``; 0 if
    unavailable): CPU taken by other work on the host, which no change of ours can cure."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def numbered_audio(call: int, seconds: float) -> bytes:
    """Caller audio whose frames each start with a unique 32-bit number."""
    frames = int(seconds / FRAME_SECONDS)
    rng = np.random.default_rng(call)
    out = bytearray(rng.integers(-3000, 3000, frames * FRAME_BYTES // 2, dtype="<i2").tobytes())
    for i in range(frames):
        struct.pack_into("<I", out, i * FRAME_BYTES, (call << 16) | i)
    return bytes(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The voice (callbridge) process runs on this core, the handler processes on the others, so
#: the figures are those of one core of callbridge (when the host has two cores or more).
VOICE_CORE = 1


#: The cores this benchmark may use, read before the voice process pins itself.
HOST_CORES: set[int] = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def other_cores() -> set[int]:
    return (HOST_CORES - {VOICE_CORE}) or HOST_CORES


async def start_handler(port: int) -> asyncio.subprocess.Process:
    """One ``callbridge rtvbp-handler --example echo`` process, ready when it prints a line."""
    taskset = shutil.which("taskset")
    cores = other_cores()
    pin = [taskset, "-c", ",".join(map(str, sorted(cores)))] if taskset and cores else []
    proc = await asyncio.create_subprocess_exec(
        *pin, sys.executable, "-m", "callbridge", "rtvbp-handler", "--example", "echo",
        "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "CALLBRIDGE_LOG_LEVEL": "warning"},
    )  # fmt: skip
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc


GC_BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def gc_histogram(pauses: list[tuple[int, float, float]]) -> str:
    """``≤1 ms: 12, ≤2 ms: 3, …`` of the collector pauses (wall time)."""
    parts, low = [], 0.0
    for high in (*GC_BUCKETS_MS, float("inf")):
        n = sum(1 for _, p, _ in pauses if low < p * 1000 <= high)
        parts.append(
            f"{'>' + format(low, 'g') if high == float('inf') else '≤' + format(high, 'g')} ms: {n}"
        )
        low = high
    return ", ".join(parts)


async def run(
    calls: int,
    seconds: float,
    handlers: int,
    arrival_rate: float,
    watch_stalls: bool,
    gc_gen0: int | None = None,
) -> dict[str, float]:
    ports = [free_port() for _ in range(handlers)]
    procs = await asyncio.gather(*(start_handler(port) for port in ports))
    rng = np.random.default_rng(12345)
    tmp = Path(tempfile.mkdtemp(prefix="rtvbp-bench-"))
    store = await Store.open(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    bus = InProcessBus()
    await bus.start()
    clock = SystemClock()
    service = CallService(store, bus, clock)
    wid = (await store.workspaces.create("bench")).id
    if gc_gen0 is not None:
        configure_gc(gc_gen0)  # what `callbridge serve` does after start-up
    gc_pauses = GcPauses()  # from the first call on: set-up is when most objects are made
    gc.callbacks.append(gc_pauses)
    wait_start = runqueue_wait_seconds()
    legs: list[TimedLeg] = []
    bridges: list[TimedBridge] = []
    tasks = []
    setup0 = time.monotonic()
    try:
        for i in range(calls):
            if arrival_rate > 0:
                await asyncio.sleep(float(rng.exponential(1.0 / arrival_rate)))
            port = ports[i % len(ports)]
            leg = TimedLeg(f"b{i}", clock, play=numbered_audio(i, seconds + 1))
            live = await service.start_call(
                workspace_id=wid,
                direction=Direction.INCOMING,
                source=Address(type="tel", target="+15550000000"),
                destination=Address(type="tel", target="+15550000001"),
                leg=leg,
                actions=[
                    Action(type="answer"),
                    Action(type="sleep", option={"duration": 3600_000}),
                ],
            )
            await live.answered.wait()
            bridge = TimedBridge(service, live, BridgeOptions(url=f"ws://127.0.0.1:{port}"))
            legs.append(leg)
            bridges.append(bridge)
            tasks.append(asyncio.create_task(bridge.run()))
        await asyncio.sleep(1.0)  # every bridge up
        for leg in legs:
            leg.tick_delays.clear()
        for bridge in bridges:
            bridge.latencies.clear()
        gc_window = len(gc_pauses.pauses)
        monitor = StallMonitor()
        monitor_task = asyncio.create_task(monitor.run()) if watch_stalls else None
        cpu0, wall0, wait0 = time.process_time(), time.monotonic(), runqueue_wait_seconds()
        handler_cpu0 = sum(process_cpu_seconds(p.pid) for p in procs)
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        waited = runqueue_wait_seconds() - wait0
        handler_cpu = sum(process_cpu_seconds(p.pid) for p in procs) - handler_cpu0
        if monitor_task is not None:
            monitor_task.cancel()
        latencies = np.array([x for b in bridges for x in b.latencies]) * 1000
        delays = np.array([x for leg in legs for x in leg.tick_delays]) * 1000
        late = int((delays > FRAME_SECONDS * 1000).sum() + (latencies > 20.0).sum())
        up = sum(1 for b in bridges if b.session.state.value == "active")
        return {
            "calls": float(up),
            "p50": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
            "p99": float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
            "jitter_p99": float(np.percentile(delays, 99)) if delays.size else float("nan"),
            "late": float(late),
            "cpu_per_call": 100.0 * cpu / wall / max(1, calls),
            "cpu_total": 100.0 * cpu / wall,
            "handler_cpu": 100.0 * handler_cpu / wall,
            "stalls_busy": float(len(monitor.busy)),
            "stalls_busy_max": 1000 * max(monitor.busy, default=0.0),
            "stalls_waiting": float(len(monitor.waiting)),
            "stalls_waiting_max": 1000 * max(monitor.waiting, default=0.0),
            "waited_for_cpu": 100.0 * waited / wall,
            "waited_for_cpu_setup": 100.0 * (wait0 - wait_start) / max(1e-9, wall0 - setup0),
            "gc_window": gc_pauses.describe(gc_window),  # type: ignore[dict-item]
            "gc_all": gc_pauses.describe(),  # type: ignore[dict-item]
        }
    finally:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(gc_pauses)
        await service.shutdown(10.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        await store.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await proc.wait()


def result(name: str, value: float, unit: str, op: str, target: float, ok: bool) -> str:
    verdict = "PASS" if ok else "FAIL"
    return f"RESULT {name}={value:.2f} {unit} target{op}{target:g} {verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=TARGET_CALLS)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--handlers", type=int, default=2, help="echo handler processes")
    parser.add_argument(
        "--arrival-rate", type=float, default=50.0, help="calls/s (Poisson); 0 = back to back"
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--gc",
        choices=("production", "default"),
        default="production",
        help="collector set up as `callbridge serve` does (freeze + threshold) or untouched",
    )
    parser.add_argument(
        "--gc-gen0", type=int, default=None, help="gen-0 threshold with --gc production"
    )
    parser.add_argument(
        "--watch-stalls",
        action="store_true",
        help="also tell loop stalls from CPU starvation (a 1 ms watcher; adds a little CPU)",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and VOICE_CORE in os.sched_getaffinity(0):
        pinned = len(os.sched_getaffinity(0)) > 1
        os.sched_setaffinity(0, {VOICE_CORE})
        print(f"voice process pinned to core {VOICE_CORE}" + ("" if pinned else " (only core)"))
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings
    load_before = os.getloadavg()
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        figures = runner.run(
            run(
                args.calls,
                args.seconds,
                args.handlers,
                args.arrival_rate,
                args.watch_stalls,
                None
                if args.gc == "default"
                else args.gc_gen0
                if args.gc_gen0 is not None
                else Settings().gc_gen0_threshold,
            )
        )
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(1 min; {os.cpu_count()} CPUs); loop {args.loop}, {args.handlers} handler "
          f"process(es), arrivals {args.arrival_rate:g}/s")  # fmt: skip
    print(f"bridged calls up: {figures['calls']:.0f}/{args.calls}, voice process CPU "
          f"{figures['cpu_total']:.1f}% of one core, handler processes "
          f"{figures['handler_cpu']:.1f}%")  # fmt: skip
    print(f"waited for a CPU (other work on the host): {figures['waited_for_cpu']:.1f}% of "
          f"the window, {figures['waited_for_cpu_setup']:.1f}% of the set-up")  # fmt: skip
    print(f"gc {args.gc}: collections in the window: {figures['gc_window']}")
    print(f"gc {args.gc}: collections from the first call on: {figures['gc_all']}")
    if args.watch_stalls:
        print(f"loop stalls > 10 ms: {figures['stalls_busy']:.0f} busy (longest "
              f"{figures['stalls_busy_max']:.1f} ms), {figures['stalls_waiting']:.0f} waiting "
              f"for a CPU (longest {figures['stalls_waiting_max']:.1f} ms)")  # fmt: skip
    print(f"added latency p50={figures['p50']:.2f} ms p99={figures['p99']:.2f} ms")
    print(result("rtvbp_bridged_calls", figures["calls"], "calls", ">=", TARGET_CALLS,
                 figures["calls"] >= TARGET_CALLS))  # fmt: skip
    print(result("rtvbp_added_latency_p50", figures["p50"], "ms", "<=", TARGET_P99_MS,
                 figures["p50"] <= TARGET_P99_MS))  # fmt: skip
    print(result("rtvbp_added_latency_p99", figures["p99"], "ms", "<=", TARGET_P99_MS,
                 figures["p99"] <= TARGET_P99_MS))  # fmt: skip
    print(result("rtvbp_leg_tick_jitter_p99", figures["jitter_p99"], "ms", "<=", 20.0,
                 figures["jitter_p99"] <= 20.0))  # fmt: skip
    print(result("rtvbp_late_frames", figures["late"], "frames", "<=", TARGET_LATE,
                 figures["late"] <= TARGET_LATE))  # fmt: skip
    print(result("rtvbp_cpu_per_call", figures["cpu_per_call"], "%core", "<=", 100 / TARGET_CALLS,
                 figures["cpu_per_call"] <= 100 / TARGET_CALLS))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
