"""Stream H2B recognition: capacity per core, completion latency, NLU accuracy (a figure).

A callbridge server (platform + ``/bots``, SIP off, SQLite in a temp folder) runs in a child
process **pinned to one core** (``os.sched_setaffinity``; its engine worker threads and
processes inherit the pin); the clients run in this process on the other cores. Every client is
a real WebSocket driving the uhlive SDK's ``Recognizer`` (``callbridge h2b-test``'s runner),
streaming fixture audio of ``tests/fixtures/h2b`` in real time in 60 ms chunks, followed by
codec silence until RECOGNITION-COMPLETE, then the next RECOGNIZE.

* **Simultaneous recognitions per core in real time**, grammar-constrained (the digit, boolean
  and keyword fixtures) and free transcription (the transcribe fixtures) separately: N clients
  recognize back to back for ``--trial`` seconds; N *keeps up* when no recognition errors or
  hits ``recognition_timeout`` (``*Maxtime``: the engine fell behind) and the p95 completion
  latency of the clean clips (below) stays under ``--keep-up`` seconds. The figure is the
  largest N of the search that keeps up; the search stops after two steps in a row that do
  not (a single step can fail on a shared host's stall: at N = 1 the p95 is the worst of
  two or three clean recognitions).
* **Completion latency**: from the moment the audio clock reaches end of speech + the
  timeout that ends the recognition (``speech_complete_timeout`` for ``Success``, the
  incomplete / no-match timeouts for ``PartialMatch`` / ``NoMatch``) — i.e. when the client
  has sent the chunk holding that sample — to RECOGNITION-COMPLETE; p50/p99 over the clean
  clips of the accuracy pass (light load: ``--accuracy-clients`` simultaneous clients), where
  end of speech is exact (the last non-silent 20 ms frame before the clip's digital silence).
  An INFO line adds all clips, with end of speech estimated above the noise floor.
* **NLU accuracy** per grammar on every fixture (a fixture is correct when its cause and
  interpretation are the expected ones, as ``callbridge h2b-test`` judges); the RESULT is the
  digit + boolean + keyword fixtures together.

The engines are the server's (``--grammar-engine``, ``--free-engine``; default ``auto``,
what ``callbridge serve`` runs on /bots; ``fused`` adds PocketSphinx for JSGF grammars);
``--whisper-model-dir`` gives their Whisper another CTranslate2 model (through
``CALLBRIDGE_WHISPER_MODEL_DIR`` in the server's environment). The
server's CPU time per recognition (its process and worker processes, from ``/proc``) is
printed per trial: unlike the capacity figure it hardly moves with the host's load. The host
is shared: ``uptime`` load is printed with the figures. Bounded: about 3–6 minutes on 2 cores.

Run: ``.venv/bin/python benchmarks/h2b_recognition.py [--quick] [--grammar-engine sphinx]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callbridge.cli.h2b_test import Fixture, Outcome, RunnerSession, load_fixtures, play_one
from callbridge.h2b.router import DEFAULT_ENGINE
from callbridge.media.g711 import alaw_decode, ulaw_decode
from callbridge.speech.asr.whisper import MODEL_DIR_ENV

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "h2b"
KEY = "vb_" + "h2bBenchKey0123456789abcdefghij"
GRAMMAR_GROUPS = ("boolean", "digits", "keywords")
GRAMMAR_STEPS = (1, 2, 4, 8, 12, 16, 20, 25, 30)
FREE_STEPS = (1, 2, 4, 8, 12, 16, 20)
CHUNK_MS = 60
MAXTIME = {"SuccessMaxtime", "PartialMatchMaxtime", "NoMatchMaxtime"}

# -- the server (child process) -------------------------------------------------------------


async def _serve(port: int, engine: str, data_dir: str) -> None:
    import uvicorn

    from callbridge.config.settings import load_settings
    from callbridge.platform import Platform
    from callbridge.server.app import create_app
    from callbridge.speech.registry import create_recognizer

    settings = load_settings(
        None,
        {},
        {"data_dir": data_dir, "sip_port": 0, "bootstrap_access_key": KEY, "log_level": "warning"},
    )
    platform = Platform(settings)
    await platform.start()
    recognizer = create_recognizer(engine)
    await recognizer.start()
    app = create_app(platform)
    app.state.h2b_recognizer = recognizer
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ws="websockets-sansio", http="httptools", loop="uvloop",
    )  # fmt: skip
    pool = getattr(getattr(recognizer, "whisper", recognizer), "pool", None)

    async def stats() -> None:  # uvicorn re-raises SIGTERM on exit: print while running
        while pool is not None:
            await asyncio.sleep(5)
            print(f"STATS {engine}: Whisper batches {pool.batches}, jobs decoded in a batch "
                  f"{pool.batched_jobs}", flush=True)  # fmt: skip

    reporter = asyncio.create_task(stats())
    try:
        await uvicorn.Server(config).serve()
    finally:
        reporter.cancel()
        await recognizer.aclose()
        await platform.close()


def serve_child(port: int, engine: str, core: int, data_dir: str) -> int:
    os.sched_setaffinity(0, {core})
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(port, engine, data_dir))
    return 0


class Server:
    """The pinned server child process."""

    def __init__(
        self, engine: str, core: int, workdir: Path, whisper_model_dir: Path | None = None
    ) -> None:
        env = dict(os.environ)
        if whisper_model_dir is not None:  # read by the default Whisper recognizer
            env[MODEL_DIR_ENV] = str(whisper_model_dir)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.engine = engine
        self.log = workdir / f"server-{engine}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(self.port), engine, str(core),
                 str(workdir / f"data-{engine}")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if time.monotonic() > deadline:
                raise SystemExit("server not ready in 60 s")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/bots"

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and its live child processes (PocketSphinx
        workers): comparable across runs on a shared host, unlike wall-clock capacity."""
        pids = {self.proc.pid}
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        grew = True
        while grew:
            grew = False
            for pid, fields in stats.items():
                if pid not in pids and int(fields[1]) in pids:
                    pids.add(pid)
                    grew = True
        ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in pids if p in stats)
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            stats = [
                line for line in self.log.read_text(errors="replace").splitlines()
                if line.startswith("STATS ")
            ]  # fmt: skip
            if stats:
                print(f"INFO {stats[-1].removeprefix('STATS ')}", flush=True)


# -- clients --------------------------------------------------------------------------------


def pcm_of(fixture: Fixture) -> bytes:
    data = fixture.audio.read_bytes()
    if fixture.codec == "g711a":
        return alaw_decode(data)
    if fixture.codec == "g711u":
        return ulaw_decode(data)
    return data


def speech_end_s(fixture: Fixture) -> float:
    """End of speech in the clip: the last 20 ms frame above the noise floor (seconds)."""
    x = np.frombuffer(pcm_of(fixture), dtype="<i2").astype(np.float64)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    floor = float(np.median(rms[-15:]))  # the clips end with 600 ms without speech
    loud = np.nonzero(rms > max(3 * floor, 0.02 * float(np.max(rms)), 30.0))[0]
    return (int(loud[-1]) + 1) * 0.020 if loud.size else 0.0


def latency_s(outcome: Outcome, end_s: float) -> float | None:
    """Completion minus the moment the ending timeout's last sample was sent."""
    timeout_key = {
        "Success": "speech_complete_timeout",
        "PartialMatch": "speech_incomplete_timeout",
        "NoMatch": "speech_nomatch_timeout",
    }.get(outcome.cause or "")
    if timeout_key is None or end_s <= 0:
        return None
    params = outcome.fixture.params
    timeout_s = float(params.get(timeout_key, 800)) / 1000
    # The chunk holding audio time t is sent at started_at + floor(t / chunk) * chunk.
    chunk = CHUNK_MS / 1000
    sent = outcome.started_at + math.floor((end_s + timeout_s) / chunk) * chunk
    return outcome.completed_at - sent


@dataclass
class Record:
    outcome: Outcome
    latency: float | None


async def client(
    url: str, fixtures: list[Fixture], ends: dict[str, float], start: int, until: float,
    records: list[Record], errors: list[str], once: bool = False,
) -> None:  # fmt: skip
    from uhlive.stream.recognition import build_connection_request
    from websockets.asyncio.client import connect

    _, headers = build_connection_request(KEY)
    try:
        async with connect(url, additional_headers=headers, max_size=2**20) as ws:
            session = RunnerSession(ws, 40.0)
            i = start
            while time.monotonic() < until:
                fixture = fixtures[i % len(fixtures)]
                i += 1
                outcome = await play_one(session, fixture, speed=1.0, chunk_ms=CHUNK_MS)
                if outcome.error:
                    errors.append(f"{fixture.name}: {outcome.detail}")
                records.append(Record(outcome, latency_s(outcome, ends[fixture.name])))
                if once and i - start >= len(fixtures):
                    break
            await session.close()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")


async def trial(
    server: Server, fixtures: list[Fixture], ends: dict[str, float], n: int, seconds: float
) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    tasks = []
    for k in range(n):
        tasks.append(asyncio.create_task(
            client(server.url, fixtures, ends, k * 3, until, records, errors)
        ))  # fmt: skip
        await asyncio.sleep(1.0 / n)  # stagger the starts over one second
    await asyncio.gather(*tasks)
    return records, errors


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def clean_latencies(records: list[Record]) -> list[float]:
    """Latencies of the clean clips (exact end of speech: the clip's digital silence)."""
    return [
        r.latency
        for r in records
        if r.latency is not None and r.outcome.fixture.name.endswith("-clean")
    ]


def keeps_up(records: list[Record], errors: list[str], limit_s: float) -> tuple[bool, str]:
    lat = clean_latencies(records)
    maxtime = sum(1 for r in records if r.outcome.cause in MAXTIME)
    p95 = pct(lat, 95)
    ok = not errors and maxtime == 0 and bool(lat) and p95 <= limit_s
    why = f"{len(records)} recognitions, p95 latency {p95 * 1000:.0f} ms, maxtime {maxtime}"
    if errors:
        why += f", errors {len(errors)} (first: {errors[0][:120]})"
    return ok, why


async def capacity(
    server: Server, fixtures: list[Fixture], ends: dict[str, float], steps: tuple[int, ...],
    seconds: float, limit_s: float, label: str,
) -> int:  # fmt: skip
    best = failures = 0
    for n in steps:
        cpu, wall = server.cpu_s(), time.monotonic()
        records, errors = await trial(server, fixtures, ends, n, seconds)
        cpu, wall = server.cpu_s() - cpu, time.monotonic() - wall
        ok, why = keeps_up(records, errors, limit_s)
        per = 1000 * cpu / max(1, len(records))
        print(f"INFO {label} N={n}: {'keeps up' if ok else 'falls behind'} ({why}); "
              f"server CPU {per:.0f} ms per recognition, {100 * cpu / wall:.0f} % of a core; "
              f"load {load()}", flush=True)  # fmt: skip
        if not ok:
            failures += 1
            if failures == 2:
                break
            continue
        best, failures = n, 0
    if best == steps[-1]:
        print(f"INFO {label}: the last N tried keeps up ({best} is a lower bound)")
    return best


async def accuracy_pass(
    server: Server, fixtures: list[Fixture], ends: dict[str, float], clients: int
) -> list[Record]:
    """Every fixture once, spread over ``clients`` simultaneous connections."""
    records: list[Record] = []
    errors: list[str] = []
    shares = [fixtures[k::clients] for k in range(clients)]
    until = time.monotonic() + 3600
    await asyncio.gather(*(
        client(server.url, share, ends, 0, until, records, errors, once=True)
        for share in shares if share
    ))  # fmt: skip
    for e in errors:
        print(f"INFO accuracy error: {e}")
    return records


# -- report ---------------------------------------------------------------------------------


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def result_line(name: str, value: float, unit: str, op: str, target: float) -> str:
    ok = value <= target if op == "<=" else value >= target
    shown = f"{value:.0f}" if value == int(value) else f"{value:.3g}"
    return (
        f"RESULT {name}={shown} {unit} target{op}{target:g} {'PASS' if ok else 'FAIL'}"
        f"  (load {load()})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=4, metavar=("PORT", "ENGINE", "CORE", "DATA"))
    parser.add_argument("--grammar-engine", default=DEFAULT_ENGINE)
    parser.add_argument("--free-engine", default=DEFAULT_ENGINE)
    parser.add_argument("--trial", type=float, default=12.0, help="seconds per capacity trial")
    parser.add_argument("--keep-up", type=float, default=1.0, help="p95 latency bound (s)")
    parser.add_argument("--accuracy-clients", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="shorter trials, fewer steps")
    parser.add_argument("--skip-capacity", action="store_true")
    parser.add_argument(
        "--capacity-only", action="store_true", help="no accuracy pass (warm-up only)"
    )
    parser.add_argument("--grammar-steps", help="comma-separated N to try (e.g. 8,16,20)")
    parser.add_argument("--free-steps", help="comma-separated N to try")
    parser.add_argument(
        "--whisper-model-dir",
        type=Path,
        default=None,
        help="CTranslate2 Whisper directory of the server's engines (default: tiny.en)",
    )
    args = parser.parse_args(argv)
    if args.serve:
        port, engine, core, data = args.serve
        return serve_child(int(port), engine, int(core), data)
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    cpus = sorted(os.sched_getaffinity(0))
    core = cpus[-1]
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus) - {core})
    print(f"INFO server pinned to core {core}; clients on {sorted(os.sched_getaffinity(0))}; "
          f"load {load()}", flush=True)  # fmt: skip
    fixtures = load_fixtures(FIXTURES)
    ends = {f.name: speech_end_s(f) for f in fixtures}
    grammar_fx = [f for f in fixtures if f.name.split("-")[0] in GRAMMAR_GROUPS]
    free_fx = [f for f in fixtures if f.name.startswith("transcribe-")]
    trial_s = 10.0 if args.quick else args.trial
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="h2b-bench-") as tmp:
        engines = {args.grammar_engine, args.free_engine}
        servers = {e: Server(e, core, Path(tmp), args.whisper_model_dir) for e in sorted(engines)}
        try:
            started = time.monotonic()
            grammar_server = servers[args.grammar_engine]
            # Warm-up (model load), then accuracy + latency at light load.
            await accuracy_pass(grammar_server, grammar_fx[:1], ends, 1)
            if args.free_engine != args.grammar_engine:
                await accuracy_pass(servers[args.free_engine], free_fx[:1], ends, 1)
            acc_fx = [f for f in fixtures if not f.name.startswith("transcribe-")]
            records: list[Record] = []
            if not args.capacity_only:
                records = await accuracy_pass(grammar_server, acc_fx, ends, args.accuracy_clients)
                records += await accuracy_pass(
                    servers[args.free_engine], free_fx, ends, args.accuracy_clients
                )
            print(f"INFO accuracy pass: {len(records)} recognitions in "
                  f"{time.monotonic() - started:.0f} s; load {load()}", flush=True)  # fmt: skip
            groups: dict[str, list[bool]] = {}
            for r in records:
                groups.setdefault(r.outcome.fixture.group, []).append(r.outcome.passed)
                if not r.outcome.passed:
                    print(f"INFO miss {r.outcome.fixture.name}: {r.outcome.detail} "
                          f"[asr {r.outcome.transcript!r}]")  # fmt: skip
            for g, oks in sorted(groups.items()):
                print(
                    f"INFO accuracy {g}: {sum(oks)}/{len(oks)} = {100 * sum(oks) / len(oks):.0f} %"
                )
            core_ok = [r.outcome.passed for r in records if r.outcome.fixture in grammar_fx]
            every = [r.latency for r in records if r.latency is not None]
            lat = clean_latencies(records)
            print(f"INFO latency, clean clips ({len(lat)}): p50 {pct(lat, 50) * 1000:.0f} ms, "
                  f"p99 {pct(lat, 99) * 1000:.0f} ms; all clips ({len(every)}, end of speech "
                  f"estimated under noise): p50 {pct(every, 50) * 1000:.0f} ms, "
                  f"p99 {pct(every, 99) * 1000:.0f} ms")  # fmt: skip
            slow = sorted(
                (r for r in records
                 if r.latency is not None and r.outcome.fixture.name.endswith("-clean")),
                key=lambda r: -(r.latency or 0.0),
            )[:3]  # fmt: skip
            names = [f"{r.outcome.fixture.name} {(r.latency or 0.0) * 1000:.0f} ms" for r in slow]
            print(f"INFO slowest clean completions: {', '.join(names)}")
            g_cap = f_cap = 0
            if not args.skip_capacity:
                g_steps = GRAMMAR_STEPS[:6] if args.quick else GRAMMAR_STEPS
                if args.grammar_steps:
                    g_steps = tuple(int(n) for n in args.grammar_steps.split(","))
                g_cap = await capacity(
                    grammar_server, grammar_fx, ends, g_steps, trial_s, args.keep_up,
                    f"grammar ({args.grammar_engine})",
                )  # fmt: skip
                f_steps = FREE_STEPS[:4] if args.quick else FREE_STEPS
                if args.free_steps:
                    f_steps = tuple(int(n) for n in args.free_steps.split(","))
                f_cap = await capacity(
                    servers[args.free_engine], free_fx, ends, f_steps, trial_s, args.keep_up,
                    f"transcribe ({args.free_engine})",
                )  # fmt: skip
        finally:
            for s in servers.values():
                s.stop()
    accuracy = 100.0 * sum(core_ok) / len(core_ok) if core_ok else 0.0
    print(f"INFO engines: grammar {args.grammar_engine}, free {args.free_engine}; "
          f"run {time.monotonic() - started:.0f} s")  # fmt: skip
    if not args.skip_capacity:
        lines.append(result_line(
            "h2b_grammar_recognitions_per_core", g_cap, "sessions", ">=", 20
        ))  # fmt: skip
        lines.append(result_line(
            "h2b_transcribe_recognitions_per_core", f_cap, "sessions", ">=", 1
        ))  # fmt: skip
    if not args.capacity_only:
        for q in (50, 99):
            lines.append(result_line(
                f"h2b_completion_latency_p{q}", pct(lat, q) * 1000, "ms", "<=", 300
            ))  # fmt: skip
        lines.append(result_line(
            "h2b_nlu_accuracy_digits_boolean_keywords", accuracy, "%", ">=", 95
        ))  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
